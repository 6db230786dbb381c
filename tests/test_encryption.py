"""The payload codec and the codec server, without a Temporal server.

The codec: a round trip, a wrong key, a missing key, a rotated key reading old payloads, a
tampered payload, junk labelled as encrypted, plain payloads refused once encryption is
required (each unreadable payload failing only where its value is used, with the key id), the key
formats and the key file. The codec server: the codec protocol over
HTTP, the `Authorization` header it requires when configured, CORS for the Web UI, and the
one-line refusals when it cannot start.
"""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.converter import (
    ActivitySerializationContext,
    CompositePayloadConverter,
    WorkflowSerializationContext,
)
from temporalio.exceptions import ApplicationError

from app.agent.models import AgentInput
from app.cli import codec_server
from app.core.codec import (
    ENCRYPTED_ENCODING,
    KEY_ENV,
    KEY_FILE_ENV,
    KEY_ID_METADATA,
    REASON_METADATA,
    REQUIRED_ENV,
    UNREADABLE_ENCODING,
    WORKFLOW_METADATA,
    EncryptionCodec,
    EncryptionKey,
    EncryptionKeyError,
    encrypting_data_converter,
    encryption_required,
    keys_from_environment,
    write_key_file,
)
from app.core.processes import free_port

CANARY = "canary-7731"


def plain_payload(text: str = CANARY) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


async def encrypt(key: EncryptionKey, payload: Payload) -> Payload:
    [encrypted] = await EncryptionCodec([key]).encode([payload])
    return encrypted


async def test_a_payload_round_trips_and_is_ciphertext_in_between():
    key = EncryptionKey.generate()
    codec = EncryptionCodec([key])
    original = plain_payload()
    [encrypted] = await codec.encode([original])
    assert encrypted.metadata["encoding"] == ENCRYPTED_ENCODING
    assert encrypted.metadata[KEY_ID_METADATA] == key.id.encode()
    # Nothing of the message, its encoding or the key is left readable.
    for secret in (CANARY.encode(), b"json/plain", key.secret, key.encoded().encode()):
        assert secret not in encrypted.SerializeToString()
    assert await codec.decode([encrypted]) == [original]


async def test_each_payload_gets_a_fresh_nonce():
    key = EncryptionKey.generate()
    first, second = await EncryptionCodec([key]).encode([plain_payload(), plain_payload()])
    assert first.data != second.data


async def test_a_wrong_key_names_the_key_the_payload_needs():
    written_with, configured = EncryptionKey.generate(), EncryptionKey.generate()
    encrypted = await encrypt(written_with, plain_payload())
    reader = EncryptionCodec([configured])
    with pytest.raises(EncryptionKeyError) as caught:
        await reader.decode_strictly([encrypted])
    assert str(caught.value) == (
        f"a payload is encrypted with key id {written_with.id}, which is not among the "
        f"configured keys ({configured.id}): add that key (after the current one) to "
        f"{KEY_ENV} or {KEY_FILE_ENV}"
    )


async def test_a_payload_that_cannot_be_decrypted_fails_only_where_its_value_is_used():
    written_with, configured = EncryptionKey.generate(), EncryptionKey.generate()
    good = await encrypt(configured, plain_payload("fine"))
    bad = await encrypt(written_with, plain_payload())
    converter = encrypting_data_converter([configured])
    # The codec never raises: the SDK decodes a whole activation (or Nexus task) in one call.
    assert converter.payload_codec is not None
    decoded = await converter.payload_codec.decode([good, bad])
    assert decoded[0] == plain_payload("fine")
    assert decoded[1].metadata["encoding"] == UNREADABLE_ENCODING
    assert CANARY.encode() not in decoded[1].SerializeToString()
    assert converter.payload_converter.from_payloads([decoded[0]]) == ["fine"]
    with pytest.raises(EncryptionKeyError) as caught:
        converter.payload_converter.from_payloads([decoded[1]], [str])
    assert str(caught.value).startswith(f"a payload is encrypted with key id {written_with.id}")
    # The same through the data converter, as a client reading an answer does.
    with pytest.raises(EncryptionKeyError, match=f"key id {written_with.id}, which is not"):
        await converter.decode([bad], [str])


async def test_junk_labelled_as_encrypted_or_unreadable_is_refused_with_its_key_id():
    key = EncryptionKey.generate()
    codec = EncryptionCodec([key])
    for data in (b"", b"short", b"x" * 200):
        junk = Payload(
            metadata={"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key.id.encode()}, data=data
        )
        with pytest.raises(EncryptionKeyError) as caught:
            await codec.decode_strictly([junk])
        assert str(caught.value) == (
            f"a payload encrypted with key id {key.id} fails authentication: it was altered "
            "after encryption, or is not ciphertext at all"
        )
    # A sender cannot smuggle in its own "unreadable" payload with a reason of its choosing.
    forged = Payload(metadata={"encoding": UNREADABLE_ENCODING, REASON_METADATA: b"all fine"})
    [refused] = await codec.decode([forged])
    assert refused.metadata[REASON_METADATA] == (
        b"a payload arrived labelled unreadable: it is refused"
    )


def in_workflow(codec: EncryptionCodec, workflow_id: str) -> EncryptionCodec:
    return codec.with_context(WorkflowSerializationContext(namespace="ns", workflow_id=workflow_id))


async def test_a_payload_is_bound_to_its_workflow_and_refused_in_another():
    key = EncryptionKey.generate()
    codec = EncryptionCodec([key])
    [bound] = await in_workflow(codec, "conversation-a").encode([plain_payload()])
    assert bound.metadata[WORKFLOW_METADATA] == b"conversation-a"
    # Its own workflow (also as an activity of it), and a reader without a context, read it.
    assert await in_workflow(codec, "conversation-a").decode_strictly([bound]) == [plain_payload()]
    activity = ActivitySerializationContext(
        namespace="ns",
        activity_id="1",
        activity_type="execute_tool",
        activity_task_queue="q",
        workflow_id="conversation-a",
        workflow_type="AgentWorkflow",
        is_local=False,
    )
    assert await codec.with_context(activity).decode_strictly([bound]) == [plain_payload()]
    assert await codec.decode_strictly([bound]) == [plain_payload()]
    with pytest.raises(EncryptionKeyError) as caught:
        await in_workflow(codec, "conversation-b").decode_strictly([bound])
    assert str(caught.value) == (
        f"a payload encrypted (key id {key.id}) for workflow 'conversation-a' arrived for "
        "workflow 'conversation-b': it is refused"
    )
    # Relabelling it for the other workflow breaks its authentication.
    moved = Payload()
    moved.CopyFrom(bound)
    moved.metadata[WORKFLOW_METADATA] = b"conversation-b"
    with pytest.raises(EncryptionKeyError, match="fails authentication"):
        await in_workflow(codec, "conversation-b").decode_strictly([moved])
    del moved.metadata[WORKFLOW_METADATA]
    with pytest.raises(EncryptionKeyError, match="fails authentication"):
        await in_workflow(codec, "conversation-b").decode_strictly([moved])


async def test_payloads_written_without_a_context_still_read_in_every_workflow():
    key = EncryptionKey.generate()
    codec = EncryptionCodec([key])
    [unbound] = await codec.encode([plain_payload()])
    assert WORKFLOW_METADATA not in unbound.metadata
    assert await in_workflow(codec, "any").decode_strictly([unbound]) == [plain_payload()]


async def test_required_encryption_refuses_plain_payloads_and_needs_a_key():
    key = EncryptionKey.generate()
    strict = EncryptionCodec([key], require_encrypted=True)
    with pytest.raises(EncryptionKeyError) as caught:
        await strict.decode_strictly([plain_payload()])
    assert str(caught.value) == (
        f"a plain (unencrypted) payload arrived and {REQUIRED_ENV} is set: its sender needs "
        f"{KEY_ENV} or {KEY_FILE_ENV}"
    )
    assert await strict.decode([await encrypt(key, plain_payload())]) == [plain_payload()]
    with pytest.raises(EncryptionKeyError, match=f"{REQUIRED_ENV} is set but no key"):
        EncryptionCodec([], require_encrypted=True)
    assert encryption_required({REQUIRED_ENV: "1"}) and not encryption_required({})
    with pytest.raises(EncryptionKeyError, match=f"{REQUIRED_ENV} must be 1 or 0, not 'maybe'"):
        encryption_required({REQUIRED_ENV: "maybe"})


async def test_without_a_key_payloads_stay_plain_and_encrypted_ones_fail_in_one_line():
    keyless = EncryptionCodec([])
    assert not keyless.encrypts
    assert await keyless.encode([plain_payload()]) == [plain_payload()]
    key = EncryptionKey.generate()
    with pytest.raises(EncryptionKeyError) as caught:
        await keyless.decode_strictly([await encrypt(key, plain_payload())])
    assert str(caught.value) == (
        f"a payload is encrypted (key id {key.id}) but no key is configured: set "
        f"{KEY_ENV} or {KEY_FILE_ENV} to the key the other programs use"
    )


async def test_a_rotated_key_list_still_reads_old_payloads_and_writes_with_the_new_key():
    old, new = EncryptionKey.generate(), EncryptionKey.generate()
    before_rotation = await encrypt(old, plain_payload("before"))
    rotated = EncryptionCodec([new, old])
    assert await rotated.decode([before_rotation]) == [plain_payload("before")]
    [after_rotation] = await rotated.encode([plain_payload("after")])
    assert after_rotation.metadata[KEY_ID_METADATA] == new.id.encode()
    with pytest.raises(EncryptionKeyError, match=f"key id {new.id}, which is not among"):
        await EncryptionCodec([old]).decode_strictly([after_rotation])


async def test_plain_payloads_written_before_encryption_are_still_read():
    codec = EncryptionCodec([EncryptionKey.generate()])
    assert await codec.decode_strictly([plain_payload()]) == [plain_payload()]


async def test_an_altered_payload_or_relabelled_key_id_fails_authentication():
    key = EncryptionKey.generate()
    encrypted = await encrypt(key, plain_payload())
    altered = Payload()
    altered.CopyFrom(encrypted)
    altered.data = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1])
    with pytest.raises(EncryptionKeyError) as caught:
        await EncryptionCodec([key]).decode_strictly([altered])
    assert str(caught.value) == (
        f"a payload encrypted with key id {key.id} fails authentication: it was altered after "
        "encryption, or is not ciphertext at all"
    )


async def test_the_data_converter_encrypts_models_and_failure_messages():
    key = EncryptionKey.generate()
    converter = encrypting_data_converter([key])
    [payload] = await converter.encode([AgentInput()])
    assert payload.metadata["encoding"] == ENCRYPTED_ENCODING
    assert await converter.decode([payload], [AgentInput]) == [AgentInput()]
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"bad project {CANARY}"), failure)
    assert failure.message == "Encoded failure"
    assert CANARY.encode() not in failure.SerializeToString()
    decoded = await converter.decode_failure(failure)
    assert str(decoded) == f"bad project {CANARY}"


async def test_without_a_key_the_data_converter_writes_what_it_wrote_before():
    converter = encrypting_data_converter([])
    [payload] = await converter.encode([CANARY])
    assert payload == plain_payload()
    failure = Failure()
    await converter.encode_failure(ApplicationError(CANARY), failure)
    assert failure.message == CANARY


def test_keys_come_from_the_variable_in_order_the_first_encrypting():
    first, second = EncryptionKey.generate(), EncryptionKey.generate()
    keys = keys_from_environment({KEY_ENV: f"{first.encoded()}, {second.encoded()}"})
    assert [key.id for key in keys] == [first.id, second.id]
    assert keys_from_environment({}) == []
    assert repr(first.secret) not in repr(first)  # a logged key object shows no secret


def test_a_key_file_holds_one_key_per_line_and_is_written_for_its_owner_only(tmp_path: Path):
    path = tmp_path / "keys" / "agent.key"
    first, second = EncryptionKey.generate(), EncryptionKey.generate()
    write_key_file(path, first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_key_file(path, second)
    assert [k.id for k in keys_from_environment({KEY_FILE_ENV: str(path)})] == [first.id]
    path.write_text(f"# new key first\n{second.encoded()}\n\n{first.encoded()}\n")
    assert [k.id for k in keys_from_environment({KEY_FILE_ENV: str(path)})] == [
        second.id,
        first.id,
    ]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {KEY_ENV: "not a key!"},
            f"{KEY_ENV} (key 1) is not base64: write each key as base64 of 32 random bytes "
            "(`openssl rand -base64 32`)",
        ),
        (
            {KEY_ENV: base64.b64encode(b"x" * 16).decode()},
            f"{KEY_ENV} (key 1) decodes to 16 bytes, not 32: write each key as base64 of 32 "
            "random bytes (`openssl rand -base64 32`)",
        ),
        ({KEY_ENV: "a", KEY_FILE_ENV: "/k"}, f"set {KEY_ENV} or {KEY_FILE_ENV}, not both"),
        (
            {KEY_FILE_ENV: "/nonexistent/agent.key"},
            f"cannot read the key file /nonexistent/agent.key ({KEY_FILE_ENV}): "
            "No such file or directory",
        ),
        ({KEY_ENV: " , "}, f"{KEY_ENV} holds no key"),
    ],
    ids=["not-base64", "too-short", "both", "no-file", "empty"],
)
def test_a_bad_key_setting_is_one_line_saying_what_to_do(environ: dict[str, str], message: str):
    with pytest.raises(EncryptionKeyError) as caught:
        keys_from_environment(environ)
    assert str(caught.value) == message


# The codec server


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free port of 127.0.0.1; yields its URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def payloads_json(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def payloads_of(body: str) -> list[Payload]:
    return list(json_format.Parse(body, Payloads()).payloads)


async def test_the_codec_server_encodes_and_decodes_in_the_codec_protocol():
    key = EncryptionKey.generate()
    app = codec_server.codec_app(EncryptionCodec([key]))
    async with serving(app) as url, aiohttp.ClientSession() as http:
        async with http.post(f"{url}/encode", data=payloads_json(plain_payload())) as response:
            assert response.status == 200
            [encrypted] = payloads_of(await response.text())
        assert encrypted.metadata[KEY_ID_METADATA] == key.id.encode()
        async with http.post(f"{url}/decode", data=payloads_json(encrypted)) as response:
            assert response.status == 200
            assert payloads_of(await response.text()) == [plain_payload()]
        async with http.post(f"{url}/decode", data="not json") as response:
            assert response.status == 400
            assert (await response.json())["message"].startswith(
                'expected {"payloads": [...]} in protobuf JSON'
            )
        other = await encrypt(EncryptionKey.generate(), plain_payload())
        async with http.post(f"{url}/decode", data=payloads_json(other)) as response:
            assert response.status == 400
            assert "which is not among the configured keys" in (await response.json())["message"]


async def test_the_codec_server_refuses_a_request_without_the_configured_authorization():
    key = EncryptionKey.generate()
    app = codec_server.codec_app(EncryptionCodec([key]), auth="Bearer s3cret")
    encrypted = payloads_json(await encrypt(key, plain_payload()))
    async with serving(app) as url, aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            async with http.post(f"{url}/decode", data=encrypted, headers=headers) as response:
                assert response.status == 401, headers
                body = await response.json()
                assert body == {"message": "missing or wrong Authorization header"}
                assert CANARY not in json.dumps(body)
        headers = {"Authorization": "Bearer s3cret"}
        async with http.post(f"{url}/decode", data=encrypted, headers=headers) as response:
            assert response.status == 200
            assert payloads_of(await response.text()) == [plain_payload()]


async def test_the_codec_server_answers_cors_for_the_web_ui_origin_only():
    app = codec_server.codec_app(EncryptionCodec([EncryptionKey.generate()]), auth="Bearer s3cret")
    ui = "http://localhost:8233"
    async with serving(app) as url, aiohttp.ClientSession() as http:
        # The browser's preflight carries no credentials, so it must pass without them.
        preflight = {"Origin": ui, "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/decode", headers=preflight) as response:
            assert response.status == 204
            assert response.headers["Access-Control-Allow-Origin"] == ui
            assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
            assert "X-Namespace" in response.headers["Access-Control-Allow-Headers"]
            assert response.headers["Access-Control-Allow-Credentials"] == "true"
        elsewhere = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
        async with http.options(f"{url}/decode", headers=elsewhere) as response:
            assert "Access-Control-Allow-Origin" not in response.headers


def test_the_codec_server_will_not_start_without_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert codec_server.main([]) == 1
    assert capsys.readouterr().err == (
        "codec-server: no key configured: set AGENT_ENCRYPTION_KEY or AGENT_ENCRYPTION_KEY_FILE "
        "to the key the workers use\n"
    )


def test_the_codec_server_will_not_listen_beyond_this_machine_without_authorization(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.setenv(KEY_ENV, EncryptionKey.generate().encoded())
    monkeypatch.delenv(codec_server.AUTH_ENV, raising=False)
    assert codec_server.main(["--host", "0.0.0.0"]) == 1
    assert capsys.readouterr().err == (
        "codec-server: refusing to listen on 0.0.0.0 without CODEC_SERVER_AUTH: anyone who can "
        "reach it could read every conversation\n"
    )


def test_every_payload_converter_of_the_data_converter_shares_one_type_adapter_cache():
    # The SDK builds a payload converter per workflow activation: they must not start cold.
    import dataclasses

    from app.agent.models import Message, PlanOutput

    converter = encrypting_data_converter([])
    output = PlanOutput(message=Message.assistant("hi"), model="offline/agent")
    payloads = converter.payload_converter.to_payloads([output])
    assert dataclasses.replace(converter).payload_converter.from_payloads(
        payloads, [PlanOutput]
    ) == [output]
    first, second = converter.payload_converter_class(), converter.payload_converter_class()
    assert isinstance(first, CompositePayloadConverter)
    assert isinstance(second, CompositePayloadConverter)
    json_first, json_second = first.converters[b"json/plain"], second.converters[b"json/plain"]
    assert json_first._type_adapter is json_second._type_adapter  # type: ignore[attr-defined]
