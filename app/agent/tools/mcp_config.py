"""The MCP servers the orchestrator worker may use: its configuration, its plugin, `mcp_servers`.

The file has the layout MCP clients already use: `{"mcpServers": {"<name>": {...}}}`, each server
either `command` / `args` / `env` / `cwd` (stdio: the worker starts it) or `url` / `headers`
(streamable HTTP), plus an optional `approval` map (`{"<tool>": "always" | "never"}`) that
overrides what the tool's annotations say. `${VAR}` in `env`, `headers` and `url` is read from the
worker's environment when the server is started, so secrets stay on the worker and never enter
a workflow's history. The default file is `mcp_servers.json` beside this module; `MCP_SERVERS_FILE`
names another, and an empty value or a missing file means no servers. Each server becomes a factory
of `temporalio-mcp`'s `MCPPlugin`; the activity `mcp_servers` tells the workflow the servers'
names and approval overrides, and nothing else.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from temporalio import activity

from app.agent.tools.mcp_tools import (
    Approval,
    MCPServerInfo,
    MCPServerList,
    MCPServersQuery,
    server_name_problem,
)

DEFAULT_FILE = Path(__file__).with_name("mcp_servers.json")
ENV_VAR = "MCP_SERVERS_FILE"
# A request to a server that takes longer fails on the worker, and the connection is replaced:
# temporalio-mcp's activities do not heartbeat, so Temporal's timeout alone would not end it.
DEFAULT_READ_TIMEOUT_SECONDS = 20.0
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

logger = logging.getLogger(__name__)


class MCPConfigError(ValueError):
    """The MCP configuration file cannot be used; the message says why and where."""


class MCPServerConfig(BaseModel, extra="forbid"):
    """One server's entry in the configuration file."""

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    # The MCP clients' own keys that say which transport; the fields above already say it.
    type: str | None = None
    approval: dict[str, Approval] = Field(default_factory=dict)
    read_timeout_seconds: float = Field(default=DEFAULT_READ_TIMEOUT_SECONDS, gt=0)

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either `command` (stdio) or `url` (streamable HTTP)")
        return self


class MCPConfig(BaseModel, extra="forbid"):
    """The whole file."""

    mcpServers: dict[str, MCPServerConfig] = Field(default_factory=dict)  # noqa: N815

    def infos(self) -> MCPServerList:
        """What the workflow may know of the servers: names and approval overrides."""
        return MCPServerList(
            servers=[
                MCPServerInfo(name=name, approval=server.approval)
                for name, server in self.mcpServers.items()
            ]
        )


def config_path() -> Path | None:
    """The configuration file the worker reads, or None when `MCP_SERVERS_FILE` is empty."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return DEFAULT_FILE
    return Path(value).expanduser() if value.strip() else None


def load_config(path: Path | None = None) -> MCPConfig:
    """The servers of `path` (default: `config_path()`); raises MCPConfigError on a bad file."""
    path = path if path is not None else config_path()
    if path is None or not path.exists():
        if path is not None:
            logger.info("No MCP servers: %s does not exist", path)
        return MCPConfig()
    try:
        config = MCPConfig.model_validate_json(path.read_text())
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise MCPConfigError(f"{path}: {problems}") from None
    for name in config.mcpServers:
        if (problem := server_name_problem(name)) is not None:
            raise MCPConfigError(f"{path}: {problem}")
    return config


def expand(text: str, where: str) -> str:
    """`text` with each `${VAR}` replaced by the worker's environment variable VAR."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            # Named, never shown: the value may be a secret.
            raise MCPConfigError(f"{where} needs the environment variable {name}, which is unset")
        return os.environ[name]

    return _VARIABLE.sub(value, text)


def resolve_command(command: str) -> str:
    """`command` as the worker runs it: the project's own environment first, then PATH."""
    if os.sep in command:
        return command
    beside_python = Path(sys.executable).parent / command
    if beside_python.exists():
        return str(beside_python)
    return shutil.which(command) or command


def client_factory(name: str, server: MCPServerConfig) -> Callable[[], Any]:
    """A factory of fresh MCP clients for one server, as `MCPPlugin` wants."""
    from mcp import Client, StdioServerParameters

    def stdio() -> Any:
        where = f"MCP server {name!r}"
        parameters = StdioServerParameters(
            command=resolve_command(server.command or ""),
            args=server.args,
            env={key: expand(value, where) for key, value in server.env.items()} or None,
            cwd=server.cwd,
        )
        return Client(parameters, read_timeout_seconds=server.read_timeout_seconds)

    def http() -> Any:
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        where = f"MCP server {name!r}"
        url = expand(server.url or "", where)
        if not server.headers:
            return Client(url, read_timeout_seconds=server.read_timeout_seconds)
        headers = {key: expand(value, where) for key, value in server.headers.items()}
        transport = streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers))
        return Client(transport, read_timeout_seconds=server.read_timeout_seconds)

    return stdio if server.command is not None else http


def mcp_plugin(config: MCPConfig) -> Any:
    """`temporalio-mcp`'s worker plugin with one factory per configured server."""
    from temporalio.mcp import MCPPlugin

    return MCPPlugin(
        {name: client_factory(name, server) for name, server in config.mcpServers.items()}
    )


def servers_activity(config: MCPConfig) -> Callable[[MCPServersQuery], Any]:
    """The `mcp_servers` activity of a worker configured with `config`."""
    infos = config.infos()

    @activity.defn(name="mcp_servers")
    async def mcp_servers(query: MCPServersQuery) -> MCPServerList:
        """The MCP servers this worker is configured with (names and approval overrides)."""
        return infos

    return mcp_servers


def describe(config: MCPConfig) -> str:
    """One line for the worker's log: which servers, never their commands or environments."""
    names = ", ".join(config.mcpServers) or "none"
    return f"MCP servers: {names}"
