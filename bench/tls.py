"""What a new TLS connection per LLM call would cost, against a local HTTPS fake provider.

Run it with `uv run python bench/tls.py [--calls 100]`. It serves `fake_openai.py`'s replies over
HTTPS on loopback (a self-signed certificate made on the spot, trusted through
`litellm.ssl_verify`) and counts the TCP connections the server accepts. It makes the agent's
planning call (`app.agent.llm.client.complete`, not streamed) `--calls` times two ways: as the
worker does (LiteLLM keeps its clients, so connections are reused), and with LiteLLM's client
cache emptied before each call (a new client: a new connection and TLS handshake per call). It
prints, per way, the connections opened per call, wall and CPU milliseconds per call, and the
machine's load. The fake runs in this process's threads, so its CPU (its side of each handshake)
is counted too. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import ssl
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/tls.py`: the project's root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from bench import fake_openai


class CountingHandler(fake_openai.H):
    """The fake's handler, counting the connections it serves (one `setup` per connection)."""

    connections = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate and key for 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def serve_https(cert: Path, key: Path) -> tuple[ThreadingHTTPServer, int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


async def calls(n: int, fresh_client: bool) -> dict[str, float]:
    from app.agent.llm.client import complete, litellm_module

    litellm = litellm_module()
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Hello there"}]
    before = CountingHandler.connections
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        if fresh_client:
            litellm.in_memory_llm_clients_cache.flush_cache()
        await complete(messages, [])
    return {
        "connections per call": (CountingHandler.connections - before) / n,
        "wall ms per call": (time.perf_counter() - wall) * 1000 / n,
        "CPU ms per call": (time.process_time() - cpu) * 1000 / n,
    }


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = self_signed(Path(folder))
        server, port = serve_https(cert, key)
        os.environ.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",
            LLM_MODEL="openai/gpt-4o-mini",
            LLM_API_BASE=f"https://127.0.0.1:{port}/v1",
            LLM_API_KEY="sk-bench",
        )
        from app.agent.llm.client import litellm_module

        litellm_module().ssl_verify = str(cert)
        await calls(10, fresh_client=False)  # warm: imports, first client
        load = os.getloadavg()
        rows = {
            "kept clients (as the worker runs)": await calls(args.calls, fresh_client=False),
            "a new client per call": await calls(args.calls, fresh_client=True),
        }
        server.shutdown()
    table = Table(
        title=f"{args.calls} planning calls to a local HTTPS fake (0 ms), not streamed",
        caption=f"load average before: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
        f"({os.cpu_count()} CPUs); CPU: this process, the fake's threads included",
    )
    table.add_column("LiteLLM client")
    for column in next(iter(rows.values())):
        table.add_column(column, justify="right")
    for name, row in rows.items():
        table.add_row(name, *(f"{value:.2f}" for value in row.values()))
    Console(width=120).print(table)


if __name__ == "__main__":
    asyncio.run(main())
    os._exit(0)
