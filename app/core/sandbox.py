"""The workflow sandbox every worker runs workflows in: the SDK's, minus one measured cost.

The SDK's `SandboxedWorkflowRunner` re-enters the sandbox (an `exec` of a small code string with
the sandbox's `sys.modules`, `__import__` and builtins swapped in, then swapped back) not only to
run workflow code but also for every payload of every workflow task, to ask the workflow instance
which serialization context (the workflow, or one of its activities, Nexus operations or child
workflows) the data converter should give the payload. That lookup is SDK code reading the
instance's pending commands; no workflow code and no import runs in it. Replaying a 50-turn
agent conversation, these lookups were about 40% of the worker's CPU per workflow task (bench/
README.md). `SandboxedRunner` asks the instance inside the sandbox directly instead; workflow
code itself still runs only inside the sandbox, with its restrictions.

It uses one private name of the SDK (`workflow_sandbox._runner._Instance` and the instance's
`__temporal_in_sandbox` global); if a future SDK changes them, it falls back to the SDK's own
behaviour rather than fail. `tests/test_sandbox.py` checks that the contexts are the SDK's.
"""

from __future__ import annotations

from typing import Any

from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import _runner as sdk_runner

_SdkInstance: Any = getattr(sdk_runner, "_Instance", None)
# The name under which the SDK keeps the object that owns the workflow instance in the sandbox.
_IN_SANDBOX = "__temporal_in_sandbox"


if _SdkInstance is not None:

    class _Instance(_SdkInstance):  # type: ignore[misc, valid-type]
        """The SDK's sandboxed instance, with the serialization-context lookups made directly."""

        def _inner(self) -> Any:
            in_sandbox = self.globals_and_locals.get(_IN_SANDBOX)
            return getattr(in_sandbox, "instance", None)

        def get_serialization_context(self, command_info: Any) -> Any:
            inner = self._inner()
            if inner is None:
                return super().get_serialization_context(command_info)
            return inner.get_serialization_context(command_info)

        def get_external_store_context(self, command_info: Any) -> Any:
            inner = self._inner()
            if inner is None:
                return super().get_external_store_context(command_info)
            return inner.get_external_store_context(command_info)


class SandboxedRunner(SandboxedWorkflowRunner):
    """`SandboxedWorkflowRunner` with the same restrictions, and cheaper payload bookkeeping."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        if _SdkInstance is None:
            return super().create_instance(det)
        instance: WorkflowInstance = _Instance(det, self.runner_class, self.restrictions)
        return instance
