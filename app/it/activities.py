"""The IT team's tool code: Jira metrics, creating Jira issues, and the host's addresses.

There is no Jira here, so `SampleJiraClient` returns deterministic sample figures that say so and
keeps the issues it creates in memory; a real client only has to implement `JiraClient`.
`fetch_jira_metrics` and `create_jira_issue` are activities, run by the handler workflows behind
the workflow-backed operations, so a flaky Jira is retried by Temporal on the IT team's side.
Creating is idempotent: each request carries a key (the handler workflow's id), and the client
creates one issue per key however often the activity is retried. `get_host_addresses` asks only
the local resolver and kernel: it never sends a packet.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import struct
from typing import Protocol

from pydantic import BaseModel
from temporalio import activity

from app.core.tool_errors import InvalidToolArguments, non_retryable
from app.it.service import (
    CreateJiraIssueInput,
    CreateJiraIssueOutput,
    GetIpOutput,
    JiraMetricsInput,
    JiraMetricsOutput,
)

_PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,9}")
_ISSUE_KEY = re.compile(r"([A-Z][A-Z0-9_]{0,9})-\d+")


def project_key(project: str) -> str:
    """A Jira project key, upper-cased; raises InvalidToolArguments for anything else."""
    key = project.strip().upper()
    if not key:
        raise InvalidToolArguments("the Jira project key is empty: give a key such as 'PROJ'")
    if issue := _ISSUE_KEY.fullmatch(key):
        # LLMs often pass the issue key the user mentioned: say which part to use.
        raise InvalidToolArguments(
            f"{project!r} is an issue key, not a project key: use {issue.group(1)!r}"
        )
    if not _PROJECT_KEY.fullmatch(key):
        raise InvalidToolArguments(
            f"{project!r} is not a Jira project key: use a letter followed by up to 9 letters, "
            "digits or underscores, such as 'PROJ'"
        )
    return key


PRIORITIES = ("Highest", "High", "Medium", "Low", "Lowest")
SUMMARY_LIMIT = 255
DESCRIPTION_LIMIT = 32_000


def issue_fields(issue: CreateJiraIssueInput) -> CreateJiraIssueInput:
    """The issue with its fields checked and normalised; raises InvalidToolArguments."""
    summary = " ".join(issue.summary.split())
    if not summary:
        raise InvalidToolArguments("the issue summary is empty: give a one-line title")
    if len(summary) > SUMMARY_LIMIT:
        raise InvalidToolArguments(
            f"the summary has {len(summary)} characters; Jira allows {SUMMARY_LIMIT}: "
            "put the details in the description"
        )
    if len(issue.description) > DESCRIPTION_LIMIT:
        raise InvalidToolArguments(
            f"the description has {len(issue.description):,} characters; "
            f"the limit is {DESCRIPTION_LIMIT:,}"
        )
    priority = next((p for p in PRIORITIES if p.lower() == issue.priority.strip().lower()), None)
    if priority is None:
        raise InvalidToolArguments(
            f"{issue.priority!r} is not a Jira priority: use one of {', '.join(PRIORITIES)}"
        )
    return CreateJiraIssueInput(
        project=project_key(issue.project),
        summary=summary,
        description=issue.description.strip(),
        priority=priority,
    )


class JiraIssueRequest(BaseModel):
    """Input of `create_jira_issue`: the issue, and the key that makes creating it idempotent."""

    issue: CreateJiraIssueInput
    # The same key always means the same issue: a retry gets the first attempt's issue back.
    idempotency_key: str


class JiraClient(Protocol):
    """What the IT tools need from Jira."""

    async def metrics(self, project: str) -> JiraMetricsOutput: ...

    async def create_issue(
        self, issue: CreateJiraIssueInput, idempotency_key: str
    ) -> CreateJiraIssueOutput: ...


class SampleJiraClient:
    """Deterministic sample metrics, and created issues kept in memory by idempotency key."""

    def __init__(self) -> None:
        self.created: dict[str, CreateJiraIssueOutput] = {}
        self._last_number: dict[str, int] = {}

    async def metrics(self, project: str) -> JiraMetricsOutput:
        """Sample figures for `project`, derived from a hash of the key."""
        seed = int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big")
        return JiraMetricsOutput(
            project=project,
            open_issues=10 + seed % 90,
            in_progress=2 + (seed >> 8) % 20,
            done_last_30_days=5 + (seed >> 16) % 60,
            average_cycle_time_days=round(1.5 + ((seed >> 24) % 100) / 10, 1),
            source="sample data (no Jira server configured)",
        )

    async def create_issue(
        self, issue: CreateJiraIssueInput, idempotency_key: str
    ) -> CreateJiraIssueOutput:
        """Records the issue in memory, once per idempotency key; keys go PROJ-124, PROJ-125..."""
        if (existing := self.created.get(idempotency_key)) is not None:
            return existing
        # As if each sample project already had 123 issues.
        number = self._last_number.get(issue.project, 123) + 1
        self._last_number[issue.project] = number
        key = f"{issue.project}-{number}"
        created = CreateJiraIssueOutput(
            key=key,
            project=issue.project,
            summary=issue.summary,
            priority=issue.priority,
            url=f"https://jira.example.invalid/browse/{key}",
            source="sample Jira (in memory, no Jira server configured)",
        )
        self.created[idempotency_key] = created
        return created


jira_client: JiraClient = SampleJiraClient()


@activity.defn
async def fetch_jira_metrics(input: JiraMetricsInput) -> JiraMetricsOutput:
    """Metrics of one Jira project; a bad key fails at once instead of being retried."""
    try:
        key = project_key(input.project)
    except InvalidToolArguments as err:
        raise non_retryable(err) from None
    return await jira_client.metrics(key)


@activity.defn
async def create_jira_issue(request: JiraIssueRequest) -> CreateJiraIssueOutput:
    """Create one Jira issue; retries with the same idempotency key create nothing more."""
    try:
        issue = issue_fields(request.issue)
    except InvalidToolArguments as err:
        raise non_retryable(err) from None
    return await jira_client.create_issue(issue, request.idempotency_key)


def _interface_addresses() -> list[str]:
    """IPv4 addresses of the network interfaces (Linux), asked of the kernel, not the network."""
    addresses: list[str] = []
    with contextlib.suppress(OSError, ImportError, AttributeError):
        import fcntl

        siocgifaddr = 0x8915
        # An unbound, unconnected socket is only a handle for the ioctl: nothing is sent. It finds
        # the real address where the hostname resolves only to loopback (containers, Debian).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as handle:
            for _, name in socket.if_nameindex():
                with contextlib.suppress(OSError):
                    request = struct.pack("256s", name.encode()[:15])
                    reply = fcntl.ioctl(handle.fileno(), siocgifaddr, request)
                    addresses.append(socket.inet_ntoa(reply[20:24]))
    return addresses


def get_host_addresses() -> GetIpOutput:
    """This host's name and addresses, from the resolver and the kernel: no packet is sent."""
    hostname = socket.gethostname()
    addresses: list[str] = []
    with contextlib.suppress(OSError):
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
        addresses = [str(info[4][0]) for info in infos]
    addresses = list(dict.fromkeys(addresses + _interface_addresses()))
    ipv4 = [a for a in addresses if ":" not in a]
    primary = next((a for a in ipv4 if not a.startswith("127.")), "127.0.0.1")
    return GetIpOutput(hostname=hostname, ip=primary, addresses=addresses or [primary])
