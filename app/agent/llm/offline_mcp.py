"""How the offline model uses tools it was never written for: MCP tools, by their descriptions.

The offline model knows the catalog's tools by heart; an MCP server's tools (`server__tool`) it
only reads, as a real model would: it picks the tool whose name and description share the most
words with the request, and fills its required arguments from the request by what each parameter
says it is: a time zone from a city ("Tokyo" is `Asia/Tokyo`), a time ("9:30"), a path, a number,
or quoted text. A tool whose required arguments it cannot fill is not called.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from typing import Any

_STOPWORDS = {
    *("a", "an", "the", "is", "it", "in", "of", "for", "to", "and", "or", "me", "my", "i"),
    *("what", "whats", "how", "please", "can", "you", "tell", "show", "shows", "get", "give"),
    *("list", "on", "at", "by", "with", "from", "this", "that", "now", "are", "be", "do"),
    *("specific", "current", "currently", "some", "any", "all", "its"),
}
_TIME = re.compile(r"\b([01]?\d|2[0-3]):([0-5]\d)\b")
_PATH = re.compile(r"(?<![\w/])(/[\w.\-/]+)")
_QUOTED = re.compile(r"[\"“']([^\"”']+)[\"”']")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])")


def _words(text: str) -> set[str]:
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", text)}
    # "timezones" and "timezone", "commits" and "commit": one word each.
    return {w[:-1] if w.endswith("s") and len(w) > 3 else w for w in words} - _STOPWORDS


@functools.cache
def _places() -> dict[str, str]:
    """City and region names ("tokyo", "new york") to their IANA time zone."""
    places: dict[str, str] = {"utc": "Etc/UTC"}
    for zone in sorted(zoneinfo.available_timezones()):
        if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "posix/", "right/")):
            places.setdefault(zone.rsplit("/", 1)[1].replace("_", " ").lower(), zone)
    return places


def time_zones(text: str) -> list[str]:
    """The time zones of the places a request names, in the order it names them."""
    lowered = text.lower()
    found: list[tuple[int, str]] = []
    for place, zone in _places().items():
        for match in re.finditer(rf"\b{re.escape(place)}\b", lowered):
            found.append((match.start(), zone))
    return [zone for _, zone in sorted(found)]


def _fill(name: str, schema: dict[str, Any], text: str, zones: list[str]) -> Any:
    """A value for one parameter from the request, or None when the request has none."""
    about = f"{name} {schema.get('description', '')}".lower()
    kind = schema.get("type")
    if "timezone" in about or "time zone" in about:
        return zones.pop(0) if zones else "Etc/UTC"
    if kind in ("integer", "number"):
        number = _NUMBER.search(text)
        if number is None:
            return None
        return int(float(number.group(1))) if kind == "integer" else float(number.group(1))
    if kind == "array":
        return None
    if re.search(r"\btime\b", about) and (clock := _TIME.search(text)):
        return f"{int(clock.group(1)):02d}:{clock.group(2)}"
    if "path" in about or "directory" in about:
        path = _PATH.search(text)
        return path.group(1).rstrip(".,;:?!") if path else None
    quoted = _QUOTED.search(text)
    return quoted.group(1) if quoted else None


def _arguments(tool: dict[str, Any], text: str) -> dict[str, Any] | None:
    """Arguments for every required parameter of `tool`, or None if one cannot be filled."""
    parameters = tool.get("parameters") or {}
    properties: dict[str, Any] = parameters.get("properties") or {}
    zones = time_zones(text)
    arguments: dict[str, Any] = {}
    for name in parameters.get("required") or []:
        value = _fill(name, properties.get(name) or {}, text, zones)
        if value is None:
            return None
        arguments[name] = value
    return arguments


def mcp_tool_call(text: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The MCP tool (`server__tool`) a request asks for, with its arguments, or None."""
    asked = _words(text)
    candidates = []
    for index, tool in enumerate(tool["function"] for tool in tools):
        name = str(tool.get("name") or "")
        if "__" not in name:
            continue
        server, _, short = name.partition("__")
        # The tool's own name counts twice: it says what the tool is for most plainly.
        own = _words(short.replace("_", " ")) - _words(server)
        described = _words(str(tool.get("description") or ""))
        score = 2 * len(asked & own) + len(asked & (described - own))
        if score:
            candidates.append((-score, index, name, tool))
    for _, _, name, tool in sorted(candidates):
        arguments = _arguments(tool, text)
        if arguments is not None:
            return name, arguments
    return None


def describe_mcp_result(name: str, data: Any) -> str:
    """One sentence about an MCP tool's result, for the final answer."""
    server, _, tool = name.partition("__")
    if isinstance(data, dict) and "datetime" in data and "timezone" in data:
        clock = re.search(r"T(\d{2}:\d{2})", str(data["datetime"]))
        day = f" on {data['day_of_week']}" if data.get("day_of_week") else ""
        when = clock.group(1) if clock else data["datetime"]
        return f"In {data['timezone']} it is {when}{day} ({data['datetime']}, from MCP {server})."
    if isinstance(data, dict):
        details = ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in data.items())
    else:
        details = str(data).strip()
    return f"{tool} (MCP {server}): {details}"
