"""What the Temporal Web UI says about a conversation: its static summary and details.

The Web UI's list of workflows shows each one's static summary, and the workflow's page shows its
static details (Markdown). Both are fixed when the chat starts the conversation, so they say what
is known then: that it is a chat, when and from where it was started, and where to read it. The
conversation itself is the `get_history` query (Queries tab); the event history is mostly the
Workflow Stream's traffic.
"""

from __future__ import annotations

from datetime import UTC, datetime

from app.agent.workflow import AgentWorkflow


def conversation_summary(now: datetime | None = None) -> str:
    """One line for the Web UI's list of workflows."""
    started = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return f"Chat with the durable agent, started {started}"


def conversation_details(
    workflow_id: str, namespace: str, address: str, resume_command: str
) -> str:
    """The Markdown on the conversation's page: where to read it, and how to go on."""
    history = AgentWorkflow.get_history.__name__
    return "\n".join(
        [
            "**A conversation with the durable agent** (one `send_message` Update per message).",
            "",
            f"- Read it: the **Queries** tab, `{history}`; or "
            f"`uv run temporal workflow query --address {address} --namespace {namespace} "
            f"--workflow-id {workflow_id} --name {history}`.",
            "- Each turn's tokens and cost: the query `get_usage`; calls waiting for approval: "
            "`get_pending_approvals` (and the current details above).",
            f"- Resume it: `{resume_command} --conversation-id {workflow_id}`.",
            "- Most events are the conversation's Workflow Stream (the live view's traffic).",
        ]
    )
