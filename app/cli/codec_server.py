"""`uv run codec-server`: decrypting payloads for the Web UI and the CLI, for whoever holds the key.

It speaks Temporal's remote codec protocol: `POST /decode` and `POST /encode`, each taking and
returning `{"payloads": [...]}` (payloads in protobuf JSON), with the codec of
`app/core/codec.py` and the keys of `AGENT_ENCRYPTION_KEY` or `AGENT_ENCRYPTION_KEY_FILE`. The
Web UI calls it from the browser (`temporal server start-dev --ui-codec-endpoint URL`), so it
answers CORS requests from the UI's origin (`--origin`, default http://localhost:8233); the CLI
calls it directly (`temporal workflow show --codec-endpoint URL`). With `CODEC_SERVER_AUTH` set,
a request must carry exactly that `Authorization` header (the CLI's `--codec-auth`). It listens on
127.0.0.1 unless told otherwise, and refuses another address without `CODEC_SERVER_AUTH`: anyone
who can reach it can read every conversation. It logs requests, never payloads or keys.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from app.core.codec import EncryptionCodec, EncryptionKeyError, keys_from_environment
from app.core.config import load_env

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8081
DEFAULT_ORIGIN = "http://localhost:8233"
AUTH_ENV = "CODEC_SERVER_AUTH"
ORIGIN_ENV = "CODEC_SERVER_ORIGIN"
# Temporal caps one payload at 2 MB; one request may carry a few of them.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def codec_app(
    codec: EncryptionCodec, *, origins: Sequence[str] = (DEFAULT_ORIGIN,), auth: str | None = None
) -> web.Application:
    """The codec server's routes: /encode and /decode, with CORS for `origins`."""
    allowed = {origin.rstrip("/") for origin in origins}

    @web.middleware
    async def cors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if request.method == "OPTIONS":
            # A browser's preflight never carries credentials: answer it without checking them.
            response: web.StreamResponse = web.Response(status=204)
        elif auth is not None and not hmac.compare_digest(
            request.headers.get("Authorization", "").encode(), auth.encode()
        ):
            response = web.json_response(
                {"message": "missing or wrong Authorization header"}, status=401
            )
        else:
            response = await handler(request)
        if origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = (
                "Content-Type, Authorization, X-Namespace"
            )
        response.headers["Vary"] = "Origin"
        return response

    async def transform(request: web.Request, decode: bool) -> web.Response:
        try:
            payloads = json_format.Parse(await request.text(), Payloads()).payloads
        except json_format.ParseError as err:
            message = f'expected {{"payloads": [...]}} in protobuf JSON: {err}'
            return web.json_response({"message": message}, status=400)
        try:
            convert = codec.decode_strictly if decode else codec.encode
            result: list[Payload] = await convert(payloads)
        except EncryptionKeyError as err:
            return web.json_response({"message": str(err)}, status=400)
        body = json_format.MessageToJson(Payloads(payloads=result), indent=None)
        return web.Response(text=body, content_type="application/json")

    async def decode(request: web.Request) -> web.Response:
        return await transform(request, decode=True)

    async def encode(request: web.Request) -> web.Response:
        return await transform(request, decode=False)

    async def preflight(request: web.Request) -> web.Response:
        return web.Response(status=204)  # the middleware adds the CORS headers

    app = web.Application(middlewares=[cors_and_auth], client_max_size=MAX_REQUEST_BYTES)
    app.router.add_post("/decode", decode)
    app.router.add_post("/encode", encode)
    app.router.add_route("OPTIONS", "/{path:.*}", preflight)
    return app


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The codec server's command line."""
    parser = argparse.ArgumentParser(
        prog="codec-server",
        description=(
            "Decrypt (and encrypt) Temporal payloads for the Web UI and the CLI with the keys of "
            "AGENT_ENCRYPTION_KEY or AGENT_ENCRYPTION_KEY_FILE."
        ),
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (%(default)s)")
    parser.add_argument(
        "--origin",
        action="append",
        help=f"a Web UI origin allowed to call it, repeatable (default: {ORIGIN_ENV}, "
        f"comma-separated, or {DEFAULT_ORIGIN})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C; returns the exit code (1, with one line, when it cannot start)."""
    args = parse_args(argv)
    load_env()
    try:
        keys = keys_from_environment()
    except EncryptionKeyError as err:
        print(f"codec-server: {err}", file=sys.stderr)
        return 1
    if not keys:
        print(
            "codec-server: no key configured: set AGENT_ENCRYPTION_KEY or "
            "AGENT_ENCRYPTION_KEY_FILE to the key the workers use",
            file=sys.stderr,
        )
        return 1
    auth = os.environ.get(AUTH_ENV) or None
    if auth is None and args.host not in LOCAL_HOSTS:
        print(
            f"codec-server: refusing to listen on {args.host} without {AUTH_ENV}: anyone who can "
            f"reach it could read every conversation",
            file=sys.stderr,
        )
        return 1
    origins = args.origin or (os.environ.get(ORIGIN_ENV) or DEFAULT_ORIGIN).split(",")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = codec_app(EncryptionCodec(keys), origins=origins, auth=auth)
    print(
        f"codec-server: http://{args.host}:{args.port} (key ids {', '.join(k.id for k in keys)}; "
        f"Web UI origins {', '.join(origins)}; Authorization "
        f"{'required' if auth else 'not required'})",
        file=sys.stderr,
        flush=True,
    )
    try:
        web.run_app(app, host=args.host, port=args.port, print=None)
    except OSError as err:
        print(f"codec-server: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Entry point of `uv run codec-server`."""
    sys.exit(main())


if __name__ == "__main__":
    run()
