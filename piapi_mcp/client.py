"""An async client for PiAPI's unified task API. It knows nothing of MCP.

The HTTP client is injected, so the same code talks to PiAPI, to the bundled simulator over
loopback, or to the simulator in-process through ``httpx2.ASGITransport``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import httpx2

from piapi_mcp.errors import (
    APIConnectionError,
    APITimeoutError,
    InvalidResponseError,
    MissingAPIKeyError,
    decode_envelope,
)
from piapi_mcp.models import Task, parse_task

DEFAULT_BASE_URL: Final = "https://api.piapi.ai"
DEFAULT_HTTP_TIMEOUT: Final = 30.0
_TASK_PATH: Final = "/api/v1/task"


class PiAPIClient:
    """PiAPI's create / get / cancel task calls over one injected ``httpx2.AsyncClient``."""

    def __init__(
        self,
        http_client: httpx2.AsyncClient,
        *,
        api_key: str | None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
    ) -> None:
        self._http = http_client
        self._api_key = api_key or None
        self._base_url = base_url.rstrip("/")
        self._timeout = httpx2.Timeout(timeout)

    @property
    def has_api_key(self) -> bool:
        """Whether a key is configured (calls fail with :class:`MissingAPIKeyError` otherwise)."""
        return self._api_key is not None

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
            PiAPIError: a subclass saying what went wrong (see :mod:`piapi_mcp.errors`).
        """
        body: dict[str, Any] = {"model": model, "task_type": task_type, "input": dict(input)}
        if config:
            body["config"] = dict(config)
        envelope = await self._request("POST", _TASK_PATH, json=body)
        task = parse_task(envelope.get("data"))
        if not task.task_id:
            raise InvalidResponseError(
                "PiAPI accepted the request but its answer carried no task id; check your PiAPI "
                "dashboard for a new task before trying again, so you do not pay twice.",
                status_code=200,
            )
        return task

    async def get_task(self, task_id: str) -> Task:
        """Return the current state of any task of this account.

        Raises:
            PiAPIError: a subclass saying what went wrong (``NotFoundError`` for an unknown id).
        """
        envelope = await self._request("GET", f"{_TASK_PATH}/{task_id}")
        return parse_task(envelope.get("data"), fallback_id=task_id)

    async def cancel_task(self, task_id: str) -> str | None:
        """Ask PiAPI to cancel a task (PiAPI only cancels tasks still ``pending``); returns PiAPI's message.

        Raises:
            PiAPIError: ``BadRequestError`` when PiAPI will not cancel it, and the others as usual.
        """
        envelope = await self._request("DELETE", f"{_TASK_PATH}/{task_id}")
        message = envelope.get("message")
        return message if isinstance(message, str) else None

    async def _request(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        if self._api_key is None:
            raise MissingAPIKeyError()
        url = f"{self._base_url}{path}"
        try:
            response = await self._http.request(
                method,
                url,
                json=json,
                headers={"X-API-Key": self._api_key, "Accept": "application/json"},
                timeout=self._timeout,
            )
        except httpx2.TimeoutException as err:
            raise APITimeoutError(
                f"PiAPI did not answer within {self._timeout.read or 0:g} s; it may be busy. "
                "Try again shortly."
            ) from err
        except httpx2.HTTPError as err:
            raise APIConnectionError(
                f"Could not reach PiAPI at {self._base_url} ({type(err).__name__}); check the network "
                "and PIAPI_BASE_URL, then try again."
            ) from err
        return decode_envelope(response, api_key=self._api_key)
