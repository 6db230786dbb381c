"""The local-tool activity, `execute_tool`: runs the catalog's local tools on the LLM's arguments.

The workflow routes calls by name only; the arguments are validated here, so a change to a tool's
input model is an ordinary code change. A bad argument is not a failure of the activity: it becomes
an error result the LLM reads, so the model can correct itself on its next step.
"""

from __future__ import annotations

from pydantic import ValidationError
from temporalio import activity

from app.agent.models import ToolRequest, ToolResult, cap_text
from app.agent.tools.catalog import TOOLS
from app.core.tool_errors import InvalidToolArguments


def validation_summary(err: ValidationError) -> str:
    """A pydantic validation error in one line, without documentation links."""
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}"
        for e in err.errors(include_url=False)
    )


def run_local_tool(name: str, arguments_json: str) -> str:
    """Run the local tool `name` on its JSON arguments; raises InvalidToolArguments."""
    tool = TOOLS.get(name)
    if tool is None or tool.function is None:
        raise InvalidToolArguments(f"there is no local tool named {name!r}")
    return tool.function(tool.input_model.model_validate_json(arguments_json))


@activity.defn
async def execute_tool(request: ToolRequest) -> ToolResult:
    """Run a local tool; a bad argument becomes an error result the LLM can read."""
    try:
        content = run_local_tool(request.name, request.arguments)
    except ValidationError as err:
        # The workflow routes by name; the arguments are checked here, against today's model.
        problem = f"Error: invalid arguments for {request.name}: {validation_summary(err)}"
        return ToolResult(content=cap_text(problem, request.max_result_chars))
    except ValueError as err:  # InvalidToolArguments and pydantic's ValidationError
        # Errors echo their input (a huge expression, say): they are capped like results.
        return ToolResult(content=cap_text(f"Error: {err}", request.max_result_chars))
    return ToolResult(content=cap_text(content, request.max_result_chars))
