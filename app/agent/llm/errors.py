"""What an LLM provider's failure means for Temporal's retries, and for the user.

`provider_error` turns whatever LiteLLM raised into an `ApplicationError` whose type names the
problem, whose message the user can act on, and whose retryability tells Temporal whether another
attempt can succeed: a rate limit, a server error, a timeout or a refused connection may pass; a
bad key, a refused permission, a request the server cannot process (4xx), a missing key or a
model server whose chat template cannot render the conversation will fail the same way every
time. LiteLLM's exception class alone is not enough to tell: it reports a 403 from an
OpenAI-compatible server as `APIError` or `BadRequestError`, and a missing key as a server error,
so the HTTP status and a few well-known messages decide first. A rate limit's `Retry-After` header
sets the delay before the next attempt.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from app.agent.llm.client import LLMSettings, litellm_module, redact
from app.agent.llm.streaming import StreamIncomplete


def _one_line_fallback_failures(record: logging.LogRecord) -> bool:
    if record.module == "fallback_utils" and record.exc_info:
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


# One line per failed fallback attempt, as for every other failed attempt: LiteLLM logs each with
# its traceback (tens of lines).
logging.getLogger("LiteLLM").addFilter(_one_line_fallback_failures)

# A provider that asks for a longer pause (a spent daily quota, say) would hold the turn for
# nothing: the user is told instead.
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class Failure:
    """One kind of provider failure: its error type, whether a retry can help, what to say."""

    type: str
    retryable: bool
    summary: str


AUTHENTICATION = Failure("LLMAuthenticationError", False, "the LLM provider rejected the API key")
MISSING_KEY = Failure(
    "LLMAuthenticationError",
    False,
    "no API key is set for the LLM provider: set LLM_API_KEY or the provider's key variable "
    "(any value for a local server that needs none)",
)
PERMISSION = Failure("LLMPermissionDenied", False, "the LLM provider denied access to this model")
CONTEXT_WINDOW = Failure(
    "LLMContextWindowExceeded",
    False,
    "the conversation is too long for the model's context window",
)
CONTENT_POLICY = Failure(
    "LLMContentPolicy",
    False,
    "the LLM provider refused the request under its content policy",
)
NOT_FOUND = Failure("LLMModelNotFound", False, "the LLM provider does not know this model")
BAD_REQUEST = Failure("LLMBadRequest", False, "the LLM provider rejected the request as invalid")
CHAT_TEMPLATE = Failure(
    "LLMChatTemplateError",
    False,
    "the model server cannot format this conversation with the model's chat template",
)
RATE_LIMITED = Failure("LLMRateLimited", True, "the LLM provider is rate limiting us")
TIMEOUT = Failure("LLMTimeout", True, "the LLM provider did not answer in time")
CONNECTION = Failure("LLMConnectionError", True, "cannot connect to the LLM provider")
UNAVAILABLE = Failure("LLMUnavailable", True, "the LLM provider is unavailable")
SERVER_ERROR = Failure("LLMServerError", True, "the LLM provider had a server error")
API_ERROR = Failure("LLMServerError", True, "the LLM provider returned an error")
UNKNOWN = Failure("LLMError", True, "the LLM call failed")
# The reply stopped before the provider said it ended: another attempt can get it whole.
STREAM_INCOMPLETE = Failure(
    "LLMStreamIncomplete", True, "the LLM's reply stopped before its end (the stream was cut)"
)

# Messages that say the request can never succeed, whatever status came with them. LiteLLM
# reports the OpenAI client's "Missing credentials" (no request was sent) as a server error, and
# llama.cpp answers a chat template that fails on the conversation with HTTP 500.
_BY_MESSAGE: list[tuple[re.Pattern[str], Failure]] = [
    (re.compile(r"missing credentials|missing \w+ api key", re.IGNORECASE), MISSING_KEY),
    # llama.cpp ("exceed context window of 2048"), vLLM and Anthropic ("prompt is too long"),
    # which LiteLLM reports as a plain bad request or server error.
    (
        re.compile(
            r"exceeds? (the )?context window|maximum context length|context length exceeded|"
            r"context_length_exceeded|prompt is too long",
            re.IGNORECASE,
        ),
        CONTEXT_WINDOW,
    ),
    (
        re.compile(
            # Jinja's own words, as llama.cpp and vLLM pass them on.
            r"'dict object' has no attribute|'\w+' is undefined|roles must alternate|"
            r"chat template",
            re.IGNORECASE,
        ),
        CHAT_TEMPLATE,
    ),
]

# LiteLLM classes that say exactly what went wrong, checked before the HTTP status. Subclasses
# come before their parents (ContextWindowExceededError is a BadRequestError).
_BY_CLASS: list[tuple[str, Failure]] = [
    ("ContextWindowExceededError", CONTEXT_WINDOW),
    ("ContentPolicyViolationError", CONTENT_POLICY),
    ("AuthenticationError", AUTHENTICATION),
    ("PermissionDeniedError", PERMISSION),
    ("NotFoundError", NOT_FOUND),
    ("RateLimitError", RATE_LIMITED),
    ("Timeout", TIMEOUT),
    ("APIConnectionError", CONNECTION),
]

# Client errors (4xx) that a retry cannot fix, whichever class LiteLLM chose for them; the
# others are retried: 408 (timeout), 409 (conflict), 425 (too early) and 429 (rate limit).
_BY_STATUS: dict[int, Failure] = {401: AUTHENTICATION, 403: PERMISSION, 404: NOT_FOUND}
_RETRYABLE_CLIENT_STATUSES: dict[int, Failure] = {
    408: TIMEOUT,
    409: SERVER_ERROR,
    425: SERVER_ERROR,
    429: RATE_LIMITED,
}

# Generic classes, when neither the message nor the status said more.
_BY_GENERIC_CLASS: list[tuple[str, Failure]] = [
    ("BadRequestError", BAD_REQUEST),
    ("ServiceUnavailableError", UNAVAILABLE),
    ("InternalServerError", SERVER_ERROR),
    ("APIError", API_ERROR),
]


def provider_error(
    err: Exception, settings: LLMSettings, now: datetime | None = None
) -> ApplicationError:
    """`err` from LiteLLM as an ApplicationError that tells Temporal whether to retry."""
    detail = " ".join(redact(str(err), settings).split())[:500]
    failure = classify(err)
    message = f"{failure.summary} ({detail})"
    delay = retry_after(err, now or datetime.now(UTC)) if failure.retryable else None
    retryable = failure.retryable
    if delay is not None and delay > MAX_RETRY_AFTER_SECONDS:
        retryable = False
        message = f"{failure.summary} and asks us to wait {delay:,.0f} s ({detail})"
    return ApplicationError(
        message,
        type=failure.type,
        non_retryable=not retryable,
        next_retry_delay=timedelta(seconds=delay) if retryable and delay is not None else None,
        # An expected failure: one line in the worker's log (plan_next_action writes it), no
        # traceback per attempt.
        category=ApplicationErrorCategory.BENIGN,
    )


def is_context_window(err: Exception) -> bool:
    """Whether `err` says the prompt does not fit the model's context window."""
    return classify(err) is CONTEXT_WINDOW


# How providers state their context size when they refuse a prompt: llama.cpp ("exceed context
# window of 2048"), OpenAI and vLLM ("maximum context length is 8192 tokens"), Anthropic
# ("prompt is too long: 210000 tokens > 200000 maximum").
_CONTEXT_LIMIT = re.compile(
    r"context window of (\d+)|maximum context length is (\d+)|> (\d+) maximum", re.IGNORECASE
)


def stated_context_limit(message: str) -> int | None:
    """The context size in tokens that a provider's refusal states, if it states one."""
    match = _CONTEXT_LIMIT.search(message)
    return int(next(group for group in match.groups() if group)) if match else None


def classify(err: Exception) -> Failure:
    """Which kind of failure `err` is: by message, then class, then HTTP status."""
    litellm = litellm_module()
    causes = _causes(err)
    if any(isinstance(c, StreamIncomplete) for c in causes):
        return STREAM_INCOMPLETE
    # LiteLLM reports a refused connection as a server error (500).
    if any(isinstance(c, ConnectionError) for c in causes) and not isinstance(err, litellm.Timeout):
        return CONNECTION
    text = str(err)
    for pattern, failure in _BY_MESSAGE:
        if pattern.search(text):
            return failure
    raised = _raised_class(err, litellm)
    for name, failure in _BY_CLASS:
        if _is(raised, litellm, name):
            return failure
    status = getattr(err, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500:
        if status in _RETRYABLE_CLIENT_STATUSES:
            return _RETRYABLE_CLIENT_STATUSES[status]
        return _BY_STATUS.get(status, BAD_REQUEST)
    for name, failure in _BY_GENERIC_CLASS:
        if _is(raised, litellm, name):
            return failure
    return UNKNOWN


def retry_after(err: Exception, now: datetime) -> float | None:
    """The seconds the provider asked us to wait (`Retry-After`, seconds or HTTP date), if any."""
    headers = _response_headers(err)
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _response_headers(err: Exception) -> dict[str, str]:
    """The HTTP response headers LiteLLM kept with the error, names in lower case."""
    for source in (
        getattr(err, "litellm_response_headers", None),
        getattr(getattr(err, "response", None), "headers", None),
    ):
        if source:
            return {str(name).lower(): str(value) for name, value in source.items()}
    return {}


def _causes(err: BaseException) -> list[BaseException]:
    causes: list[BaseException] = []
    cause: BaseException | None = err
    while cause is not None and cause not in causes:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    return causes


def _is(raised: type[BaseException], litellm: Any, name: str) -> bool:
    exception_class = getattr(litellm, name, None)
    return isinstance(exception_class, type) and issubclass(raised, exception_class)


def _raised_class(err: Exception, litellm: Any) -> type[BaseException]:
    """The LiteLLM exception class that says best what went wrong."""
    # When every fallback model fails, LiteLLM raises a plain Exception whose message starts with
    # the last error ("litellm.AuthenticationError: ..."): keep its class, so that a permanent
    # failure is still not retried.
    match = re.match(r"litellm\.(\w+):", str(err))
    named = getattr(litellm, match[1], None) if match and type(err) is Exception else None
    return named if isinstance(named, type) else type(err)
