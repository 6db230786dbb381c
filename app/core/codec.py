"""Encrypting every payload with AES-256-GCM, and the keys that do it.

A payload codec sits under the data converter of every client and worker: what leaves a program
(workflow and activity arguments and results, Update arguments and answers, Nexus inputs and
outputs, failure messages) is encrypted before it reaches the server, and decrypted when it comes
back, so the server's database and every event history hold only ciphertext. The keys come from
`AGENT_ENCRYPTION_KEY` (base64 of 32 random bytes; several separated by commas) or from the file
named by `AGENT_ENCRYPTION_KEY_FILE` (one key per line). The first key encrypts, every key
decrypts: to rotate, put a new key first and keep the old ones until no open history needs them.
Each encrypted payload names its key by id (a fingerprint of the key, never the key), so a
program can say which key it is missing. With no key configured, payloads stay plain and an
encrypted one fails with a one-line `EncryptionKeyError` saying that the key is missing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from app.core.converter import SharedPydanticPayloadConverter

KEY_ENV = "AGENT_ENCRYPTION_KEY"
KEY_FILE_ENV = "AGENT_ENCRYPTION_KEY_FILE"
ENCRYPTED_ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
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


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM over whole payloads; with no keys, plain payloads pass and encrypted ones fail.

    `failed` is set on the first payload this codec cannot decrypt, so a worker can stop with
    that one line instead of failing the same workflow task again and again.
    """

    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        self.keys = list(keys)
        self._ciphers = {key.id: AESGCM(key.secret) for key in self.keys}
        self.failed = asyncio.Event()
        self.failure: EncryptionKeyError | None = None

    @property
    def encrypts(self) -> bool:
        """Whether payloads are encrypted (a key is configured)."""
        return bool(self.keys)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload encrypted with the first key (unchanged when there is none)."""
        if not self.keys:
            return list(payloads)
        key_id = self.keys[0].id
        cipher = self._ciphers[key_id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            # The key id is authenticated too: a payload cannot be relabelled undetected.
            sealed = cipher.encrypt(nonce, payload.SerializeToString(), key_id.encode())
            metadata = {"encoding": ENCRYPTED_ENCODING, KEY_ID_METADATA: key_id.encode()}
            encoded.append(Payload(metadata=metadata, data=nonce + sealed))
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload decrypted; plain ones (written before encryption) unchanged."""
        try:
            return [self._decode_one(payload) for payload in payloads]
        except EncryptionKeyError as err:
            if self.failure is None:
                self.failure = err
            self.failed.set()
            raise

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCRYPTED_ENCODING:
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
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
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise EncryptionKeyError(
                f"a payload encrypted with key id {key_id} fails authentication: it was altered "
                "after encryption"
            ) from None
        return Payload.FromString(plain)


def encrypting_data_converter(keys: Sequence[EncryptionKey]) -> DataConverter:
    """The pydantic data converter (`app.core.converter`) with the codec; with keys, failure
    messages are encrypted too."""
    converter = dataclasses.replace(
        pydantic_data_converter,
        payload_converter_class=SharedPydanticPayloadConverter,
        payload_codec=EncryptionCodec(keys),
    )
    if keys:
        # Error messages and stack traces can quote what the user typed: move them into an
        # encoded attribute, so the codec covers them (the history shows "Encoded failure").
        converter = dataclasses.replace(
            converter, failure_converter_class=DefaultFailureConverterWithEncodedAttributes
        )
    return converter


def codec_of(converter: DataConverter) -> EncryptionCodec | None:
    """The encryption codec under `converter`, if it has one."""
    codec = converter.payload_codec
    return codec if isinstance(codec, EncryptionCodec) else None


if __name__ == "__main__":
    # `python -m app.core.codec` prints a new key, for AGENT_ENCRYPTION_KEY or a key file.
    print(EncryptionKey.generate().encoded())
