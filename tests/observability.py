"""Test helpers that receive what the programs export: an OTLP/HTTP receiver and a Prometheus.

`OTLPReceiver` is a tiny in-process collector: it accepts OTLP/HTTP protobuf (`POST /v1/traces`,
what `opentelemetry-exporter-otlp-proto-http` sends), decodes the spans and keeps them, with the
raw bodies, so a test can look at the trees and check that no secret or prompt text was sent.
`Prometheus` runs Debian's `prometheus` binary with a generated scrape config and asks its HTTP
API, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from app.core.processes import Child, free_port


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as an OTLP receiver got it."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


@dataclass
class OTLPReceiver:
    """An OTLP/HTTP trace receiver on a free port of 127.0.0.1."""

    runner: web.AppRunner
    port: int
    spans: list[ReceivedSpan] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    @classmethod
    async def start(cls) -> OTLPReceiver:
        app = web.Application()
        runner = web.AppRunner(app)
        receiver = cls(runner, free_port())
        app.router.add_post("/v1/traces", receiver._export)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
        return receiver

    @property
    def endpoint(self) -> str:
        """The value for OTEL_EXPORTER_OTLP_ENDPOINT."""
        return f"http://127.0.0.1:{self.port}"

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ReceivedSpan(
                            service=str(resource.get("service.name", "")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def stop(self) -> None:
        await self.runner.cleanup()


def prometheus_binary() -> str | None:
    """Debian's `prometheus`, if installed (`apt-get install prometheus`)."""
    return shutil.which("prometheus")


def scrape_config(targets: dict[str, str], interval_seconds: float = 1.0) -> str:
    """A Prometheus config that scrapes each `job: host:port` every `interval_seconds`."""
    jobs = "".join(
        f"  - job_name: {json.dumps(job)}\n    static_configs:\n"
        f"      - targets: [{json.dumps(address)}]\n"
        for job, address in targets.items()
    )
    interval = f"{round(interval_seconds * 1000)}ms"  # Prometheus durations take no fractions
    return (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n{jobs}"
    )


@dataclass
class Prometheus:
    """A running `prometheus` and its HTTP API."""

    child: Child
    port: int

    @classmethod
    async def start(cls, binary: str, config: str, folder: Path) -> Prometheus:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "prometheus.yml").write_text(config)
        port = free_port()
        command = [
            binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        child = await Child.start("prometheus", command, folder / "prometheus.log", {})
        server = cls(child, port)
        deadline = time.monotonic() + 60
        while not await server._ready():
            if child.exit_code is not None or time.monotonic() > deadline:
                raise AssertionError(f"prometheus did not start:\n{child.log_tail(20)}")
            await asyncio.sleep(0.2)
        return server

    async def _ready(self) -> bool:
        try:
            await self._get("/-/ready")
        except OSError:
            return False
        return True

    async def _get(self, path: str) -> bytes:
        url = f"http://127.0.0.1:{self.port}{path}"

        def fetch() -> bytes:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())

        return await asyncio.to_thread(fetch)

    async def query(self, promql: str) -> list[dict[str, Any]]:
        """The result vector of an instant query."""
        body = await self._get("/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
        answer = json.loads(body)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    async def stop(self) -> None:
        await self.child.stop()
