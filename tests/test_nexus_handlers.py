"""The IT and Finance Nexus handlers: every operation, every bad argument, and the setup.

On the dev server, a small caller workflow in `default` calls each operation through the real
endpoints, as the agent does, and reports either the typed result or the error's cause chain. The
handler workers poll the fixed task queues the endpoints target, in their own namespaces, for the
whole module: one worker per queue, so no two race for a task. The tool functions, the contracts
and the setup commands are also tested directly, without a server.
"""

from __future__ import annotations

import ast
import asyncio
import math
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import nexusrpc
import pytest
from pydantic import BaseModel
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.operatorservice.v1 import ListNexusEndpointsRequest
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    NexusOperationError,
)
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxRestrictions

# The sandbox re-imports this module for CallerWorkflow: the app's modules (which resolve paths
# at import) are ours, deterministic and already loaded, so the sandbox may share them.
with workflow.unsafe.imports_passed_through():
    from app.agent.models import AgentConfig
    from app.core.dev_server import find_binary
    from app.core.names import FINANCE, IT, PROJECT_ROOT
    from app.core.sandbox import SandboxedRunner
    from app.core.setup import cli_commands, ensure_nexus_setup
    from app.core.tool_errors import InvalidToolArguments
    from app.finance.market_data import SampleMarketData, ticker_symbol
    from app.finance.roi import compute_roi
    from app.finance.service import (
        CalculateRoiInput,
        CalculateRoiOutput,
        FinanceService,
        StockPriceInput,
        StockPriceOutput,
    )
    from app.finance.worker import finance_worker
    from app.it import activities as it_activities
    from app.it import handler as it_handler
    from app.it.activities import (
        SampleJiraClient,
        fetch_jira_metrics,
        get_host_addresses,
        project_key,
    )
    from app.it.handler import JiraMetricsWorkflow
    from app.it.service import (
        CreateJiraIssueInput,
        GetIpInput,
        GetIpOutput,
        ITService,
        JiraMetricsInput,
        JiraMetricsOutput,
    )
    from app.it.worker import it_worker
    from tests.conftest import client_for

# Long enough that a retried error would end in this timeout instead of the handler's error.
OPERATION_TIMEOUT_SECONDS = 60

OutputT = TypeVar("OutputT", bound=BaseModel)


class CallRequest(BaseModel):
    """One operation for the caller workflow to call: set exactly one field."""

    jira_metrics: JiraMetricsInput | None = None
    get_ip: GetIpInput | None = None
    stock_price: StockPriceInput | None = None
    calculate_roi: CalculateRoiInput | None = None


class FailureLink(BaseModel):
    """One error of a cause chain, as the caller workflow saw it."""

    error: str
    type: str | None = None
    message: str
    non_retryable: bool | None = None


class CallResult(BaseModel):
    """The operation's output as JSON (what the LLM would see), or its failure's cause chain."""

    output_json: str | None = None
    failure: list[FailureLink] = []


def cause_chain(err: BaseException) -> list[FailureLink]:
    """`err` and its causes, outermost first."""
    links = []
    current: BaseException | None = err
    while current is not None:
        link = FailureLink(
            error=type(current).__name__,
            message=current.message if isinstance(current, FailureError) else str(current),
        )
        if isinstance(current, ApplicationError):
            link.type, link.non_retryable = current.type, current.non_retryable
        elif isinstance(current, nexusrpc.HandlerError):
            link.type, link.non_retryable = current.type.name, not current.retryable
        links.append(link)
        current = current.__cause__
    return links


@workflow.defn
class CallerWorkflow:
    """Calls one IT or Finance operation through its endpoint, as the agent's workflow does."""

    @workflow.run
    async def run(self, request: CallRequest) -> CallResult:
        try:
            output = await self._call(request)
        except NexusOperationError as err:
            return CallResult(failure=cause_chain(err))
        return CallResult(output_json=output.model_dump_json())

    async def _call(self, request: CallRequest) -> BaseModel:
        timeout = timedelta(seconds=OPERATION_TIMEOUT_SECONDS)
        it = workflow.create_nexus_client(service=ITService, endpoint=IT.endpoint)
        finance = workflow.create_nexus_client(service=FinanceService, endpoint=FINANCE.endpoint)
        if request.jira_metrics is not None:
            return await it.execute_operation(
                ITService.jira_metrics, request.jira_metrics, schedule_to_close_timeout=timeout
            )
        if request.get_ip is not None:
            return await it.execute_operation(
                ITService.get_ip, request.get_ip, schedule_to_close_timeout=timeout
            )
        if request.stock_price is not None:
            return await finance.execute_operation(
                FinanceService.stock_price, request.stock_price, schedule_to_close_timeout=timeout
            )
        if request.calculate_roi is not None:
            return await finance.execute_operation(
                FinanceService.calculate_roi,
                request.calculate_roi,
                schedule_to_close_timeout=timeout,
            )
        raise ApplicationError("the request names no operation", non_retryable=True)


@dataclass
class Called:
    """What one caller workflow run returned, and its handle."""

    result: CallResult
    handle: WorkflowHandle[Any, Any]

    async def events(self) -> list[HistoryEvent]:
        """The caller workflow's event history."""
        return list((await self.handle.fetch_history()).events)

    def output(self, model: type[OutputT]) -> OutputT:
        """The operation's output; fails the test with the cause chain if the call failed."""
        assert self.result.output_json is not None, self.result.failure
        return model.model_validate_json(self.result.output_json)

    def invalid_arguments(self) -> FailureLink:
        """The `InvalidToolArguments` error in the cause chain; fails the test if there is none."""
        assert self.result.failure, f"expected a failure, got {self.result.output_json}"
        assert self.result.failure[0].error == "NexusOperationError"
        matches = [link for link in self.result.failure if link.type == "InvalidToolArguments"]
        assert matches, self.result.failure
        return matches[0]


Call = Callable[[CallRequest], Awaitable[Called]]


@pytest.fixture(scope="module")
async def handlers(dev_env: WorkflowEnvironment) -> AsyncIterator[WorkflowEnvironment]:
    """The dev server with endpoints set up and both handler workers running, for the module."""
    await ensure_nexus_setup(dev_env.client)
    it_client = await client_for(dev_env, IT.namespace)
    finance_client = await client_for(dev_env, FINANCE.namespace)
    # The IT workflows read their retry budget from the host's module, so that a test can shorten
    # it (`short_jira_budget`); the sandbox still runs their code.
    restrictions = SandboxRestrictions.default.with_passthrough_modules(it_handler.__name__)
    runner = SandboxedRunner(restrictions=restrictions)
    async with it_worker(it_client, workflow_runner=runner), finance_worker(finance_client):
        yield dev_env


@pytest.fixture(scope="module")
async def call(handlers: WorkflowEnvironment) -> AsyncIterator[Call]:
    """Runs a CallerWorkflow in `default`; one caller worker serves the whole module."""
    client = handlers.client
    task_queue = f"nexus-caller-{uuid.uuid4()}"

    async def run(request: CallRequest) -> Called:
        handle = await client.start_workflow(
            CallerWorkflow.run, request, id=f"nexus-caller-{uuid.uuid4()}", task_queue=task_queue
        )
        result = await handle.result()
        return Called(result, handle)

    async with Worker(client, task_queue=task_queue, workflows=[CallerWorkflow]):
        yield run


# --- Setup -----------------------------------------------------------------------------------

SETUP_ITEMS = [
    f"namespace {IT.namespace}",
    f"namespace {FINANCE.namespace}",
    f"endpoint {IT.endpoint} -> {IT.namespace}/{IT.task_queue}",
    f"endpoint {FINANCE.endpoint} -> {FINANCE.namespace}/{FINANCE.task_queue}",
]


async def test_setup_creates_what_is_missing_and_a_second_run_finds_everything(
    dev_env: WorkflowEnvironment,
):
    first = await ensure_nexus_setup(dev_env.client)
    second = await ensure_nexus_setup(dev_env.client)
    # The first run may find things an earlier test module created.
    assert [line.rsplit(": ", 1)[0] for line in first] == SETUP_ITEMS
    assert all(line.endswith((": created", ": already exists")) for line in first)
    assert second == [f"{item}: already exists" for item in SETUP_ITEMS]


@pytest.mark.parametrize(
    ("endpoint", "namespace", "task_queue"),
    [
        (IT.endpoint, IT.namespace, IT.task_queue),
        (FINANCE.endpoint, FINANCE.namespace, FINANCE.task_queue),
    ],
)
async def test_each_endpoint_targets_its_teams_namespace_and_queue(
    handlers: WorkflowEnvironment, endpoint: str, namespace: str, task_queue: str
):
    listed = await handlers.client.operator_service.list_nexus_endpoints(
        ListNexusEndpointsRequest(name=endpoint)
    )
    [found] = listed.endpoints
    target = found.spec.target.worker
    assert (target.namespace, target.task_queue) == (namespace, task_queue)


def test_cli_commands_match_the_python_setup():
    assert cli_commands() == [
        f"temporal operator namespace create --namespace {IT.namespace} --retention 3d",
        f"temporal operator namespace create --namespace {FINANCE.namespace} --retention 3d",
        f"temporal operator nexus endpoint create --name {IT.endpoint} "
        f"--target-namespace {IT.namespace} --target-task-queue {IT.task_queue}",
        f"temporal operator nexus endpoint create --name {FINANCE.endpoint} "
        f"--target-namespace {FINANCE.namespace} --target-task-queue {FINANCE.task_queue}",
    ]


@pytest.mark.e2e  # the temporal CLI
async def test_cli_commands_parse_and_report_existing_things(handlers: WorkflowEnvironment):
    binary = find_binary("temporal")
    assert binary is not None
    address = handlers.client.service_client.config.target_host
    for command in cli_commands():
        # Everything exists already: the CLI got past its flags only if it asks the server.
        process = await asyncio.create_subprocess_exec(
            binary,
            *command.split()[1:],
            "--address",
            address,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        output = (stdout + stderr).decode()
        assert process.returncode == 1, output
        assert "already" in output.lower(), output


# --- Every operation, through the endpoints ----------------------------------------------------


async def test_get_ip_answers_with_the_handler_hosts_name_and_address(call: Call):
    called = await call(CallRequest(get_ip=GetIpInput()))
    output = called.output(GetIpOutput)
    assert output.hostname == socket.gethostname()
    assert output == get_host_addresses()
    assert output.ip in output.addresses
    # A sync operation completes without the caller's history ever recording a start.
    history = await called.events()
    assert EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED not in [e.event_type for e in history]


async def test_jira_metrics_runs_a_handler_workflow_in_the_it_namespace(
    call: Call, handlers: WorkflowEnvironment
):
    called = await call(CallRequest(jira_metrics=JiraMetricsInput(project=" proj ")))
    output = called.output(JiraMetricsOutput)
    assert output == await SampleJiraClient().metrics("PROJ")
    assert output.source == "sample data (no Jira server configured)"
    history = await called.events()
    assert EventType.EVENT_TYPE_NEXUS_OPERATION_STARTED in [e.event_type for e in history]
    [scheduled] = [
        e.nexus_operation_scheduled_event_attributes
        for e in history
        if e.event_type == EventType.EVENT_TYPE_NEXUS_OPERATION_SCHEDULED
    ]
    # The handler workflow's id comes from the Nexus request id, so a retried start finds it.
    it_client = await client_for(handlers, IT.namespace)
    handler_workflow = it_client.get_workflow_handle_for(
        JiraMetricsWorkflow.run, f"jira-metrics-PROJ-{scheduled.request_id}"
    )
    description = await handler_workflow.describe()
    assert description.workflow_type == "JiraMetricsWorkflow"
    assert description.status == WorkflowExecutionStatus.COMPLETED
    assert await handler_workflow.result() == output


@pytest.mark.parametrize(("ticker", "symbol"), [("aapl", "AAPL"), (" brk.b ", "BRK.B")])
async def test_stock_price_quotes_the_normalised_ticker_from_sample_data(
    call: Call, ticker: str, symbol: str
):
    called = await call(CallRequest(stock_price=StockPriceInput(ticker=ticker)))
    output = called.output(StockPriceOutput)
    assert output == await SampleMarketData().quote(symbol)
    assert (output.ticker, output.currency) == (symbol, "USD")
    assert output.source == "sample data (no market feed configured)"


@pytest.mark.parametrize(
    ("rate", "reading"),
    [(5, "5 was read as 5% per year"), (0.05, "0.05 was read as a fraction: 5% per year")],
)
async def test_calculate_roi_compounds_yearly_with_either_rate_form(
    call: Call, rate: float, reading: str
):
    request = CalculateRoiInput(principal=10000, rate=rate, years=10)
    called = await call(CallRequest(calculate_roi=request))
    output = called.output(CalculateRoiOutput)
    assert (output.final_value, output.gain, output.roi_percent) == (16288.95, 6288.95, 62.89)
    assert (output.annual_rate_percent, output.rate_interpretation) == (5.0, reading)


# --- Every bad argument fails fast, with a message the LLM can act on -------------------------

BAD_REQUESTS = [
    pytest.param(
        CallRequest(stock_price=StockPriceInput(ticker="not a ticker!")),
        "'not a ticker!' is not a ticker symbol: use 1 to 5 letters",
        id="ticker-with-spaces",
    ),
    pytest.param(
        CallRequest(stock_price=StockPriceInput(ticker="GOOGLE")),
        "'GOOGLE' is not a ticker symbol",
        id="ticker-too-long",
    ),
    pytest.param(
        CallRequest(stock_price=StockPriceInput(ticker=" ")),
        "the ticker symbol is empty",
        id="ticker-blank",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=0, rate=5, years=10)),
        "the principal must be a positive amount",
        id="principal-zero",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=-100, rate=5, years=10)),
        "the principal must be a positive amount",
        id="principal-negative",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=1000, rate=5, years=-3)),
        "years must be between 0 and 100",
        id="years-negative",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=1000, rate=5, years=101)),
        "years must be between 0 and 100",
        id="years-too-many",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=1000, rate=-1, years=10)),
        "the rate must be between 0 and 100 percent",
        id="rate-negative",
    ),
    pytest.param(
        CallRequest(calculate_roi=CalculateRoiInput(principal=1000, rate=500, years=10)),
        "the rate must be between 0 and 100 percent",
        id="rate-absurd",
    ),
    pytest.param(
        CallRequest(jira_metrics=JiraMetricsInput(project="  ")),
        "the Jira project key is empty",
        id="jira-blank",
    ),
    pytest.param(
        CallRequest(jira_metrics=JiraMetricsInput(project="PROJ-123")),
        "'PROJ-123' is an issue key, not a project key: use 'PROJ'",
        id="jira-issue-key",
    ),
    pytest.param(
        CallRequest(jira_metrics=JiraMetricsInput(project="1PROJ")),
        "'1PROJ' is not a Jira project key",
        id="jira-starts-with-digit",
    ),
    pytest.param(
        CallRequest(jira_metrics=JiraMetricsInput(project="WAYTOOLONGKEY")),
        "'WAYTOOLONGKEY' is not a Jira project key",
        id="jira-too-long",
    ),
]


@pytest.mark.parametrize(("request_", "message"), BAD_REQUESTS)
async def test_bad_arguments_fail_fast_as_non_retryable_invalid_tool_arguments(
    call: Call, request_: CallRequest, message: str
):
    called = await call(request_)
    error = called.invalid_arguments()
    assert error.error == "ApplicationError"
    assert error.non_retryable is True
    assert message in error.message
    # Not retried until the operation's timeout: the failure is the handler's, not a timeout.
    assert not any("Timeout" in link.error for link in called.result.failure)


async def test_a_bad_key_reaching_the_jira_activity_fails_its_workflow_on_the_first_attempt(
    handlers: WorkflowEnvironment,
):
    # The operation refuses bad keys before starting a workflow; the activity still guards itself.
    it_client = await client_for(handlers, IT.namespace)
    handle = await it_client.start_workflow(
        JiraMetricsWorkflow.run,
        JiraMetricsInput(project="no such key"),
        id=f"jira-metrics-test-{uuid.uuid4()}",
        task_queue=IT.task_queue,
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await handle.result()
    activity_error = failure.value.cause
    assert isinstance(activity_error, ActivityError)
    assert isinstance(activity_error.cause, ApplicationError)
    assert activity_error.cause.type == "InvalidToolArguments"
    assert activity_error.cause.message.startswith("'no such key' is not a Jira project key")
    history = (await handle.fetch_history()).events
    failed = [e for e in history if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED]
    [started] = [e for e in history if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED]
    assert len(failed) == 1
    assert started.activity_task_started_event_attributes.attempt == 1


class HangingJira:
    """A Jira that never answers in time."""

    async def metrics(self, project: str) -> JiraMetricsOutput:
        await asyncio.sleep(60)
        raise AssertionError("unreachable: the attempt has timed out")


class FailingJira:
    """A Jira that always fails, after taking a moment."""

    async def metrics(self, project: str) -> JiraMetricsOutput:
        await asyncio.sleep(0.2)
        raise RuntimeError("Jira answered HTTP 503")


def test_the_jira_retry_budget_ends_before_the_agents_nexus_call_gives_up():
    # The caller must hear "Jira failed", not "no answer": every attempt and the workflow around
    # them end before the agent stops waiting for the operation.
    caller_timeout = timedelta(seconds=AgentConfig().nexus_timeout_seconds)
    assert it_handler.JIRA_CALL_TIMEOUT <= it_handler.JIRA_RETRY_BUDGET
    assert it_handler.JIRA_RETRY_BUDGET < it_handler.JIRA_WORKFLOW_TIMEOUT < caller_timeout


@pytest.fixture
def short_jira_budget(monkeypatch: pytest.MonkeyPatch) -> timedelta:
    """The IT workflows give Jira 2.5 s (attempts of 1 s) instead of 12 s, so the test is quick."""
    budget = timedelta(seconds=2.5)
    monkeypatch.setattr(it_handler, "JIRA_CALL_TIMEOUT", timedelta(seconds=1))
    monkeypatch.setattr(it_handler, "JIRA_RETRY_BUDGET", budget)
    return budget


@pytest.mark.parametrize("jira", [HangingJira(), FailingJira()], ids=["hanging", "failing"])
async def test_a_jira_that_never_works_fails_the_call_before_the_callers_timeout(
    call: Call, jira: Any, monkeypatch: pytest.MonkeyPatch, short_jira_budget: timedelta
):
    monkeypatch.setattr(it_activities, "jira_client", jira)

    called = await call(CallRequest(jira_metrics=JiraMetricsInput(project="OPS")))

    assert called.result.failure, called.result.output_json
    unavailable = [link for link in called.result.failure if link.type == "JiraUnavailable"]
    assert unavailable, called.result.failure
    assert unavailable[0].non_retryable is True
    assert unavailable[0].message.startswith(
        f"Jira is not answering: gave up after {short_jira_budget.total_seconds():g} s of retries ("
    )
    # No timeout in the chain: the agent must not report "no answer" when the answer is "failing".
    assert not any("Timeout" in link.error for link in called.result.failure)


# --- Tool code, without a server --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "years", "final_value", "gain", "roi_percent", "rate_percent"),
    [
        (5, 10, 16288.95, 6288.95, 62.89, 5.0),
        (0.05, 10, 16288.95, 6288.95, 62.89, 5.0),
        (1, 2, 40000.0, 30000.0, 300.0, 100.0),  # 1 is a fraction: 100% a year
        (7.5, 0, 10000.0, 0.0, 0.0, 7.5),
        (0, 30, 10000.0, 0.0, 0.0, 0.0),
        (4, 2.5, 11030.2, 1030.2, 10.3, 4.0),
    ],
)
def test_compute_roi(
    rate: float, years: float, final_value: float, gain: float, roi_percent: float, rate_percent
):
    output = compute_roi(CalculateRoiInput(principal=10000, rate=rate, years=years))
    assert (output.final_value, output.gain, output.roi_percent) == (final_value, gain, roi_percent)
    assert output.annual_rate_percent == rate_percent
    assert (output.principal, output.years) == (10000, years)


@pytest.mark.parametrize(
    ("principal", "rate", "years", "message"),
    [
        (math.nan, 5, 10, "principal, rate and years must be finite numbers"),
        (1000, math.inf, 10, "principal, rate and years must be finite numbers"),
        (1000, 5, math.nan, "principal, rate and years must be finite numbers"),
        (0, 5, 10, "the principal must be a positive amount"),
        (1000, 5, 100.5, "years must be between 0 and 100"),
        (1000, 100.01, 10, "the rate must be between 0 and 100 percent"),
        (1e308, 100, 100, "the result is too large to compute"),
    ],
)
def test_compute_roi_refuses_arguments_that_cannot_work(
    principal: float, rate: float, years: float, message: str
):
    with pytest.raises(InvalidToolArguments, match=message):
        compute_roi(CalculateRoiInput(principal=principal, rate=rate, years=years))


def test_invalid_tool_arguments_is_a_value_error():
    assert issubclass(InvalidToolArguments, ValueError)


@pytest.mark.parametrize(
    ("given", "symbol"), [("aapl", "AAPL"), ("BRK.B", "BRK.B"), (" t ", "T"), ("googl", "GOOGL")]
)
def test_ticker_symbol_normalises(given: str, symbol: str):
    assert ticker_symbol(given) == symbol


@pytest.mark.parametrize("given", ["", "GOOGLE", "BRK.BB", "BRK.", "AA1", "$AAPL", "A B"])
def test_ticker_symbol_refuses(given: str):
    with pytest.raises(InvalidToolArguments):
        ticker_symbol(given)


@pytest.mark.parametrize(
    ("given", "key"), [("proj", "PROJ"), (" ops ", "OPS"), ("A1_B2", "A1_B2"), ("X" * 10, "X" * 10)]
)
def test_project_key_normalises(given: str, key: str):
    assert project_key(given) == key


@pytest.mark.parametrize("given", ["", "   ", "1PROJ", "_PROJ", "PR OJ", "X" * 11, "PROJ-1"])
def test_project_key_refuses(given: str):
    with pytest.raises(InvalidToolArguments):
        project_key(given)


async def test_sample_jira_client_is_deterministic_and_labelled():
    client = SampleJiraClient()
    first, again, other = [await client.metrics(p) for p in ("PROJ", "PROJ", "OPS")]
    assert first == again
    assert first != other
    assert first.source == "sample data (no Jira server configured)"
    assert first.open_issues > 0 and first.average_cycle_time_days > 0


async def test_sample_market_data_is_deterministic_and_labelled():
    market = SampleMarketData()
    first, again, other = [await market.quote(t) for t in ("AAPL", "AAPL", "MSFT")]
    assert first == again
    assert first.price != other.price
    assert first.price > 0 and first.currency == "USD"
    assert first.source == "sample data (no market feed configured)"


def test_get_host_addresses_sends_nothing(monkeypatch: pytest.MonkeyPatch):
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("get_host_addresses must not use the network")

    for method in ("connect", "connect_ex", "send", "sendto", "sendall", "bind"):
        monkeypatch.setattr(socket.socket, method, refuse)
    output = get_host_addresses()
    assert output.hostname == socket.gethostname()
    assert output.ip in output.addresses
    assert output.ip == "127.0.0.1" or not output.ip.startswith("127.")
    assert ":" not in output.ip


async def test_fetch_jira_metrics_activity_normalises_and_refuses_bad_keys():
    environment = ActivityEnvironment()
    output = await environment.run(fetch_jira_metrics, JiraMetricsInput(project="proj"))
    assert output == await SampleJiraClient().metrics("PROJ")
    with pytest.raises(ApplicationError) as refused:
        await environment.run(fetch_jira_metrics, JiraMetricsInput(project=""))
    assert (refused.value.type, refused.value.non_retryable) == ("InvalidToolArguments", True)
    assert refused.value.message.startswith("the Jira project key is empty")


# --- The contracts --------------------------------------------------------------------------

INPUT_MODELS = [
    JiraMetricsInput,
    GetIpInput,
    CreateJiraIssueInput,
    StockPriceInput,
    CalculateRoiInput,
]


@pytest.mark.parametrize("model", INPUT_MODELS, ids=lambda m: m.__name__)
def test_input_models_describe_themselves_for_the_llm(model: type[BaseModel]):
    schema = model.model_json_schema()
    # The docstring is the tool's description: one line, a sentence.
    assert model.__doc__ is not None and "\n" not in model.__doc__.strip()
    assert schema["description"].endswith(".")
    for name, field in schema.get("properties", {}).items():
        assert field.get("description"), f"{model.__name__}.{name} has no description"
        assert field["type"] in ("string", "number"), "keep types plain; the tools validate"


@pytest.mark.parametrize("module", ["app/it/service.py", "app/finance/service.py"])
def test_contracts_import_nothing_but_pydantic_and_nexus_rpc(module: str):
    tree = ast.parse(Path(PROJECT_ROOT, module).read_text())
    imported = {
        alias.name for node in tree.body if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {node.module or "" for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "nexusrpc", "pydantic"}
