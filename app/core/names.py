"""Names shared by several programs: the deployments, the agent workflow, its search attributes.

A deployment is one team's worker program with the namespace and task queue it polls (and, for a
team that offers tools, the Nexus endpoint that routes to it). Every program, the setup, the demo,
the tests and the benchmark read `DEPLOYMENTS`, so adding a team or renaming a queue is a change
here, and no two programs can disagree about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from temporalio.common import SearchAttributeKey

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
AGENT_WORKFLOW_NAME = "AgentWorkflow"

# Kept up to date by each conversation after every turn, so the Web UI and
# `temporal workflow list --query 'AgentCostUSD > 0.5'` find the expensive ones. Setup and the
# dev server register them; a namespace without them would fail the workflow's tasks.
AGENT_TURNS = SearchAttributeKey.for_int("AgentTurns")
AGENT_TOKENS = SearchAttributeKey.for_int("AgentTokens")
AGENT_COST_USD = SearchAttributeKey.for_float("AgentCostUSD")
AGENT_SEARCH_ATTRIBUTES = (AGENT_TURNS, AGENT_TOKENS, AGENT_COST_USD)


@dataclass(frozen=True)
class Deployment:
    """One worker program and the namespace and task queue it polls."""

    name: str
    program: str
    namespace: str
    task_queue: str
    # Command-line arguments, for a program that runs one part of what it can run.
    args: tuple[str, ...] = field(default=(), kw_only=True)
    # Its log file's name in the demo's state folder, when not named after the program.
    log: str = field(default="", kw_only=True)
    # A worker that runs activities only (no workflows): the server lists it among the queue's
    # activity pollers.
    activities_only: bool = field(default=False, kw_only=True)

    @property
    def log_name(self) -> str:
        """Its log file's name in the demo's state folder."""
        return self.log or Path(self.program).with_suffix(".log").name


@dataclass(frozen=True)
class NexusDeployment(Deployment):
    """A team that offers tools to other teams through a Nexus endpoint."""

    endpoint: str


# The orchestrator: the agent workflow and its activities.
ORCHESTRATOR = Deployment(
    name="orchestrator worker",
    program="orchestrator_worker.py",
    namespace="default",
    task_queue="agent-orchestrator-queue",
)
# The LLM calls (`plan_next_action`) have a task queue of their own, as in Temporal's
# `workflow_streams` sample, so that a fleet can scale them apart from the workflows and LiteLLM's
# CPU never delays a workflow task. `orchestrator_worker.py` polls both queues unless told to run
# one part alone (`--only workflows` or `--only llm`).
LLM_TASK_QUEUE = "agent-llm-queue"
# The two parts of the orchestrator worker as separate processes (the demo runs them so).
ORCHESTRATOR_WORKFLOWS = Deployment(
    name="orchestrator worker (workflows, tools)",
    program=ORCHESTRATOR.program,
    namespace=ORCHESTRATOR.namespace,
    task_queue=ORCHESTRATOR.task_queue,
    args=("--only", "workflows"),
    log="orchestrator_worker.log",
)
ORCHESTRATOR_LLM = Deployment(
    name="LLM worker",
    program=ORCHESTRATOR.program,
    namespace=ORCHESTRATOR.namespace,
    task_queue=LLM_TASK_QUEUE,
    args=("--only", "llm"),
    log="llm_worker.log",
    activities_only=True,
)


def llm_task_queue(workflow_task_queue: str) -> str:
    """The task queue of the planning calls of a workflow on `workflow_task_queue`.

    The orchestrator's queue has the LLM queue beside it; a workflow on any other queue (a test's
    or a benchmark's own) plans on its own queue, served by one worker as before.
    """
    return LLM_TASK_QUEUE if workflow_task_queue == ORCHESTRATOR.task_queue else workflow_task_queue


# The IT team's tools, behind their own namespace and Nexus endpoint.
IT = NexusDeployment(
    name="IT Nexus worker",
    program="it_nexus_worker.py",
    namespace="it-namespace",
    task_queue="it-tools-queue",
    endpoint="it-nexus-endpoint",
)
# The Finance team's tools, likewise.
FINANCE = NexusDeployment(
    name="Finance Nexus worker",
    program="finance_nexus_worker.py",
    namespace="finance-namespace",
    task_queue="finance-tools-queue",
    endpoint="finance-nexus-endpoint",
)

DEPLOYMENTS: tuple[Deployment, ...] = (ORCHESTRATOR, IT, FINANCE)
# What `uv run demo` starts: the orchestrator as two processes, then the teams.
DEMO_DEPLOYMENTS: tuple[Deployment, ...] = (ORCHESTRATOR_WORKFLOWS, ORCHESTRATOR_LLM, IT, FINANCE)
NEXUS_DEPLOYMENTS: tuple[NexusDeployment, ...] = (IT, FINANCE)


def team_namespaces() -> list[str]:
    """The namespaces the Nexus teams poll, apart from the orchestrator's, without repeats."""
    others = (team.namespace for team in NEXUS_DEPLOYMENTS)
    return list(dict.fromkeys(ns for ns in others if ns != ORCHESTRATOR.namespace))
