"""Names shared by several programs: namespaces, task queues, Nexus endpoints and the workflow.

Every program and test takes these names from here, so renaming a queue or an endpoint is a
one-line change and no two programs can disagree about it.
"""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The orchestrator (the agent workflow and its activities).
ORCHESTRATOR_NAMESPACE = "default"
ORCHESTRATOR_TASK_QUEUE = "agent-orchestrator-queue"
AGENT_WORKFLOW_NAME = "AgentWorkflow"

# The IT team's tools, behind their own namespace and Nexus endpoint.
IT_NAMESPACE = "it-namespace"
IT_TASK_QUEUE = "it-tools-queue"
IT_ENDPOINT = "it-nexus-endpoint"

# The Finance team's tools, likewise.
FINANCE_NAMESPACE = "finance-namespace"
FINANCE_TASK_QUEUE = "finance-tools-queue"
FINANCE_ENDPOINT = "finance-nexus-endpoint"

DEFAULT_TEMPORAL_ADDRESS = "localhost:7233"
