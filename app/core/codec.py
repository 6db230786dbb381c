"""Encrypting every payload with AES-256-GCM, and the keys that do it.

A payload codec sits under the data converter of every client and worker: what leaves a program
(workflow and activity arguments and results, Update arguments and answers, Nexus inputs and
outputs, failure messages) is encrypted before it reaches the server, and decrypted when it comes
back, so the server's database and every event history hold only ciphertext. The keys come from
`AGENT_ENCRYPTION_KEY` (base64 of 32 random bytes; several separated by commas) or from the file
named by `AGENT_ENCRYPTION_KEY_FILE` (one key per line). The first key encrypts, every key
decrypts: to rotate, put a new key first and keep the old ones until no open history needs them.
Each encrypted payload names its key by id (a fingerprint of the key, never the key), so a
program can say which key it is missing. A payload this program cannot decrypt (another key, no
key, junk labelled as encrypted, or a plain one when `AGENT_ENCRYPTION_REQUIRED` is set) is not an
error of the whole program: the codec hands on an "unreadable" payload carrying the reason, and
the payload converter raises `EncryptionKeyError` with that reason where the value is used. So the
SDK fails only that one thing (rejects that Update, drops that signal, fails that activity or
Nexus task, or retries that workflow task) and the worker serves everything else. Where the SDK
says which workflow a payload belongs to (its serialization context), the payload is bound to
that workflow id: the id is authenticated with the ciphertext, so a payload copied into another
workflow is refused. Payloads written without a context (and before binding existed) still read.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import hashlib
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    EncodingPayloadConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from app.core.converter import SharedPydanticPayloadConverter

logger = logging.getLogger(__name__)

KEY_ENV = "AGENT_ENCRYPTION_KEY"
KEY_FILE_ENV = "AGENT_ENCRYPTION_KEY_FILE"
REQUIRED_ENV = "AGENT_ENCRYPTION_REQUIRED"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
# The workflow id a payload is bound to (authenticated as associated data, so it cannot be changed).
WORKFLOW_METADATA = "encryption-workflow-id"
# What the codec hands on in place of a payload it cannot decrypt: no data, only the reason.
UNREADABLE_ENCODING = b"binary/unreadable"
REASON_METADATA = "unreadable-reason"
KEY_BYTES = 32
NONCE_BYTES = 12  # the size GCM is designed for; a fresh random one per payload


class EncryptionKeyError(Exception):
    """A key is missing, malformed or wrong; the message says which and what to do, in one line."""


@dataclass(frozen=True)
class EncryptionKey:
    """One AES-256 key and its id, the fingerprint payloads carry to name the key they need."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise EncryptionKeyError(
                f"an encryption key must be {KEY_BYTES} bytes, not {len(self.secret)}"
            )

    @property
    def id(self) -> str:
        """A fingerprint of the key: safe to show and store, it reveals nothing of the key."""
        return hashlib.sha256(b"durable-agent payload key\0" + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> EncryptionKey:
        """A new random key."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(cls, text: str, source: str) -> EncryptionKey:
        """The key written as base64 in `text`; `source` names where it came from, for errors."""
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise EncryptionKeyError(
                f"{source} is not base64: write each key as base64 of {KEY_BYTES} random bytes "
                "(`openssl rand -base64 32`)"
            ) from None
        if len(secret) != KEY_BYTES:
            raise EncryptionKeyError(
                f"{source} decodes to {len(secret)} bytes, not {KEY_BYTES}: write each key as "
                f"base64 of {KEY_BYTES} random bytes (`openssl rand -base64 32`)"
            )
        return cls(secret)

    def encoded(self) -> str:
        """The key as base64, the way `AGENT_ENCRYPTION_KEY` and key files write it."""
        return base64.b64encode(self.secret).decode()


def keys_from_environment(environ: Mapping[str, str] | None = None) -> list[EncryptionKey]:
    """The configured keys, the encrypting one first; none when encryption is off."""
    environ = os.environ if environ is None else environ
    value, path = environ.get(KEY_ENV, "").strip(), environ.get(KEY_FILE_ENV, "").strip()
    if value and path:
        raise EncryptionKeyError(f"set {KEY_ENV} or {KEY_FILE_ENV}, not both")
    if value:
        texts = [(text, f"{KEY_ENV} (key {n})") for n, text in enumerate(value.split(","), 1)]
    elif path:
        texts = _key_file_lines(Path(path))
    else:
        return []
    keys = [EncryptionKey.parse(text, source) for text, source in texts if text.strip()]
    if not keys:
        raise EncryptionKeyError(f"{KEY_ENV if value else path} holds no key")
    return keys


def encryption_required(environ: Mapping[str, str] | None = None) -> bool:
    """Whether plain payloads are refused (`AGENT_ENCRYPTION_REQUIRED`), once every program
    writes encrypted ones."""
    environ = os.environ if environ is None else environ
    flag = environ.get(REQUIRED_ENV, "").strip().lower()
    if flag in {"", "0", "false", "no", "off"}:
        return False
    if flag in {"1", "true", "yes", "on"}:
        return True
    raise EncryptionKeyError(f"{REQUIRED_ENV} must be 1 or 0, not {flag!r}")


def _key_file_lines(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise EncryptionKeyError(
            f"cannot read the key file {path} ({KEY_FILE_ENV}): {err.strerror or err}"
        ) from None
    return [
        (line, f"line {n} of {path}")
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def write_key_file(path: Path, key: EncryptionKey) -> None:
    """Write `key` to a new file only its owner can read; refuses to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL with mode 0600: the key is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(
            "# AES-256 payload key (base64). The first key encrypts; all decrypt.\n"
            f"{key.encoded()}\n"
        )


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over whole payloads; with no keys, plain payloads pass and encrypted ones are
    unreadable. With `require_encrypted`, plain payloads are unreadable too."""

    # The workflow this copy of the codec encodes and decodes for; None without a context.
    workflow_id: str | None = None

    def __init__(self, keys: Sequence[EncryptionKey], *, require_encrypted: bool = False) -> None:
        if require_encrypted and not keys:
            raise EncryptionKeyError(
                f"{REQUIRED_ENV} is set but no key is configured: set {KEY_ENV} or {KEY_FILE_ENV}"
            )
        self.keys = list(keys)
        self.require_encrypted = require_encrypted
        self._ciphers = {key.id: AESGCM(key.secret) for key in self.keys}

    @property
    def encrypts(self) -> bool:
        """Whether payloads are encrypted (a key is configured)."""
        return bool(self.keys)

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        """This codec bound to the workflow the SDK says the payloads belong to, if any."""
        workflow_id = None
        if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
            workflow_id = context.workflow_id or None
        if workflow_id == self.workflow_id:
            return self
        bound = copy.copy(self)
        bound.workflow_id = workflow_id
        return bound

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload encrypted with the first key (unchanged when there is none)."""
        if not self.keys:
            return list(payloads)
        key_id = self.keys[0].id
        cipher = self._ciphers[key_id]
        metadata = {"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()}
        if self.workflow_id is not None:
            metadata[WORKFLOW_METADATA] = self.workflow_id.encode()
        associated = _associated_data(key_id, self.workflow_id)
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), associated)
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload decrypted; one that cannot be becomes an unreadable payload with the
        reason, which fails only where its value is used (`UnreadablePayloadConverter`)."""
        decoded = []
        for payload in payloads:
            try:
                decoded.append(self._decode_one(payload))
            except EncryptionKeyError as err:
                # Never raise here: the SDK decodes a whole workflow activation (or a Nexus task)
                # at once, and one bad payload sent by anyone must not fail the rest with it.
                logger.warning("refused a payload: %s", err)
                decoded.append(unreadable_payload(str(err)))
        return decoded

    async def decode_strictly(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload decrypted; raises `EncryptionKeyError` on the first that cannot be (for
        the codec server, which answers the Web UI with the reason)."""
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        encoding = payload.metadata.get("encoding")
        if encoding == UNREADABLE_ENCODING:
            # Only this codec makes these, after decoding: one arriving from outside is junk.
            raise EncryptionKeyError("a payload arrived labelled unreadable: it is refused")
        if encoding != ENCRYPTED_ENCODING:
            if self.require_encrypted:
                raise EncryptionKeyError(
                    f"a plain (unencrypted) payload arrived and {REQUIRED_ENV} is set: its "
                    f"sender needs {KEY_ENV} or {KEY_FILE_ENV}"
                )
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")[:64]
        if not self.keys:
            raise EncryptionKeyError(
                f"a payload is encrypted (key id {key_id}) but no key is configured: set "
                f"{KEY_ENV} or {KEY_FILE_ENV} to the key the other programs use"
            )
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(self._ciphers)
            raise EncryptionKeyError(
                f"a payload is encrypted with key id {key_id}, which is not among the configured "
                f"keys ({known}): add that key (after the current one) to {KEY_ENV} or "
                f"{KEY_FILE_ENV}"
            )
        bound_to = None
        if WORKFLOW_METADATA in payload.metadata:
            bound_to = payload.metadata[WORKFLOW_METADATA].decode(errors="replace")
            # Without a context (the codec server, a list of workflows) the payload's own
            # workflow id is used: it is authenticated, so it cannot have been changed.
            if self.workflow_id is not None and bound_to != self.workflow_id:
                raise EncryptionKeyError(
                    f"a payload encrypted (key id {key_id}) for workflow {bound_to[:200]!r} "
                    f"arrived for workflow {self.workflow_id!r}: it is refused"
                )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _associated_data(key_id, bound_to))
            return Payload.FromString(plain)
        except (InvalidTag, ValueError):  # ValueError: too short to hold a nonce and a tag
            raise EncryptionKeyError(
                f"a payload encrypted with key id {key_id} fails authentication: it was altered "
                "after encryption, or is not ciphertext at all"
            ) from None


def _associated_data(key_id: str, workflow_id: str | None) -> bytes:
    """What is authenticated beside the ciphertext: the key id, and the workflow id if bound.

    An unbound payload's associated data is the key id alone, as before binding existed."""
    if workflow_id is None:
        return key_id.encode()
    return key_id.encode() + b"\0workflow\0" + workflow_id.encode()


def unreadable_payload(reason: str) -> Payload:
    """What the codec hands on in place of a payload it cannot decrypt."""
    return Payload(
        metadata={"encoding": UNREADABLE_ENCODING, REASON_METADATA: reason.encode()[:1000]}
    )


class UnreadablePayloadConverter(EncodingPayloadConverter):
    """Raises `EncryptionKeyError` with the codec's reason for a payload it could not decrypt."""

    @property
    def encoding(self) -> str:
        return UNREADABLE_ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None  # it only ever reads

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise EncryptionKeyError(payload.metadata[REASON_METADATA].decode(errors="replace"))


class EncryptedPayloadConverter(SharedPydanticPayloadConverter):
    """The shared pydantic payload converter, which also reads what the codec could not."""

    extra_converters: ClassVar[tuple[EncodingPayloadConverter, ...]] = (
        UnreadablePayloadConverter(),
    )


def encrypting_data_converter(
    keys: Sequence[EncryptionKey], *, require_encrypted: bool = False
) -> DataConverter:
    """The pydantic data converter (`app.core.converter`) with the codec; with keys, failure
    messages are encrypted too."""
    converter = dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=EncryptedPayloadConverter,
        payload_codec=EncryptionCodec(keys, require_encrypted=require_encrypted),
    )
    if keys:
        # Error messages and stack traces can quote what the user typed: move them into an
        # encoded attribute, so the codec covers them (the history shows "Encoded failure").
        converter = dataclasses.replace(
            converter, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
        )
    return converter


if __name__ == "__main__":
    # `python -m app.core.codec` prints a new key, for AGENT_ENCRYPTION_KEY or a key file.
    print(EncryptionKey.generate().encoded())
