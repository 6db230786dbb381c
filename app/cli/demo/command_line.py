"""`uv run demo`'s command line, and the command that runs the demo again the same way.

The resume hint the chat prints on leaving must work when followed: it names the same state
folder and the flags that choose the server and the encryption (`--encrypt` dropped would start
workers that cannot read the conversation).
"""

from __future__ import annotations

import argparse
import os
import shlex

from app.cli.demo.encryption import add_arguments

DEFAULT_PORT = 7233
STARTUP_TIMEOUT_SECONDS = 30.0


def demo_command(args: argparse.Namespace | None = None) -> str:
    """How to run the demo again with the same state folder and the flags that choose the
    server and the encryption (for the resume hint)."""
    folder = os.environ.get("DEMO_STATE_DIR")
    command = f"DEMO_STATE_DIR={shlex.quote(folder)} uv run demo" if folder else "uv run demo"
    if args is None:
        return command
    for flag, value in (
        ("--address", args.address),
        ("--port", args.port),
        ("--ui-port", args.ui_port),
        ("--codec-port", args.codec_port if args.encrypt else None),
    ):
        if value is not None:
            command += f" {flag} {shlex.quote(str(value))}"
    if args.headless:
        command += " --headless"
    if args.encrypt:
        command += " --encrypt"
    return command


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The demo's command line."""
    parser = argparse.ArgumentParser(
        prog="demo",
        description=(
            "Run the whole durable agent (Temporal dev server, namespaces and Nexus endpoints, "
            "three workers) and chat with it. Everything started stops when the chat ends."
        ),
    )
    parser.add_argument(
        "--conversation-id", help="resume this conversation instead of starting a new one"
    )
    parser.add_argument(
        "--address",
        help="Temporal server to reuse, or to start on this machine (default: TEMPORAL_ADDRESS, "
        f"or localhost:{DEFAULT_PORT})",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="Temporal port to reuse or start the dev server on (default: TEMPORAL_ADDRESS's "
        f"port, or {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--ui-port", type=int, help="Web UI port of a started dev server (default: port + 1000)"
    )
    parser.add_argument(
        "--headless", action="store_true", help="start the dev server without its Web UI"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=STARTUP_TIMEOUT_SECONDS,
        help="seconds to wait for the server and for each worker (default: %(default)g)",
    )
    add_arguments(parser)  # --encrypt, --codec-port
    return parser.parse_args(argv)
