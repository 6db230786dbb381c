"""MCP tools without a server: names, the approval rule, results as text, the configuration file,
and how the offline model picks an MCP tool by its description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError, TimeoutType

from app.agent.llm.offline_model import offline_reply
from app.agent.tools.catalog import TOOLS
from app.agent.tools.mcp_config import (
    DEFAULT_FILE,
    MCPConfigError,
    client_factory,
    config_path,
    expand,
    load_config,
)
from app.agent.tools.mcp_toolbox import failure_result
from app.agent.tools.mcp_tools import (
    TOOL_NAME,
    MCPServerInfo,
    MCPToolSpec,
    exposed_name,
    needs_approval,
    result_text,
    server_name_problem,
    tool_specs,
)

TIME_TOOLS = {
    "tools": [
        {
            "name": "get_current_time",
            "description": "Get current time in a specific timezone",
            "input_schema": {
                "type": "object",
                "title": "get_current_timeArguments",
                "properties": {"timezone": {"type": "string", "description": "IANA timezone name"}},
                "required": ["timezone"],
            },
            "annotations": {"read_only_hint": True, "destructive_hint": False},
        },
        {
            "name": "convert_time",
            "description": "Convert time between timezones",
            "input_schema": {
                "type": "object",
                "properties": {
                    "source_timezone": {"type": "string", "description": "Source IANA timezone"},
                    "time": {"type": "string", "description": "Time in 24-hour format (HH:MM)"},
                    "target_timezone": {"type": "string", "description": "Target IANA timezone"},
                },
                "required": ["source_timezone", "time", "target_timezone"],
            },
            "annotations": {"readOnlyHint": True},
        },
    ]
}


def test_tools_are_offered_as_server__tool_with_an_object_schema():
    [now, convert] = tool_specs(MCPServerInfo(name="time"), TIME_TOOLS)
    assert now.tool_schema() == {
        "type": "function",
        "function": {
            "name": "time__get_current_time",
            "description": "Get current time in a specific timezone",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA timezone name"}},
                "required": ["timezone"],
            },
        },
    }
    assert (now.server, now.tool, now.requires_approval) == ("time", "get_current_time", False)
    assert (convert.name, convert.requires_approval) == ("time__convert_time", False)


def test_names_that_do_not_fit_the_providers_pattern_are_cleaned_and_kept_apart():
    long = exposed_name("srv", "a" * 80)
    dotted = exposed_name("srv", "files.read")
    slashed = exposed_name("srv", "files/read")
    assert all(TOOL_NAME.fullmatch(name) for name in (long, dotted, slashed))
    assert dotted.startswith("srv__files_read_") and slashed.startswith("srv__files_read_")
    assert dotted != slashed
    assert len(long) == 64


@pytest.mark.parametrize("name", ["a__b", "a_", "-a", "", "x" * 31, "sp ace", "dot.ted"])
def test_server_names_that_could_make_two_tools_collide_are_refused(name: str):
    problem = server_name_problem(name)
    assert problem is not None and f"MCP server name {name!r} is not allowed" in problem


def test_catalog_names_cannot_collide_with_mcp_names():
    assert not any("__" in name for name in TOOLS)
    assert server_name_problem("my_server-2") is None


@pytest.mark.parametrize(
    ("annotations", "override", "expected"),
    [
        ({"read_only_hint": True}, None, False),
        ({"readOnlyHint": True, "destructiveHint": True}, None, True),
        ({"read_only_hint": False, "destructive_hint": False}, None, True),
        ({}, None, True),
        (None, None, True),
        ({"read_only_hint": True}, "always", True),
        ({"destructive_hint": True}, "never", False),
    ],
)
def test_approval_comes_from_annotations_unless_the_configuration_says(
    annotations, override, expected
):
    assert needs_approval(annotations, override) is expected


def test_the_configuration_overrides_one_tools_approval():
    server = MCPServerInfo(name="time", approval={"get_current_time": "always"})
    [now, convert] = tool_specs(server, TIME_TOOLS)
    assert (now.requires_approval, convert.requires_approval) == (True, False)


def test_results_become_text_structured_json_and_named_media():
    text = {"content": [{"type": "text", "text": "hello"}], "is_error": False}
    structured = {
        "content": [{"type": "text", "text": '{"a": 1}'}],
        "structured_content": {"b": 2, "a": 1},
    }
    wrapped = {
        "content": [{"type": "text", "text": "plain"}],
        "structured_content": {"result": "x"},
    }
    media = {
        "content": [
            {"type": "image", "data": "AAAA" * 10, "mime_type": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "secret body"}},
            {"type": "resource_link", "name": "doc", "uri": "https://example.com/doc"},
        ]
    }
    failed = {"content": [{"type": "text", "text": "no such file"}], "isError": True}
    assert result_text(text) == ("hello", False)
    assert result_text(structured) == ('{"a": 1, "b": 2}', False)
    assert result_text(wrapped) == ("plain", False)
    assert result_text(media) == (
        "[image: image/png, about 30 bytes, not shown]\n"
        "[resource: file:///a.txt, not shown]\n"
        "[resource link: doc https://example.com/doc]",
        False,
    )
    assert result_text(failed) == ("no such file", True)


def failed(cause: BaseException) -> ActivityError:
    """An MCP call's activity failure with `cause`, as the workflow sees it."""
    err = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="temporalio.mcp.git.call-tool",
        activity_id="3",
        retry_state=None,
    )
    err.__cause__ = cause
    return err


def test_a_write_that_got_no_answer_says_its_outcome_is_unknown():
    read = MCPToolSpec(
        name="git__git_status", server="git", tool="git_status", requires_approval=False
    )
    write = MCPToolSpec(name="git__git_commit", server="git", tool="git_commit")
    hung = failed(
        TimeoutError("activity timeout", type=TimeoutType.START_TO_CLOSE, last_heartbeat_details=[])
    )
    unavailable = "is unavailable: MCP server git did not answer ("
    assert unavailable in failure_result(read, hung)
    assert failure_result(read, hung).endswith("It may work again in a later turn.")
    assert unavailable in failure_result(write, hung)
    assert failure_result(write, hung).endswith(
        "Outcome unknown: it may have been done; check before trying again."
    )
    # A JSON-RPC error is an answer: the server refused the call, so nothing was done.
    refused = failed(ApplicationError("Unknown tool", -32602, type="MCPProtocolError"))
    assert failure_result(write, refused) == (
        "Error: the git__git_commit tool refused the call (JSON-RPC error -32602): Unknown tool"
    )


def test_the_default_file_configures_the_time_server_only():
    config = load_config(DEFAULT_FILE)
    assert list(config.mcpServers) == ["time"]
    assert config.infos().model_dump() == {"servers": [{"name": "time", "approval": {}}]}


def test_an_empty_variable_or_a_missing_file_means_no_servers(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("MCP_SERVERS_FILE", "")
    assert config_path() is None
    assert load_config().mcpServers == {}
    monkeypatch.setenv("MCP_SERVERS_FILE", str(tmp_path / "absent.json"))
    assert load_config().mcpServers == {}


@pytest.mark.parametrize(
    ("servers", "problem"),
    [
        ({"a": {}}, "mcpServers.a: Value error, give either `command` (stdio) or `url`"),
        ({"a": {"command": "x", "url": "http://h"}}, "give either `command` (stdio) or `url`"),
        ({"a": {"command": "x", "approval": {"t": "maybe"}}}, "mcpServers.a.approval.t: Input"),
        ({"a__b": {"command": "x"}}, "MCP server name 'a__b' is not allowed"),
    ],
)
def test_a_bad_file_is_refused_with_the_reason(tmp_path: Path, servers: dict, problem: str):
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": servers}))
    with pytest.raises(MCPConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert problem in str(caught.value)


def test_secrets_come_from_the_workers_environment_and_are_never_shown(monkeypatch):
    monkeypatch.setenv("MCP_TEST_TOKEN", "s3cret")
    assert expand("Bearer ${MCP_TEST_TOKEN}", "x") == "Bearer s3cret"
    monkeypatch.delenv("MCP_TEST_TOKEN")
    with pytest.raises(MCPConfigError) as caught:
        expand("Bearer ${MCP_TEST_TOKEN}", "MCP server 'gh'")
    assert str(caught.value) == (
        "MCP server 'gh' needs the environment variable MCP_TEST_TOKEN, which is unset"
    )
    # What the workflow learns of a server: its name and approval overrides, no env, no args.
    config = load_config(DEFAULT_FILE).model_copy()
    config.mcpServers["gh"] = config.mcpServers["time"].model_copy(
        update={"env": {"TOKEN": "${MCP_TEST_TOKEN}"}}
    )
    assert "TOKEN" not in config.infos().model_dump_json()
    with pytest.raises(MCPConfigError):
        client_factory("gh", config.mcpServers["gh"])()


def offered(*servers: tuple[str, dict]) -> list[dict]:
    return [
        spec.tool_schema()
        for name, listed in servers
        for spec in tool_specs(MCPServerInfo(name=name), listed)
    ]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("What time is it in Tokyo?", ("time__get_current_time", {"timezone": "Asia/Tokyo"})),
        (
            "what's the time in new york",
            ("time__get_current_time", {"timezone": "America/New_York"}),
        ),
        (
            "Convert 9:30 from London to Tokyo time",
            (
                "time__convert_time",
                {
                    "source_timezone": "Europe/London",
                    "time": "09:30",
                    "target_timezone": "Asia/Tokyo",
                },
            ),
        ),
    ],
)
def test_the_offline_model_calls_mcp_tools_by_their_descriptions(message: str, expected: tuple):
    reply = offline_reply([{"role": "user", "content": message}], offered(("time", TIME_TOOLS)))
    assert reply.tool_calls == [expected]


def test_the_offline_model_prefers_its_own_tools_and_calls_no_mcp_tool_for_small_talk():
    tools = [tool.schema() for tool in TOOLS.values()] + offered(("time", TIME_TOOLS))
    assert offline_reply([{"role": "user", "content": "Calculate 15 * 23"}], tools).tool_calls == [
        ("calculator", {"expression": "15 * 23"})
    ]
    hello = offline_reply([{"role": "user", "content": "Hello"}], tools)
    assert hello.tool_calls == [] and (hello.text or "").startswith("Hello! ")


def test_the_offline_model_answers_from_an_mcp_result():
    result = {
        "timezone": "Asia/Tokyo",
        "datetime": "2026-12-03T03:31:00+09:00",
        "day_of_week": "Thursday",
    }
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "What time is it in Tokyo?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "c1",
                    "function": {
                        "name": "time__get_current_time",
                        "arguments": '{"timezone": "Asia/Tokyo"}',
                    },
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "c1",
            "name": "time__get_current_time",
            "content": json.dumps(result),
        },
    ]
    assert offline_reply(messages, []).text == (
        "In Asia/Tokyo it is 03:31 on Thursday (2026-12-03T03:31:00+09:00, from MCP time)."
    )
