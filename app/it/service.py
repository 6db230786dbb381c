"""The IT team's Nexus contract: the operations it offers and their typed inputs and outputs.

This is what another team imports to call IT tools; it depends on nothing but pydantic and
nexus-rpc. Each input model's docstring and field descriptions are written for an LLM: the agent's
tool catalog turns them into the JSON schema the model sees. Input types stay plain (`str`): the
tool code checks their meaning, so a bad value comes back as a readable, non-retryable error.
"""

from __future__ import annotations

import nexusrpc
from pydantic import BaseModel, Field

# The Nexus header a caller may set on `create_jira_issue`: the same key always means the same
# issue, however often the call is retried or sent again (the agent sends conversation/approval).
IDEMPOTENCY_KEY_HEADER = "idempotency-key"


class JiraMetricsInput(BaseModel):
    """Get issue metrics (open, in progress, done, cycle time) for a Jira project."""

    project: str = Field(
        description=(
            "The Jira project key: a letter followed by up to 9 letters, digits or underscores, "
            "in any case, e.g. 'PROJ' or 'OPS'. Not an issue key such as 'PROJ-123'."
        ),
        examples=["PROJ", "OPS"],
    )


class JiraMetricsOutput(BaseModel):
    """Issue counts and flow metrics of one Jira project."""

    project: str = Field(description="The project key, upper-cased.")
    open_issues: int
    in_progress: int
    done_last_30_days: int = Field(description="Issues resolved in the last 30 days.")
    average_cycle_time_days: float = Field(
        description="Mean days from 'in progress' to 'done' over the last 30 days."
    )
    source: str = Field(description="Where the figures come from; says so when it is sample data.")


class GetIpInput(BaseModel):
    """Get the hostname and IP address of the machine running the IT tools."""


class GetIpOutput(BaseModel):
    """The IT worker host's name and addresses."""

    hostname: str
    ip: str = Field(description="The host's primary IP address.")
    addresses: list[str] = Field(description="Every address the hostname resolves to.")


class CreateJiraIssueInput(BaseModel):
    """Create a Jira issue; the user is asked to approve each call before it runs."""

    project: str = Field(
        description="The Jira project key, e.g. 'PROJ' or 'OPS'. Not an issue key.",
        examples=["PROJ"],
    )
    summary: str = Field(
        description="A one-line title for the issue, at most 255 characters.",
        examples=["The login page is slow"],
    )
    description: str = Field(
        default="",
        description="Details: what happens, where, since when, and who reported it.",
    )
    priority: str = Field(
        default="Medium",
        description="One of Highest, High, Medium, Low, Lowest.",
        examples=["Medium", "High"],
    )


class CreateJiraIssueOutput(BaseModel):
    """The issue Jira created."""

    key: str = Field(description="The new issue's key, e.g. 'PROJ-124'.")
    project: str
    summary: str
    priority: str
    url: str = Field(description="Where the issue can be seen.")
    source: str = Field(description="Which Jira created it; says so when it is the sample one.")


@nexusrpc.service
class ITService:
    """Tools owned by the IT team."""

    jira_metrics: nexusrpc.Operation[JiraMetricsInput, JiraMetricsOutput]
    get_ip: nexusrpc.Operation[GetIpInput, GetIpOutput]
    create_jira_issue: nexusrpc.Operation[CreateJiraIssueInput, CreateJiraIssueOutput]
