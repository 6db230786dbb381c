"""The tools' argument models as the workflow validated them before the patch `route-by-name`.

Until that patch the workflow itself validated the LLM's arguments against the teams' input models,
and whether it scheduled a command depended on the result; so a later change to a team's model (a
`max_length`, a new required field) would change what an old history replays into. Histories
recorded before the patch are replayed against these frozen copies instead, which only the
orchestrator team changes: never. Delete this module together with the patch's old branch, once no
run that started before the patch is left (see `tools/runner.py`).
"""

from __future__ import annotations

from pydantic import BaseModel


class _Calculator(BaseModel):
    expression: str


class _Echo(BaseModel):
    message: str


class _JiraMetrics(BaseModel):
    project: str


class _GetIp(BaseModel):
    pass


class _CreateJiraIssue(BaseModel):
    project: str
    summary: str
    description: str = ""
    priority: str = "Medium"


class _StockPrice(BaseModel):
    ticker: str


class _CalculateRoi(BaseModel):
    principal: float
    rate: float
    years: float


# Tool name -> the model the workflow validated that tool's arguments with, before the patch.
LEGACY_INPUT_MODELS: dict[str, type[BaseModel]] = {
    "calculator": _Calculator,
    "echo": _Echo,
    "jira_metrics": _JiraMetrics,
    "get_ip": _GetIp,
    "create_jira_issue": _CreateJiraIssue,
    "stock_price": _StockPrice,
    "calculate_roi": _CalculateRoi,
}
