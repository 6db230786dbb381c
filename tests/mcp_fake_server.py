"""A small stdio MCP server whose tools misbehave on request, for the failure tests.

Run as `python -m tests.mcp_fake_server`. Every tool says `readOnlyHint: true`, so none waits for
approval. `crash` ends the server process mid-call, `hang` never answers, `broken` answers with
`isError`, `picture` returns an image and a resource link, `weather` returns structured content,
and `shout` returns text (it is the one that works).
"""

from __future__ import annotations

import asyncio
import os

from mcp.server.mcpserver import MCPServer
from mcp.types import ImageContent, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel

server = MCPServer("fake")
READ_ONLY = ToolAnnotations(read_only_hint=True)


class Weather(BaseModel):
    city: str
    celsius: float


@server.tool(annotations=READ_ONLY)
def shout(text: str) -> str:
    """Repeat the text in capital letters."""
    return text.upper()


@server.tool(annotations=READ_ONLY)
def crash(text: str) -> str:
    """End the server process in the middle of the call."""
    os._exit(3)


@server.tool(annotations=READ_ONLY)
async def hang(text: str) -> str:
    """Never answer."""
    await asyncio.sleep(3_600)
    return text


@server.tool(annotations=READ_ONLY)
def broken(text: str) -> str:
    """Fail with an error result."""
    raise ValueError(f"cannot handle {text!r}")


@server.tool(annotations=READ_ONLY, structured_output=False)
def picture(text: str) -> list[ImageContent | ResourceLink | TextContent]:
    """Return an image, a link and a caption."""
    return [
        ImageContent(type="image", data="iVBORw0KGgo=" * 100, mime_type="image/png"),
        ResourceLink(type="resource_link", name="chart", uri="file:///tmp/chart.png"),
        TextContent(type="text", text=f"caption: {text}"),
    ]


@server.tool(annotations=READ_ONLY)
def weather(city: str) -> Weather:
    """The weather in a city, as structured content."""
    return Weather(city=city, celsius=21.5)


if __name__ == "__main__":
    asyncio.run(server.run_stdio_async())
