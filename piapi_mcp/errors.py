"""Errors raised by the PiAPI client, one small tree, mapped from HTTP in one place.

    PiAPIError                      every failure talking to PiAPI
    ├── MissingAPIKeyError          no PIAPI_API_KEY configured
    ├── CreateOutcomeUnknownError   a create whose answer was lost: the task may exist
    ├── APIConnectionError          the request did not get an HTTP answer
    │   └── APITimeoutError         ... because it took longer than the time-out
    ├── InvalidResponseError        an answer that is not PiAPI's JSON envelope
    └── APIStatusError              PiAPI answered with an error status or code
        ├── BadRequestError         400 / 422: PiAPI refused the input
        ├── AuthenticationError     401 / 403: the key is wrong or not allowed
        ├── NotFoundError           404: no such task (or it expired)
        ├── RateLimitError          429: too many requests (carries Retry-After)
        └── UpstreamServerError     5xx: PiAPI itself failed

Every message is written for the person reading it: what happened and what to do next. It never
contains the API key nor a raw HTML body.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import quote, quote_plus

import httpx2

from piapi_mcp.wording import seconds

_MAX_UPSTREAM_TEXT = 300


class PiAPIError(Exception):
    """Base of every error the PiAPI client raises; ``str(err)`` is a sentence for a person."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MissingAPIKeyError(PiAPIError):
    """No API key is configured, so no request can be sent."""

    def __init__(self) -> None:
        super().__init__(
            "No PiAPI key is set: put your key in the PIAPI_API_KEY environment variable of this "
            'MCP server (in Claude Desktop, under "env" in its config), or start the server with '
            "--sandbox to try everything against the built-in simulator without a key."
        )


class CreateOutcomeUnknownError(PiAPIError):
    """A create request may have reached PiAPI, but its answer was lost: the task may exist and cost."""

    def __init__(self, cause: PiAPIError) -> None:
        super().__init__(
            "PiAPI may have created the task, but its answer was lost "
            f"({_what_happened(cause.message)}). Do not simply try again, that could pay twice: check "
            "list_tasks and your PiAPI dashboard for a new task first."
        )
        self.cause = cause


def _what_happened(message: str) -> str:
    """The part of an error message that says what happened, without its advice ("try again")."""
    return re.split(r";|\. ", message, maxsplit=1)[0].rstrip(".")


class APIConnectionError(PiAPIError):
    """The request got no HTTP answer (DNS, refused connection, reset, TLS...).

    ``request_sent`` is False only when the request provably never left (the connection was
    refused or never opened), which is what makes retrying a create safe.
    """

    def __init__(self, message: str, *, request_sent: bool = True) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class APITimeoutError(APIConnectionError):
    """PiAPI did not answer within the configured time-out."""


class InvalidResponseError(PiAPIError):
    """PiAPI answered, but not with its ``{code, data, message}`` JSON envelope."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class APIStatusError(PiAPIError):
    """PiAPI answered with an HTTP error status or an error ``code`` in its envelope."""

    def __init__(
        self, message: str, *, status_code: int, upstream_message: str | None = None, enveloped: bool = True
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.upstream_message = upstream_message
        #: Whether PiAPI itself answered (its JSON envelope) rather than a gateway in front of it.
        self.enveloped = enveloped


class BadRequestError(APIStatusError):
    """PiAPI refused the request's input (400 or 422)."""


class AuthenticationError(APIStatusError):
    """PiAPI refused the API key (401) or the account may not do this (403)."""


class NotFoundError(APIStatusError):
    """PiAPI knows no such task: a wrong id, another account's task, or one it has pruned."""


class RateLimitError(APIStatusError):
    """PiAPI is rate limiting this account (429)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        upstream_message: str | None = None,
        retry_after: float | None = None,
        enveloped: bool = True,
    ) -> None:
        super().__init__(
            message, status_code=status_code, upstream_message=upstream_message, enveloped=enveloped
        )
        self.retry_after = retry_after


class UpstreamServerError(APIStatusError):
    """PiAPI failed on its side (5xx)."""


#: Secrets shorter than this are not real PiAPI keys, and redacting them would mangle ordinary words.
MIN_REDACTED_LENGTH = 8
REDACTED = "***"


@functools.lru_cache(maxsize=8)
def _secret_pattern(secrets: tuple[str, ...]) -> re.Pattern[str] | None:
    """The secrets as upstreams may echo them: as is, URL-encoded (either form), in any letter case.

    ``None`` when none is long enough to be a real secret.
    """
    variants = {
        variant
        for secret in secrets
        if len(secret) >= MIN_REDACTED_LENGTH
        for variant in (secret, quote(secret, safe=""), quote_plus(secret, safe=""))
    }
    if not variants:
        return None
    alternatives = "|".join(re.escape(variant) for variant in sorted(variants, key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE)


def _pattern_of(secrets: tuple[str | None, ...]) -> re.Pattern[str] | None:
    return _secret_pattern(tuple(secret for secret in secrets if secret))


def redact(text: str, *secrets: str | None) -> str:
    """Return ``text`` with every occurrence of each secret replaced by ``***``.

    Case-insensitive, and URL-encoded copies count too: an upstream that echoes the key in a URL
    or in other letters must not get it past us. Secrets shorter than 8 characters are left alone.
    """
    pattern = _pattern_of(secrets)
    return text if pattern is None else pattern.sub(REDACTED, text)


def scrub(value: Any, *secrets: str | None) -> Any:
    """Parsed JSON with the secrets redacted from every string in it, keys included (containers in place).

    One pass whatever the number of secrets. Iterative, so an upstream's deeply nested answer
    cannot exhaust the stack.
    """
    pattern = _pattern_of(secrets)
    if pattern is None:
        return value
    if isinstance(value, str):
        return pattern.sub(REDACTED, value)
    pending: list[Any] = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            for key in list(node):
                item = node.pop(key) if isinstance(key, str) and pattern.search(key) else node[key]
                key = pattern.sub(REDACTED, key) if isinstance(key, str) else key
                node[key] = pattern.sub(REDACTED, item) if isinstance(item, str) else item
                if isinstance(item, dict | list):
                    pending.append(item)
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = pattern.sub(REDACTED, item)
                elif isinstance(item, dict | list):
                    pending.append(item)
    return value


def _clean_upstream_text(text: str, *secrets: str | None) -> str:
    text = redact(re.sub(r"\s+", " ", text).strip(), *secrets)
    if len(text) > _MAX_UPSTREAM_TEXT:
        text = text[: _MAX_UPSTREAM_TEXT - 1] + "…"
    return text


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, for quoting what a caller sent in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header given in seconds; ``None`` if absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return max(0.0, seconds)


def decode_envelope(
    response: httpx2.Response, *, api_key: str | None, also_secret: str | None = None
) -> dict[str, Any]:
    """Return PiAPI's JSON envelope from ``response``, or raise the error it stands for.

    This is the one place where HTTP statuses and envelope codes become exceptions. Every string in
    it is scrubbed of ``api_key`` and of ``also_secret`` (the webhook secret, which PiAPI echoes in
    every task it answers with).

    Raises:
        APIStatusError: a subclass for the HTTP status, or for an error ``code`` in the body.
        InvalidResponseError: the body is not a JSON object with PiAPI's ``code``.
    """
    body: Any
    try:
        # Every string of the answer is scrubbed of the key before anything else reads it.
        body = scrub(response.json(), api_key, also_secret)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
        body = None
    envelope = body if isinstance(body, dict) and "code" in body else None
    upstream = None
    if envelope is not None and isinstance(envelope.get("message"), str) and envelope["message"]:
        upstream = _clean_upstream_text(envelope["message"], api_key, also_secret)

    status = response.status_code
    if status >= 400:
        error = _status_error(status, upstream, response.headers.get("retry-after"))
        error.enveloped = envelope is not None
        raise error
    if envelope is None:
        declared = response.headers.get("content-type", "").split(";")[0].strip()
        # The header is the upstream's text: quoted only when it has the form of a MIME type.
        kind = declared if re.fullmatch(r"[\w.+-]{1,40}/[\w.+-]{1,60}", declared) else "a body"
        raise InvalidResponseError(
            f"PiAPI answered HTTP {status} with {kind} instead of its JSON envelope; the service may be "
            "having trouble, or PIAPI_BASE_URL may point at the wrong server. Try again in a minute.",
            status_code=status,
        )
    code = envelope.get("code")
    if code not in (0, 200):
        # Some PiAPI errors come back as HTTP 200 with the error in the envelope's code.
        as_status = code if isinstance(code, int) and 400 <= code <= 599 else 400
        raise _status_error(as_status, upstream, response.headers.get("retry-after"))
    return envelope


def _status_error(status: int, upstream: str | None, retry_after_header: str | None) -> APIStatusError:
    said = f" (PiAPI said: {upstream})" if upstream else ""
    if status in (400, 422):
        return BadRequestError(
            f"PiAPI refused the request as invalid{said}; fix the arguments and try again.",
            status_code=status,
            upstream_message=upstream,
        )
    if status == 401:
        return AuthenticationError(
            f"PiAPI rejected the API key (HTTP 401){said}; check PIAPI_API_KEY in this server's environment.",
            status_code=status,
            upstream_message=upstream,
        )
    if status == 403:
        return AuthenticationError(
            f"PiAPI refused this for the account (HTTP 403){said}; the plan may not include it, "
            "or the key may lack access.",
            status_code=status,
            upstream_message=upstream,
        )
    if status == 404:
        return NotFoundError(
            f"PiAPI has no such task{said}; check the task id (tasks of other accounts and old tasks "
            "are not visible).",
            status_code=status,
            upstream_message=upstream,
        )
    if status == 429:
        retry_after = parse_retry_after(retry_after_header)
        when = f"after {seconds(retry_after)}" if retry_after is not None else "in a little while"
        return RateLimitError(
            f"PiAPI is rate limiting this account (HTTP 429){said}; try again {when}.",
            status_code=status,
            upstream_message=upstream,
            retry_after=retry_after,
        )
    if status >= 500:
        return UpstreamServerError(
            f"PiAPI had a server error (HTTP {status}){said}; try again in a minute.",
            status_code=status,
            upstream_message=upstream,
        )
    return APIStatusError(
        f"PiAPI answered HTTP {status}{said}.",
        status_code=status,
        upstream_message=upstream,
    )
