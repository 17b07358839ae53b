"""An async client for PiAPI's unified task API. It knows nothing of MCP.

The HTTP client is injected, so the same code talks to PiAPI, to the bundled simulator over
loopback, or to the simulator in-process through ``httpx2.ASGITransport``.

Retries: reading calls (get, cancel) retry passing failures (no answer, 429, 5xx, garbled
answers) with jittered exponential backoff that honours ``Retry-After``, bounded by attempts and
by total time. A create is retried only when PiAPI provably did not accept it: the connection
was never made, or PiAPI answered 429. A create whose answer may have been lost is reported as
:class:`CreateOutcomeUnknownError`, never sent again.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode, urlsplit

import httpx2

from piapi_mcp.errors import (
    APIConnectionError,
    APITimeoutError,
    CreateOutcomeUnknownError,
    InvalidResponseError,
    MissingAPIKeyError,
    PiAPIError,
    RateLimitError,
    UpstreamServerError,
    decode_envelope,
)
from piapi_mcp.timing import Clock, SystemClock
from piapi_mcp.wording import seconds

if TYPE_CHECKING:
    from piapi_mcp.models import AccountInfo, Task

logger = logging.getLogger("piapi_mcp")

DEFAULT_BASE_URL: Final = "https://api.piapi.ai"
DEFAULT_UPLOAD_URL: Final = "https://upload.theapi.app/api/ephemeral_resource"
#: PiAPI's upload path; a base URL other than PiAPI's (a proxy, a mirror, the simulator) serves it too.
UPLOAD_PATH: Final = "/api/ephemeral_resource"
DEFAULT_HTTP_TIMEOUT: Final = 30.0


def upload_url_for(base_url: str) -> str:
    """Where uploads go when ``PIAPI_UPLOAD_URL`` is unset: PiAPI's upload host for PiAPI's base URL,
    else the same path on the base URL (users pointing at a proxy or mirror expect uploads there too)."""
    base = base_url.strip().rstrip("/")
    return DEFAULT_UPLOAD_URL if base == DEFAULT_BASE_URL else f"{base}{UPLOAD_PATH}"


def host_of(url: str) -> str:
    """The host (and port, when given) a URL points at, as error sentences name it."""
    return urlsplit(url).netloc.rpartition("@")[2] or url


_TASK_PATH: Final = "/api/v1/task"
_HISTORY_PATH: Final = "/api/open/tasks/histories"
_ACCOUNT_PATH: Final = "/account/info"
#: PiAPI refuses a history page larger than this.
MAX_HISTORY_PAGE_SIZE: Final = 100


class DeferredTransport(httpx2.AsyncBaseTransport):
    """A transport built by ``factory`` when the first request goes out, not when the server starts.

    Building an HTTPS transport loads the system's certificates (about 27 ms on a laptop). An MCP
    host starts this server and waits for ``tools/list`` before anything can reach PiAPI, so that
    work is moved from the start to the first request, in a worker thread.
    """

    def __init__(self, factory: Callable[[], httpx2.AsyncBaseTransport]) -> None:
        self._factory = factory
        self._transport: httpx2.AsyncBaseTransport | None = None
        # A thread lock, not an anyio one: requests may come from several event loops in tests.
        self._lock = threading.Lock()

    def _build(self) -> httpx2.AsyncBaseTransport:
        with self._lock:
            if self._transport is None:
                self._transport = self._factory()
            return self._transport

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` through the real transport, building it first if this is the first request."""
        transport = self._transport
        if transport is None:
            import anyio.to_thread

            transport = await anyio.to_thread.run_sync(self._build)
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the real transport, if it was ever built."""
        if self._transport is not None:
            await self._transport.aclose()


def default_http_client(max_connections: int = 200, max_keepalive: int = 50) -> httpx2.AsyncClient:
    """The HTTP client the command line injects: HTTPS to PiAPI, its transport built on first use.

    At most ``max_keepalive`` idle connections are kept for the next burst. Keeping all of them
    (200) made a second burst of 100 creates reach PiAPI 7-11 ms sooner, but a burst of 100 calls
    peak about 10 MiB higher (``benchmarks/bench.py``): memory is the tighter of the two budgets.
    """
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=max_keepalive)
    return httpx2.AsyncClient(transport=DeferredTransport(lambda: httpx2.AsyncHTTPTransport(limits=limits)))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a call tries; every retry setting lives here."""

    #: Attempts per call, the first included (1 = never retry).
    max_attempts: int = 4
    #: Backoff before retry n is a random share of ``min(max_delay, base_delay * 2**(n-1))``.
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: A call stops retrying once this many seconds (sleeps included) have gone by.
    max_total: float = 20.0
    #: A ``Retry-After`` longer than this is not waited for: the error is reported instead.
    max_retry_after: float = 30.0


NO_RETRIES: Final = RetryPolicy(max_attempts=1)
_NOT_SENT: Final = (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout)


def _retry_read(error: PiAPIError) -> bool:
    return isinstance(error, APIConnectionError | RateLimitError | UpstreamServerError | InvalidResponseError)


def _retry_create(error: PiAPIError) -> bool:
    return isinstance(error, RateLimitError) or (
        isinstance(error, APIConnectionError) and not error.request_sent
    )


def _create_may_have_happened(error: PiAPIError) -> bool:
    if isinstance(error, APIConnectionError):
        return error.request_sent
    if isinstance(error, InvalidResponseError):
        return True
    # A gateway's 5xx page (not PiAPI's envelope) says nothing about whether PiAPI got the task.
    return isinstance(error, UpstreamServerError) and not error.enveloped


class PiAPIClient:
    """PiAPI's create / get / cancel task calls over one injected ``httpx2.AsyncClient``."""

    def __init__(
        self,
        http_client: httpx2.AsyncClient,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        upload_url: str = DEFAULT_UPLOAD_URL,
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._http = http_client
        self._api_key = api_key or None
        self._base_url = base_url.rstrip("/")
        self._upload_url = upload_url
        self._timeout = httpx2.Timeout(timeout)
        self._retry = retry
        self._clock: Clock = clock or SystemClock()
        self._jitter = jitter
        #: How many HTTP requests were retried, for benchmarks and logs.
        self.retries = 0
        self._also_secret: str | None = None

    def redact_also(self, secret: str) -> None:
        """Scrub ``secret`` too from everything PiAPI answers, as the key is (the webhook secret:
        PiAPI echoes it in every task, and a proxy could put it in an error message)."""
        self._also_secret = secret

    @property
    def has_api_key(self) -> bool:
        """Whether a key is configured (calls fail with :class:`MissingAPIKeyError` otherwise)."""
        return self._api_key is not None

    @property
    def http_client(self) -> httpx2.AsyncClient:
        """The injected HTTP client (also used to download outputs PiAPI serves)."""
        return self._http

    @property
    def base_url(self) -> str:
        """PiAPI's base URL, as configured (outputs from the same origin are not judged by address)."""
        return self._base_url

    @property
    def upload_url(self) -> str:
        """PiAPI's file-upload URL, as configured."""
        return self._upload_url

    @property
    def api_key(self) -> str | None:
        """The configured key, for redaction only; never print it."""
        return self._api_key

    async def create_task(
        self,
        model: str,
        task_type: str,
        input: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
    ) -> Task:
        """Create a PiAPI task and return it as PiAPI first reports it (usually ``pending``).

        Raises:
            CreateOutcomeUnknownError: the request may have reached PiAPI but its answer was lost.
            PiAPIError: another subclass saying what went wrong (see :mod:`piapi_mcp.errors`).
        """
        body: dict[str, Any] = {"model": model, "task_type": task_type, "input": dict(input)}
        if config:
            body["config"] = dict(config)
        try:
            envelope = await self._request("POST", _TASK_PATH, json=body, should_retry=_retry_create)
        except PiAPIError as err:
            if _create_may_have_happened(err):
                raise CreateOutcomeUnknownError(err) from err
            raise
        try:
            from piapi_mcp.models import parse_task

            return parse_task(envelope.get("data"))
        except InvalidResponseError as err:
            # A 200 whose task id is missing or unusable: PiAPI may well have made (and billed) it.
            raise CreateOutcomeUnknownError(err) from err

    async def task_history(
        self,
        *,
        start_time: float,
        end_time: float,
        model: str | None = None,
        page: int = 1,
        page_size: int = MAX_HISTORY_PAGE_SIZE,
    ) -> list[Task]:
        """Tasks of this account created between two unix times (PiAPI's ``GET /api/open/tasks/histories``).

        ``model`` is PiAPI's family filter (e.g. ``flux``), not a full model name. PiAPI does not
        document the answer's shape: the tasks are read from ``data.list``, ``data.tasks``, or
        ``data`` itself when it is a list; items that are not tasks are skipped.

        Raises:
            PiAPIError: a subclass saying what went wrong.
        """
        params: dict[str, Any] = {
            "page": max(1, page),
            "page_size": max(1, min(page_size, MAX_HISTORY_PAGE_SIZE)),
            "start_time": int(start_time),
            "end_time": int(end_time) + 1,
        }
        if model:
            params["model"] = model
        path = f"{_HISTORY_PATH}?{urlencode(params)}"
        envelope = await self._request("GET", path, should_retry=_retry_read)
        data = envelope.get("data")
        items: Any = data
        if isinstance(data, dict):
            items = data.get("list") if isinstance(data.get("list"), list) else data.get("tasks")
        from piapi_mcp.models import parse_task

        tasks = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and isinstance(item.get("task_id"), str) and item["task_id"]:
                try:
                    tasks.append(parse_task(item))
                except (PiAPIError, ValueError):
                    continue
        return tasks

    async def account_info(self) -> AccountInfo:
        """The account's balance, credits and plan (PiAPI's ``GET /account/info``; free).

        Raises:
            PiAPIError: a subclass saying what went wrong (``InvalidResponseError`` when the answer
                carries no balance, credits or plan).
        """
        envelope = await self._request("GET", _ACCOUNT_PATH, should_retry=_retry_read)
        from piapi_mcp.models import parse_account

        return parse_account(envelope.get("data"))

    async def get_task(self, task_id: str) -> Task:
        """Return the current state of any task of this account.

        Raises:
            PiAPIError: a subclass saying what went wrong (``NotFoundError`` for an unknown id).
        """
        envelope = await self._request("GET", f"{_TASK_PATH}/{task_id}", should_retry=_retry_read)
        from piapi_mcp.models import parse_task

        return parse_task(envelope.get("data"), expected_id=task_id)

    async def cancel_task(self, task_id: str) -> str | None:
        """Ask PiAPI to cancel a task (PiAPI only cancels tasks still ``pending``); returns PiAPI's message.

        Raises:
            PiAPIError: ``BadRequestError`` when PiAPI will not cancel it, and the others as usual.
        """
        envelope = await self._request("DELETE", f"{_TASK_PATH}/{task_id}", should_retry=_retry_read)
        message = envelope.get("message")
        return message if isinstance(message, str) else None

    async def upload_file(self, file_name: str, data: bytes) -> str:
        """Upload bytes to PiAPI's ephemeral file storage (kept 24 h) and return their URL.

        Raises:
            AuthenticationError: HTTP 403 when the account's plan does not include uploads.
            PiAPIError: another subclass saying what went wrong.
        """
        body = {"file_name": file_name, "file_data": base64.b64encode(data).decode("ascii")}
        try:
            envelope = await self._request("POST", self._upload_url, json=body, should_retry=_retry_read)
        except PiAPIError as err:
            # The upload host is not always PiAPI's base URL: say which one was tried.
            host = host_of(self._upload_url)
            if host not in err.message:
                err.message = f"The upload to {host} failed: {err.message}"
                err.args = (err.message,)
            raise
        data_part = envelope.get("data")
        url = data_part.get("url") if isinstance(data_part, dict) else None
        url = url or envelope.get("url")  # PiAPI's own CLI reads a top-level url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidResponseError(
                "PiAPI accepted the upload but its answer carried no file URL; try again.", status_code=200
            )
        return url

    async def _request(
        self, method: str, path: str, *, should_retry: Callable[[PiAPIError], bool], json: Any = None
    ) -> dict[str, Any]:
        if self._api_key is None:
            raise MissingAPIKeyError()
        started = self._clock.monotonic()
        attempt = 1
        while True:
            try:
                return await self._send(method, path, json)
            except PiAPIError as err:
                delay = self._backoff(err, attempt)
                spent = self._clock.monotonic() - started
                if (
                    not should_retry(err)
                    or attempt >= self._retry.max_attempts
                    or delay is None
                    or spent + delay > self._retry.max_total
                ):
                    raise
                # The error's class and status only: its message may carry what upstream sent.
                status = getattr(err, "status_code", None)
                logger.info(
                    "PiAPI %s %s failed (%s%s); retry %d of %d in %s",
                    method,
                    urlsplit(path).path if "://" in path else path,
                    type(err).__name__,
                    f" {status}" if status else "",
                    attempt,
                    self._retry.max_attempts - 1,
                    seconds(delay),
                )
            self.retries += 1
            attempt += 1
            await self._clock.sleep(delay)

    def _backoff(self, error: PiAPIError, attempt: int) -> float | None:
        """Seconds before the next attempt; ``None`` when PiAPI asks for a longer wait than we allow."""
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self._retry.max_retry_after else None
        ceiling = min(self._retry.max_delay, self._retry.base_delay * 2.0 ** (attempt - 1))
        return ceiling * self._jitter()

    async def _send(self, method: str, path: str, json: Any) -> dict[str, Any]:
        assert self._api_key is not None
        url = path if path.startswith(("http://", "https://")) else f"{self._base_url}{path}"
        try:
            response = await self._http.request(
                method,
                url,
                json=json,
                headers={"X-API-Key": self._api_key, "Accept": "application/json"},
                timeout=self._timeout,
            )
        except _NOT_SENT as err:
            upload = url == self._upload_url
            where, setting = (
                (host_of(url), "PIAPI_UPLOAD_URL") if upload else (self._base_url, "PIAPI_BASE_URL")
            )
            raise APIConnectionError(
                f"Could not connect to PiAPI at {where} ({type(err).__name__}); check the network "
                f"and {setting}, then try again.",
                request_sent=False,
            ) from err
        except httpx2.TimeoutException as err:
            raise APITimeoutError(
                f"PiAPI did not answer within {seconds(self._timeout.read or 0)}; it may be busy. "
                "Try again shortly."
            ) from err
        except httpx2.HTTPError as err:
            raise APIConnectionError(
                f"The connection to PiAPI broke before its answer arrived ({type(err).__name__}); "
                "check the network, then try again."
            ) from err
        return decode_envelope(response, api_key=self._api_key, also_secret=self._also_secret)
