"""PiAPI's objects as pydantic models: the Kontext input, the normalised task, the tool result.

``KontextInput`` is the single source of truth for the ``kontext_edit`` tool: the PiAPI request's
``input`` is dumped from it and the tool's ``inputSchema`` is generated from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

KONTEXT_MODEL: Final = "Qubico/flux1-dev-advanced"
KONTEXT_TASK_TYPE: Final = "kontext"

#: Statuses after which a task never changes again.
COMPLETED: Final = "completed"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
TERMINAL_STATUSES: Final = frozenset({COMPLETED, FAILED, CANCELLED})
#: Spellings PiAPI (or its legacy GoAPI schema) uses for the same status.
_STATUS_SYNONYMS: Final = {"success": COMPLETED, "canceled": CANCELLED}

TASK_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

# Go's zero time: PiAPI's way of saying "not yet".
_ZERO_TIME_PREFIX: Final = "0001-01-01"


class KontextInput(BaseModel):
    """The ``input`` of a PiAPI Flux Kontext task (model ``Qubico/flux1-dev-advanced``)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(
        min_length=1,
        max_length=4000,
        pattern=r"\S",
        description=(
            "What to change in the image, in plain words, e.g. 'make the sky purple' or "
            "'replace the word Piapi with Pineapple'. Describe the edit, not the whole picture."
        ),
    )
    image: str = Field(
        min_length=1,
        max_length=14_500_000,
        pattern=r"\S",
        description=(
            "The picture to edit (PNG, JPEG or WebP, at most 10 MB): a public http(s) URL; a local file "
            "path (absolute, ~ or file://) inside the allowed folders, which is uploaded to PiAPI for 24 h; "
            "a data: URI (base64); or piapi://tasks/{task_id} (or #2 for its second image) to edit an "
            "earlier result."
        ),
    )
    width: int = Field(
        default=1024,
        ge=128,
        le=2048,
        description="Width of the output image in pixels (128 to 2048; default 1024).",
    )
    height: int = Field(
        default=1024,
        ge=128,
        le=2048,
        description="Height of the output image in pixels (128 to 2048; default 1024).",
    )
    steps: int = Field(
        default=28,
        ge=1,
        le=40,
        description=(
            "Number of diffusion steps, 1 to 40 (PiAPI's maximum); more is slower and finer. Default 28."
        ),
    )
    seed: int = Field(
        default=-1,
        ge=-1,
        le=2**31 - 1,
        description="Random seed for reproducible results; -1 (the default) picks a random one.",
    )


def normalize_status(raw: object) -> str:
    """PiAPI's status as lowercase, with synonyms folded (``success`` → ``completed``)."""
    status = str(raw or "unknown").strip().lower() or "unknown"
    return _STATUS_SYNONYMS.get(status, status)


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
        return datetime.fromisoformat(text)
    except ValueError:
        return None


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
            if isinstance(item, str) and item.strip() and item.strip() not in found:
                found.append(item.strip())
    return found


def _task_error(raw: object, status: str) -> TaskError | None:
    if not isinstance(raw, dict):
        return None
    message = raw.get("message") or raw.get("raw_message") or ""
    code = raw.get("code")
    code = code if isinstance(code, int) else None
    if not message and not code:
        return None
    if not message:
        message = "PiAPI reported the task as failed without a message" if status == FAILED else ""
    return TaskError(code=code, message=str(message))


def parse_task(data: object, *, fallback_id: str | None = None) -> Task:
    """Normalise the ``data`` of a PiAPI envelope into a :class:`Task`, tolerating missing fields."""
    raw: dict[str, Any] = data if isinstance(data, dict) else {}
    status = normalize_status(raw.get("status"))
    meta_raw = raw.get("meta")
    meta: dict[str, Any] = meta_raw if isinstance(meta_raw, dict) else {}
    usage_raw = meta.get("usage")
    usage = None
    if isinstance(usage_raw, dict):
        usage = Usage(
            type=usage_raw.get("type") if isinstance(usage_raw.get("type"), str) else None,
            consume=usage_raw.get("consume") if isinstance(usage_raw.get("consume"), int) else None,
            frozen=usage_raw.get("frozen") if isinstance(usage_raw.get("frozen"), int) else None,
        )
    output = raw.get("output") if isinstance(raw.get("output"), dict) else None
    task_input = raw.get("input") if isinstance(raw.get("input"), dict) else None
    return Task(
        task_id=str(raw.get("task_id") or fallback_id or ""),
        model=raw.get("model") if isinstance(raw.get("model"), str) else None,
        task_type=raw.get("task_type") if isinstance(raw.get("task_type"), str) else None,
        status=status,
        images=_image_urls(output),
        usage=usage,
        error=_task_error(raw.get("error"), status),
        created_at=_parse_time(meta.get("created_at")),
        started_at=_parse_time(meta.get("started_at")),
        ended_at=_parse_time(meta.get("ended_at")),
        input=task_input,
        output=output,
    )


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
