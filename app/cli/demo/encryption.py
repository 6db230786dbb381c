"""`uv run demo --encrypt`: the demo's key, its codec server, and the Web UI that reads through it.

With `--encrypt` and no key configured, the demo generates one into the state folder
(`encryption.key`, mode 0600) on first use and reuses it afterwards; a key already configured
(`AGENT_ENCRYPTION_KEY` or `AGENT_ENCRYPTION_KEY_FILE`, in the environment or `.env`) turns
encryption on by itself and is used as it is. The workers and the chat get the key through the
environment (the file's path, not the key), the dev server is started with `--ui-codec-endpoint`,
and the codec server runs as one more child process. Without either, nothing here runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.cli.codec_server import DEFAULT_PORT
from app.cli.demo.progress import shown_path
from app.core.codec import (
    KEY_ENV,
    KEY_FILE_ENV,
    EncryptionKey,
    EncryptionKeyError,
    keys_from_environment,
    write_key_file,
)
from app.core.config import load_env
from app.core.processes import Child, port_is_listening

KEY_FILE_NAME = "encryption.key"
CODEC_SERVER_LOG = "codec-server.log"


class EncryptionSetupError(Exception):
    """Why the demo cannot encrypt, in one line (the codec server's log tail may follow)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's encryption options."""
    parser.add_argument(
        "--encrypt",
        action="store_true",
        help=f"encrypt every payload (a key is generated into the state folder on first use, "
        f"unless {KEY_ENV} or {KEY_FILE_ENV} is set) and start the codec server",
    )
    parser.add_argument(
        "--codec-port",
        type=int,
        default=DEFAULT_PORT,
        help="port of the codec server started with encryption (default: %(default)s)",
    )


@dataclass
class DemoEncryption:
    """The demo's encryption: where its key is, and the codec server's address."""

    key_ids: list[str]
    key_file: Path | None
    port: int

    @property
    def endpoint(self) -> str:
        """The codec server's URL, for the Web UI and `temporal --codec-endpoint`."""
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def prepare(
        cls, args: argparse.Namespace, state: Path, env: dict[str, str]
    ) -> DemoEncryption | None:
        """Encryption for this run, its key in `env` and `os.environ`; None when it is off."""
        load_env()
        configured = any(env.get(name, "").strip() for name in (KEY_ENV, KEY_FILE_ENV))
        if not configured and not args.encrypt:
            return None
        key_file = None
        if not configured:
            key_file = state / KEY_FILE_NAME
            if not key_file.exists():
                write_key_file(key_file, EncryptionKey.generate())
            # The path, not the key, goes into the environment of every child.
            env[KEY_FILE_ENV] = os.environ[KEY_FILE_ENV] = str(key_file)
        try:
            keys = keys_from_environment(env)
        except EncryptionKeyError as err:
            raise EncryptionSetupError(str(err)) from None
        return cls([key.id for key in keys], key_file, args.codec_port)

    def server_args(self) -> list[str]:
        """What the dev server needs for its Web UI to decrypt through the codec server."""
        return ["--ui-codec-endpoint", self.endpoint]

    def describe(self, address: str) -> str:
        """One line for the demo's progress output, with a command that reads a conversation
        from the server at `address`."""
        where = shown_path(self.key_file) if self.key_file else "from the environment"
        return (
            f"Encryption: on (key id {self.key_ids[0]}, {where}); codec server {self.endpoint}: "
            f"`uv run temporal workflow show --address {address} -w ID "
            f"--codec-endpoint {self.endpoint}`"
        )

    async def start_codec_server(
        self, state: Path, env: dict[str, str], web_ui: str | None, timeout: float
    ) -> Child:
        """Start `codec-server` for the Web UI's origin; return once it listens."""
        if await port_is_listening("127.0.0.1", self.port):
            raise EncryptionSetupError(
                f"port {self.port} for the codec server is in use: stop what listens there, or "
                "pass --codec-port to use another port"
            )
        command = [sys.executable, "-m", "app.cli.codec_server", "--port", str(self.port)]
        if web_ui:
            # The browser names the UI by the host the user typed: allow both spellings.
            for host in ("localhost", "127.0.0.1"):
                command += ["--origin", web_ui.replace("localhost", host)]
        child = await Child.start("codec server", command, state / CODEC_SERVER_LOG, env)
        deadline = time.monotonic() + timeout
        while not await port_is_listening("127.0.0.1", self.port):
            if child.exit_code is not None or time.monotonic() > deadline:
                await child.stop()
                raise EncryptionSetupError(
                    f"the codec server did not start on port {self.port} (pass --codec-port to "
                    f"use another); the end of {shown_path(child.log)}:\n{child.log_tail()}"
                )
            await asyncio.sleep(0.05)
        return child
