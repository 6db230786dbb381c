"""MCP tools as the agent sees them: their names, their approval rule, and their results as text.

Deterministic helpers shared by the workflow (which lists and calls MCP tools through
`temporalio-mcp`), the planner (which offers them to the LLM beside the catalog's tools) and the
worker (which reads the server configuration). A server's tool `get_current_time` is offered as
`time__get_current_time`: server names contain no `__` and do not end in `_`, and catalog names
contain no `__`, so no two tools can share a name; a name that does not fit OpenAI's tool-name
pattern is cleaned and given a short hash of the original. A tool waits for a person's approval
unless its annotations say `readOnlyHint: true` (and not `destructiveHint: true`), or the
configuration says otherwise for that tool. Results become what the LLM reads: text, structured
content as JSON, images and resources by name only, `isError` as a tool error.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

# OpenAI's pattern for function names, which LiteLLM passes on to every provider.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
SEPARATOR = "__"
SERVER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_))*(?<!_)")
MAX_SERVER_NAME = 30
Approval = Literal["always", "never"]


class MCPServersQuery(BaseModel):
    """Input of `mcp_servers`: nothing to ask but the worker's configuration."""


class MCPServerInfo(BaseModel):
    """One configured MCP server as the workflow may know it: its name and approval overrides.

    Commands, URLs and environments stay on the worker: they may carry secrets.
    """

    name: str
    approval: dict[str, Approval] = Field(default_factory=dict)


class MCPServerList(BaseModel):
    """Output of `mcp_servers`: the servers the orchestrator worker is configured with."""

    servers: list[MCPServerInfo] = Field(default_factory=list)


class MCPToolSpec(BaseModel):
    """One MCP tool offered to the LLM, as listed by its server at the start of the run."""

    name: str
    server: str
    tool: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    requires_approval: bool = True

    def tool_schema(self) -> dict[str, Any]:
        """The tool in the `tools=` format of LiteLLM's chat API."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters or {"type": "object", "properties": {}},
            },
        }


def server_name_problem(name: str) -> str | None:
    """Why `name` cannot name an MCP server, or None if it can."""
    if len(name) > MAX_SERVER_NAME or not SERVER_NAME.fullmatch(name):
        return (
            f"MCP server name {name!r} is not allowed: use at most {MAX_SERVER_NAME} letters, "
            "digits, '-' and single '_' (not at the end), so that its tools' names stay unique"
        )
    return None


def exposed_name(server: str, tool: str) -> str:
    """The name the LLM sees for `tool` of `server`: `server__tool`, valid for every provider."""
    name = f"{server}{SEPARATOR}{tool}"
    if TOOL_NAME.fullmatch(name):
        return name
    # Clean and shorten, and keep the original apart from any other cleaned the same way.
    suffix = hashlib.sha256(tool.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^A-Za-z0-9_-]", "_", tool)
    room = 64 - len(server) - len(SEPARATOR) - 1 - len(suffix)
    return f"{server}{SEPARATOR}{cleaned[:room]}_{suffix}"


def needs_approval(annotations: dict[str, Any] | None, override: Approval | None) -> bool:
    """Whether a call waits for a person: the configuration's word, else the tool's annotations."""
    if override is not None:
        return override == "always"
    hints = annotations or {}
    read_only = _hint(hints, "read_only_hint", "readOnlyHint") is True
    destructive = _hint(hints, "destructive_hint", "destructiveHint") is True
    return not read_only or destructive


def _hint(hints: dict[str, Any], *names: str) -> Any:
    return next((hints[name] for name in names if name in hints), None)


def tool_specs(server: MCPServerInfo, listed: dict[str, Any]) -> list[MCPToolSpec]:
    """The tools of one `tools/list` result (as the activity returned it), ready to offer."""
    specs = []
    for tool in listed.get("tools") or []:
        name = str(tool.get("name") or "")
        if not name:
            continue
        schema = tool.get("input_schema") or tool.get("inputSchema") or {}
        annotations = tool.get("annotations")
        specs.append(
            MCPToolSpec(
                name=exposed_name(server.name, name),
                server=server.name,
                tool=name,
                description=" ".join(str(tool.get("description") or name).split()),
                parameters=_parameters(schema),
                requires_approval=needs_approval(annotations, server.approval.get(name)),
            )
        )
    return specs


def _parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """A tool's input schema as the `parameters` of a function tool (an object schema)."""
    parameters = {k: v for k, v in schema.items() if k not in ("title", "$schema")}
    parameters["type"] = "object"
    parameters.setdefault("properties", {})
    return parameters


def result_text(result: dict[str, Any]) -> tuple[str, bool]:
    """A `tools/call` result (as the activity returned it) as text for the LLM, and isError.

    Structured content is passed as JSON; text is passed on; images, audio and resources are
    named, never inlined (their bytes would fill the model's context with base64).
    """
    is_error = bool(result.get("is_error") or result.get("isError"))
    structured = result.get("structured_content", result.get("structuredContent"))
    if isinstance(structured, dict) and list(structured) == ["result"]:
        # The SDKs wrap a tool's plain return value so: `{"result": "..."}`; pass the value on.
        value = structured["result"]
        structured = None if isinstance(value, str) else value
        if structured is None and not any(i.get("type") == "text" for i in result["content"]):
            return value, is_error
    parts: list[str] = []
    if structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False, sort_keys=True))
    for item in result.get("content") or []:
        kind = item.get("type")
        if kind == "text":
            # Servers that return structured content usually repeat it as text: say it once.
            if structured is None:
                parts.append(str(item.get("text") or ""))
        else:
            parts.append(_named(item))
    return "\n".join(part for part in parts if part), is_error


def _named(item: dict[str, Any]) -> str:
    """A non-text content item by name and type only."""
    kind = item.get("type")
    mime = item.get("mime_type") or item.get("mimeType")
    if kind in ("image", "audio"):
        size = len(str(item.get("data") or "")) * 3 // 4
        return f"[{kind}: {mime or 'unknown type'}, about {size:,} bytes, not shown]"
    if kind == "resource_link":
        return f"[resource link: {item.get('name') or ''} {item.get('uri') or ''}]".replace(
            "  ", " "
        )
    if kind == "resource":
        resource = item.get("resource") or {}
        return f"[resource: {resource.get('uri') or 'unnamed'}, not shown]"
    return f"[{kind or 'unknown'} content, not shown]"
