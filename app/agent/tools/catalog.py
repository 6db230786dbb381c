"""The agent's tool catalog: every tool's name, description, argument model and route.

The catalog is the single place that says which tools exist. Both the planner (which turns it into
the JSON schemas the LLM sees) and the workflow (which validates the LLM's arguments and routes each
call to a local activity or a Nexus endpoint) read it, so the two can never disagree. A tool's
description is its input model's docstring; its schema is the model's JSON schema. A tool that
changes something outside the agent says `requires_approval`: the workflow then waits for a
person's decision before each call runs.

The workflow routes by name only, so changing a tool's input model, description or handler is an
ordinary change. What decides which commands a call schedules is replayed history, though: a
rename, a new route or a change of `requires_approval` while conversations are open needs a
`workflow.patched` guard. For example, to make `calculator` wait for approval from now on:
`Tool("calculator", CalculatorInput, function=calculator, requires_approval=True,
approval_patch="calculator-approval")`: runs recorded before wait for nothing, new runs wait. To
rename a tool, keep the old name as a second entry until no run that used it is left.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nexusrpc
from pydantic import BaseModel

from app.agent.tools.local import CalculatorInput, EchoInput, calculator, echo
from app.core.names import FINANCE, IT
from app.finance.service import CalculateRoiInput, FinanceService, StockPriceInput
from app.it.service import CreateJiraIssueInput, GetIpInput, ITService, JiraMetricsInput


@dataclass(frozen=True)
class NexusRoute:
    """Where a remote tool lives: a Nexus endpoint, a service contract and one operation."""

    endpoint: str
    service: type
    operation: nexusrpc.Operation[Any, Any]


@dataclass(frozen=True)
class Tool:
    """One tool the LLM may call: a local `function` run by `execute_tool`, or a Nexus `route`."""

    name: str
    input_model: type[BaseModel]
    route: NexusRoute | None = None
    function: Callable[[Any], str] | None = None
    # It writes: each call waits for a person's yes before it runs.
    requires_approval: bool = False
    # Set when `requires_approval` was added while conversations were open: the patch id that
    # makes only runs from then on wait (see the module docstring).
    approval_patch: str | None = None
    # The argument that names where a write lands ("PROJ"), for "outcome unknown: check PROJ".
    target_argument: str | None = None

    @property
    def description(self) -> str:
        return " ".join((self.input_model.__doc__ or self.name).split())

    def schema(self) -> dict[str, Any]:
        """The tool in the `tools=` format of LiteLLM's chat API."""
        parameters = self.input_model.model_json_schema()
        parameters.pop("title", None)
        parameters.pop("description", None)
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": parameters,
            },
        }


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool("calculator", CalculatorInput, function=calculator),
        Tool("echo", EchoInput, function=echo),
        Tool(
            "jira_metrics",
            JiraMetricsInput,
            NexusRoute(IT.endpoint, ITService, ITService.jira_metrics),
        ),
        Tool("get_ip", GetIpInput, NexusRoute(IT.endpoint, ITService, ITService.get_ip)),
        Tool(
            "create_jira_issue",
            CreateJiraIssueInput,
            NexusRoute(IT.endpoint, ITService, ITService.create_jira_issue),
            requires_approval=True,
            target_argument="project",
        ),
        Tool(
            "stock_price",
            StockPriceInput,
            NexusRoute(FINANCE.endpoint, FinanceService, FinanceService.stock_price),
        ),
        Tool(
            "calculate_roi",
            CalculateRoiInput,
            NexusRoute(FINANCE.endpoint, FinanceService, FinanceService.calculate_roi),
        ),
    )
}


@functools.cache
def _schemas_json() -> str:
    # Building JSON schemas costs about 1.5 ms per planning call: build them once.
    return json.dumps([tool.schema() for tool in TOOLS.values()])


def tool_schemas() -> list[dict[str, Any]]:
    """Every tool's schema, in catalog order (a fresh copy: callers may modify it)."""
    schemas: list[dict[str, Any]] = json.loads(_schemas_json())
    return schemas
