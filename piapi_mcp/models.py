"""PiAPI's objects as pydantic models: the normalised task and the tool result.

Each task's input model lives with its catalog entry (``piapi_mcp.catalog``); this module holds
what every task shares: statuses, :class:`Task` parsed from PiAPI's answers (whose every field is
the upstream's word, checked before use), and :class:`TaskResult`, what the tools return.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, Field

from piapi_mcp.errors import InvalidResponseError, shown

#: Statuses after which a task never changes again.
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
TERMINAL_STATUSES: Final = frozenset({COMPLETED, FAILED, CANCELLED})
#: Spellings PiAPI (or its legacy GoAPI schema) uses for the same status.
_STATUS_SYNONYMS: Final = {"success": COMPLETED, "canceled": CANCELLED}

TASK_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: What an upstream's model and task type may look like ('Qubico/flux1-dev-advanced', 'music-u',
#: 'txt2img'); anything else is dropped before it reaches a log line, the ledger or a file.
MODEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:+/-]{0,99}$"
TASK_TYPE_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$"
#: A status, once lowercased; anything else reads as ``unknown`` (not finished).
STATUS_PATTERN: Final = r"^[a-z][a-z0-9_ -]{0,31}$"
#: A failed task whose message says this was cancelled, not failed (PiAPI reports cancels both ways).
_CANCELLED_MESSAGE: Final = re.compile(r"\bcancel", re.IGNORECASE)
UNKNOWN_STATUS: Final = "unknown"
#: An output URL piapi-mcp will use: http(s), printable, of sane length.
_OUTPUT_URL: Final = re.compile(r"https?://[!-~]{1,2040}", re.IGNORECASE)
MAX_ERROR_MESSAGE: Final = 300
#: Output URLs kept from one answer (far above any real task's; the saver handles fewer still).
MAX_LISTED_OUTPUTS: Final = 100

# Go's zero time: PiAPI's way of saying "not yet".
_ZERO_TIME_PREFIX: Final = "0001-01-01"


def normalize_status(raw: object) -> str:
    """PiAPI's status as lowercase, with synonyms folded (``success`` → ``completed``).

    A status that is not a short word (an upstream's garbage) becomes ``unknown``.
    """
    status = raw.strip().lower() if isinstance(raw, str) else ""
    if not re.fullmatch(STATUS_PATTERN, status):
        return UNKNOWN_STATUS
    return _STATUS_SYNONYMS.get(status, status)


def valid_task_id(task_id: str) -> bool:
    """Whether ``task_id`` has the form of a PiAPI task id (safe in a path, a URL, a log line)."""
    return re.fullmatch(TASK_ID_PATTERN, task_id) is not None


def _identifier(value: object, pattern: str) -> str | None:
    return value if isinstance(value, str) and re.fullmatch(pattern, value) else None


class Usage(BaseModel):
    """What a task costs, as PiAPI reports it in ``meta.usage`` (credits, not tokens)."""

    type: str | None = Field(default=None, description="PiAPI's usage kind, e.g. 'llm', 'point' or 'quota'.")
    consume: int | None = Field(
        default=None,
        description="PiAPI credit units charged for this task (PiAPI's `consume`; not tokens).",
    )
    frozen: int | None = Field(default=None, description="PiAPI credit units reserved while the task runs.")


class TaskError(BaseModel):
    """Why PiAPI says a task failed."""

    code: int | None = Field(default=None, description="PiAPI's error code.")
    message: str = Field(description="PiAPI's error message.")


class ImageRef(BaseModel):
    """One output image."""

    url: str = Field(description="Where PiAPI serves the image (PiAPI deletes outputs after a few days).")
    path: str | None = Field(
        default=None, description="Where the image was saved on this machine, if it was."
    )
    save_error: str | None = Field(default=None, description="Why saving it failed, if it did.")


class Task(BaseModel):
    """A PiAPI task, normalised from whatever shape PiAPI sent."""

    task_id: str
    model: str | None = None
    task_type: str | None = None
    status: str
    images: list[str] = Field(default_factory=list)
    usage: Usage | None = None
    error: TaskError | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    input: dict[str, Any] | None = None
    output: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        """Whether the task has reached a status it never leaves."""
        return self.status in TERMINAL_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from creation to end, by PiAPI's own timestamps; ``None`` while not ended."""
        if self.created_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.created_at).total_seconds())


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value or value.startswith(_ZERO_TIME_PREFIX):
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python 3.11 reads at most microseconds; PiAPI sends nanoseconds.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    # A time without a zone is read as UTC: compared with aware times, a naive one would crash.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _image_urls(output: object) -> list[str]:
    """Every image URL in a task's output, in PiAPI's order, without empties or repeats."""
    if not isinstance(output, dict):
        return []
    found: list[str] = []
    for key, value in output.items():
        if not isinstance(key, str) or "intermediate" in key:
            continue
        if not (key.endswith("image_url") or key.endswith("image_urls")):
            continue
        values = value if isinstance(value, list) else [value]
        for item in values:
            url = item.strip() if isinstance(item, str) else ""
            if _OUTPUT_URL.fullmatch(url) and url not in found:
                found.append(url)
    # An upstream's ten thousand URLs must not become ten thousand lines of every result.
    return found[:MAX_LISTED_OUTPUTS]


def _task_error(raw: object, status: str) -> TaskError | None:
    if not isinstance(raw, dict):
        return None
    said = raw.get("message") or raw.get("raw_message") or ""
    # The upstream's words go into one line of a result: one paragraph, of bounded length.
    message = re.sub(r"\s+", " ", said if isinstance(said, str) else "").strip()[:MAX_ERROR_MESSAGE]
    code = _count(raw.get("code"))
    if not message and not code:
        return None
    if not message:
        message = "PiAPI reported the task as failed without a message" if status == FAILED else ""
    return TaskError(code=code, message=message)


def parse_task(data: object, *, expected_id: str | None = None) -> Task:
    """Normalise the ``data`` of a PiAPI envelope into a :class:`Task`, tolerating missing fields.

    Everything in it is the upstream's word: identifiers are checked against strict patterns
    before anything uses them (a bad model or task type is dropped, a bad status reads as
    ``unknown``). ``expected_id`` is the id asked for, used when the answer carries none.

    Raises:
        InvalidResponseError: the answer names no task id (and none was expected), a task id not
            in PiAPI's form, or another task than the one asked for.
    """
    raw: dict[str, Any] = data if isinstance(data, dict) else {}
    raw_id = raw.get("task_id")
    if raw_id in (None, "") and expected_id is not None:
        raw_id = expected_id
    if not isinstance(raw_id, str) or not valid_task_id(raw_id):
        said = (
            "no task id" if raw_id in (None, "") else (f"a task id not in PiAPI's form ({shown(raw_id, 60)})")
        )
        raise InvalidResponseError(
            f"PiAPI's answer carried {said}, so piapi-mcp did not use it; check PIAPI_BASE_URL points "
            "at PiAPI or a faithful proxy.",
            status_code=200,
        )
    if expected_id is not None and raw_id != expected_id:
        raise InvalidResponseError(
            f"Asked for task {expected_id}, PiAPI's answer described another task ({shown(raw_id, 60)}); "
            "piapi-mcp did not use it. Try again, and check PIAPI_BASE_URL if it repeats.",
            status_code=200,
        )
    status = normalize_status(raw.get("status"))
    error = _task_error(raw.get("error"), status)
    if status == FAILED and error is not None and _CANCELLED_MESSAGE.search(error.message):
        status = CANCELLED
    meta_raw = raw.get("meta")
    meta: dict[str, Any] = meta_raw if isinstance(meta_raw, dict) else {}
    usage_raw = meta.get("usage")
    usage = None
    if isinstance(usage_raw, dict):
        usage = Usage(
            type=_identifier(usage_raw.get("type"), TASK_TYPE_PATTERN),
            consume=_count(usage_raw.get("consume")),
            frozen=_count(usage_raw.get("frozen")),
        )
    output = raw.get("output") if isinstance(raw.get("output"), dict) else None
    task_input = raw.get("input") if isinstance(raw.get("input"), dict) else None
    return Task(
        task_id=raw_id,
        model=_identifier(raw.get("model"), MODEL_PATTERN),
        task_type=_identifier(raw.get("task_type"), TASK_TYPE_PATTERN),
        status=status,
        images=_image_urls(output),
        usage=usage,
        error=error,
        created_at=_parse_time(meta.get("created_at")),
        started_at=_parse_time(meta.get("started_at")),
        ended_at=_parse_time(meta.get("ended_at")),
        input=task_input,
        output=output,
    )


def _count(value: object) -> int | None:
    """A credit count as PiAPI sends it (a whole number, not a bool, within 64 bits), else ``None``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        return None
    return value


class TaskResult(BaseModel):
    """What every piapi-mcp tool returns about a task (the tool's structured content)."""

    task_id: str = Field(description="PiAPI's id for the task; keep it to fetch the result later.")
    model: str | None = Field(description="PiAPI model, e.g. 'Qubico/flux1-dev-advanced'.")
    task_type: str | None = Field(description="PiAPI task type, e.g. 'kontext'.")
    status: str = Field(
        description="Lowercase PiAPI status: pending, processing, staged, completed, failed, cancelled, or "
        "another value PiAPI sent (treated as not finished)."
    )
    done: bool = Field(description="True once the task is completed, failed or cancelled.")
    images: list[ImageRef] = Field(description="Output images, in PiAPI's order (empty until completed).")
    usage: Usage | None = Field(description="PiAPI credits charged, as PiAPI reports them.")
    error: TaskError | None = Field(description="PiAPI's error when the task failed, else null.")
    created_at: datetime | None = Field(description="When PiAPI accepted the task.")
    started_at: datetime | None = Field(description="When PiAPI started processing it.")
    ended_at: datetime | None = Field(description="When it finished.")
    elapsed_seconds: float | None = Field(
        description="Seconds since PiAPI accepted the task (or its total run time once done)."
    )
    eta_seconds: float | None = Field(description="Estimated seconds left, when one can be estimated.")
    next: str | None = Field(description="What to do next while the task is not done; null once done.")
    simulated: bool = Field(
        description="True when this came from the built-in PiAPI simulator (no credits used)."
    )
    reused: bool = Field(
        default=False,
        description="True when this call returned a task created moments ago for the same request, "
        "instead of creating and paying for a second one.",
    )
