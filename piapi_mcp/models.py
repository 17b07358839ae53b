"""PiAPI's objects as pydantic models: the normalised task and the tool result.

Each task's input model lives with its catalog entry (``piapi_mcp.catalog``); this module holds
what every task shares: statuses, :class:`Task` parsed from PiAPI's answers (whose every field is
the upstream's word, checked before use), and :class:`TaskResult`, what the tools return.
"""

import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

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
#: What one of PiAPI's ``meta.usage.consume`` units costs (``piapi-api.md`` §2.2: it fits every price).
USD_PER_CREDIT_UNIT: Final = 1e-7
#: Output URLs kept from one answer (far above any real task's; the saver handles fewer still).
MAX_LISTED_OUTPUTS: Final = 100

# Go's zero time: PiAPI's way of saying "not yet".
_ZERO_TIME_PREFIX: Final = "0001-01-01"

logger = logging.getLogger("piapi_mcp")

#: What a task makes. ``model3d`` is a GLB/OBJ file; ``text`` a caption, description or lyrics.
OutputKind = Literal["image", "video", "audio", "model3d", "text", "file"]
#: Output file types by URL extension: their kind and MIME type (the one table of them).
MEDIA_TYPES: Final[Mapping[str, tuple[OutputKind, str]]] = {
    "png": ("image", "image/png"),
    "jpg": ("image", "image/jpeg"),
    "jpeg": ("image", "image/jpeg"),
    "webp": ("image", "image/webp"),
    "gif": ("image", "image/gif"),
    "mp4": ("video", "video/mp4"),
    "mov": ("video", "video/quicktime"),
    "webm": ("video", "video/webm"),
    "mkv": ("video", "video/x-matroska"),
    "wav": ("audio", "audio/wav"),
    "mp3": ("audio", "audio/mpeg"),
    "flac": ("audio", "audio/flac"),
    "ogg": ("audio", "audio/ogg"),
    "m4a": ("audio", "audio/mp4"),
    "aac": ("audio", "audio/aac"),
    "glb": ("model3d", "model/gltf-binary"),
    "gltf": ("model3d", "model/gltf+json"),
    "obj": ("model3d", "model/obj"),
    "fbx": ("model3d", "application/octet-stream"),
    "ply": ("model3d", "application/octet-stream"),
    "stl": ("model3d", "model/stl"),
    "usdz": ("model3d", "model/vnd.usdz+zip"),
    "txt": ("text", "text/plain"),
}
#: The MIME type of an output whose URL has no known extension, by its kind.
DEFAULT_MIME_TYPES: Final[Mapping[OutputKind, str]] = {
    "image": "image/png",
    "video": "video/mp4",
    "audio": "audio/mpeg",
    "model3d": "model/gltf-binary",
    "text": "text/plain",
    "file": "application/octet-stream",
}
#: Output keys that say what a URL under them is (exact names, lowercase)...
_KEY_KINDS: Final[Mapping[str, OutputKind]] = {
    "model_file": "model3d",
    "model_file_url": "model3d",
    "model_url": "model3d",
    "glb": "model3d",
    "song_path": "audio",
    "image_path": "image",
    "cover": "image",
    "cover_url": "image",
    "thumbnail": "image",
    "last_frame": "image",
}
#: ...and words in a key that do, tried in this order when no exact name matched.
_KEY_WORDS: Final[tuple[tuple[str, OutputKind], ...]] = (
    ("image", "image"),
    ("cover", "image"),
    ("thumbnail", "image"),
    ("frame", "image"),
    ("video", "video"),
    ("audio", "audio"),
    ("song", "audio"),
    ("music", "audio"),
    ("voice", "audio"),
    ("speech", "audio"),
    ("model", "model3d"),
    ("mesh", "model3d"),
)
#: Keys whose string values are text outputs (Joycaption ``text``, Midjourney ``description``, Udio
#: ``lyrics``).
TEXT_KEYS: Final = frozenset({"text", "description", "lyrics", "caption"})
#: Keys never walked into: inline bytes, not outputs (``intermediate*`` keys are skipped too).
_SKIPPED_KEYS: Final = frozenset({"image_base64", "b64_json"})
#: The walk goes at most this deep into an output, and looks at most at this many values.
MAX_OUTPUT_DEPTH: Final = 16
MAX_WALKED_VALUES: Final = 20_000
#: A text output is cut to this many characters; all of a task's texts together to the second figure.
MAX_TEXT_CHARS: Final = 20_000
MAX_TEXT_TOTAL: Final = 100_000
_CONTROL_CHARS: Final = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


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

    model_config = ConfigDict(defer_build=True)

    #: PiAPI's usage kind, e.g. 'llm', 'point' or 'quota'.
    type: str | None = None
    consume: int | None = Field(default=None, description="Credit units charged (1 = $1e-7), not tokens.")
    #: Credit units reserved while the task runs.
    frozen: int | None = None


class TaskError(BaseModel):
    """Why PiAPI says a task failed."""

    model_config = ConfigDict(defer_build=True)

    code: int | None = None
    message: str


class OutputRef(BaseModel):
    """One output of a task: a file PiAPI serves (``url``), or a text (``text``)."""

    model_config = ConfigDict(defer_build=True)

    url: str | None = Field(default=None, description="PiAPI's URL (kept a few days).")
    kind: OutputKind
    mime_type: str | None = None
    path: str | None = Field(default=None, description="Saved copy on this machine.")
    save_error: str | None = None
    text: str | None = None


class Task(BaseModel):
    """A PiAPI task, normalised from whatever shape PiAPI sent."""

    model_config = ConfigDict(defer_build=True)

    task_id: str
    model: str | None = None
    task_type: str | None = None
    status: str
    #: What the task made, in order; numbered from 1 in ``piapi://tasks/{id}#n`` and ``.../outputs/{n}``.
    outputs: list[OutputRef] = Field(default_factory=list)
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
    def urls(self) -> list[str]:
        """The URLs of the outputs that are files, in order."""
        return [output.url for output in self.outputs if output.url is not None]

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


#: Keys longer than this say nothing of what is under them (and are not worth reading again and again).
_MAX_KEY_CHARS: Final = 64


def _kind_of_key(key: str) -> OutputKind | None:
    if len(key) > _MAX_KEY_CHARS:
        return None
    lowered = key.lower()
    if lowered in _KEY_KINDS:
        return _KEY_KINDS[lowered]
    return next((kind for word, kind in _KEY_WORDS if word in lowered), None)


def _extension(url: str) -> str:
    path = url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1]
    return path.rsplit(".", 1)[-1].lower() if "." in path else ""


def mime_type_for(url: str | None, kind: OutputKind) -> str:
    """The MIME type of an output as its URL's extension says, else as its kind's usual one."""
    known = MEDIA_TYPES.get(_extension(url)) if url else None
    return known[1] if known is not None and known[0] == kind else DEFAULT_MIME_TYPES[kind]


def url_output(
    value: object, kind: OutputKind | None = None, *, keys: Sequence[str] = ()
) -> OutputRef | None:
    """``value`` as a file output if it is a URL piapi-mcp uses (http(s), printable, bounded), else ``None``.

    Its kind is ``kind`` when given, else the first of ``keys`` (innermost first) that says one,
    else its extension's, else ``file``.
    """
    url = value.strip() if isinstance(value, str) else ""
    if not _OUTPUT_URL.fullmatch(url):
        return None
    if kind is None:
        kind = next((found for key in keys if (found := _kind_of_key(key)) is not None), None)
    if kind is None:
        known = MEDIA_TYPES.get(_extension(url))
        kind = known[0] if known is not None else "file"
    return OutputRef(url=url, kind=kind, mime_type=mime_type_for(url, kind))


def text_output(value: object) -> OutputRef | None:
    """``value`` as a text output (control characters dropped, length bounded), or ``None`` if empty."""
    if not isinstance(value, str):
        return None
    text = _CONTROL_CHARS.sub("", value[: MAX_TEXT_CHARS * 2]).strip()
    if not text:
        return None
    if len(text) > MAX_TEXT_CHARS:
        text = text[: MAX_TEXT_CHARS - 1] + "…"
    return OutputRef(kind="text", mime_type="text/plain", text=text)


def _skipped(key: str) -> bool:
    lowered = key[:_MAX_KEY_CHARS].lower()
    return lowered in _SKIPPED_KEYS or lowered.startswith("intermediate")


def _walk(output: object) -> Iterator[tuple[str, tuple[str, ...]]]:
    """Every string in ``output`` with the keys above it (innermost first), depth first, in order.

    Iterative and bounded (depth, values looked at), so no shape an upstream sends can exhaust
    the stack or the time of a call.
    """
    stack: list[tuple[object, tuple[str, ...], int]] = [(output, (), 0)]
    looked = 0
    while stack and looked < MAX_WALKED_VALUES:
        node, keys, depth = stack.pop()
        looked += 1
        if isinstance(node, str):
            yield node, keys
            continue
        if depth >= MAX_OUTPUT_DEPTH:
            continue
        children: list[tuple[object, tuple[str, ...], int]] = []
        if isinstance(node, dict):
            for key, value in islice(node.items(), MAX_WALKED_VALUES):
                if isinstance(key, str) and not _skipped(key):
                    children.append((value, (key, *keys), depth + 1))
        elif isinstance(node, list):
            children = [(value, keys, depth + 1) for value in islice(node, MAX_WALKED_VALUES)]
        stack.extend(reversed(children))


def walk_outputs(output: object) -> list[OutputRef]:
    """Every output in a task's ``output``, wherever it is, as PiAPI's CLI finds them.

    URL strings anywhere become file outputs, classified by the keys above them first and their
    extension second; strings under :data:`TEXT_KEYS` become text outputs. ``intermediate*`` keys
    and inline base64 are skipped. Order is PiAPI's, without repeats, within :func:`bounded_outputs`'
    limits.
    """
    found: list[OutputRef] = []
    for value, keys in _walk(output):
        item = url_output(value, keys=keys)
        if item is None and keys and keys[0][:_MAX_KEY_CHARS].lower() in TEXT_KEYS:
            item = text_output(value)
        if item is not None:
            found.append(item)
    return bounded_outputs(found)


def bounded_outputs(outputs: Sequence[OutputRef]) -> list[OutputRef]:
    """Outputs without repeats (same URL, or same text), at most :data:`MAX_LISTED_OUTPUTS`, texts bounded."""
    kept: list[OutputRef] = []
    seen: set[tuple[str | None, str | None]] = set()
    text_left = MAX_TEXT_TOTAL
    for output in outputs:
        if len(kept) >= MAX_LISTED_OUTPUTS:
            # An upstream's ten thousand URLs must not become ten thousand lines of every result.
            break
        if output.url is None and not output.text:
            continue
        identity = (output.url, None if output.url else output.text)
        if identity in seen:
            continue
        seen.add(identity)
        if output.text is not None and output.url is None:
            if text_left <= 0:
                continue
            if len(output.text) > text_left:
                output = output.model_copy(update={"text": output.text[: max(0, text_left - 1)] + "…"})
            text_left -= len(output.text or "")
        kept.append(output)
    return kept


#: A family's own reading of a task's ``output`` (``TaskSpec.parse_outputs``), for shapes the walk gets wrong.
OutputParser = Callable[[Mapping[str, Any]], list[OutputRef]]


def task_outputs(
    model: str | None, task_type: str | None, output: Mapping[str, Any] | None
) -> list[OutputRef]:
    """A task's outputs: its catalog entry's parser when it has one, else :func:`walk_outputs`.

    A parser that fails on an unexpected shape falls back to the walk; either way the result is
    :func:`bounded_outputs`.
    """
    if output is None:
        return []
    # The catalog's specs are built on this module, so it is looked up when a task is read.
    from piapi_mcp import catalog

    spec = catalog.CATALOG.find(model, task_type) if model and task_type else None
    parser = spec.parse_outputs if spec is not None else None
    found: list[OutputRef] | None = None
    if parser is not None:
        try:
            found = parser(output)
        except Exception:  # an upstream shape the parser did not expect: the walk still finds its URLs
            logger.warning("the %s %s output parser failed; outputs found by walking", model, task_type)
    return bounded_outputs(found if found is not None else walk_outputs(output))


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
    model = _identifier(raw.get("model"), MODEL_PATTERN)
    task_type = _identifier(raw.get("task_type"), TASK_TYPE_PATTERN)
    return Task(
        task_id=raw_id,
        model=model,
        task_type=task_type,
        status=status,
        outputs=task_outputs(model, task_type, output),
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


class NextAction(BaseModel):
    """Something PiAPI offers to do next with a task's output: ``run_task``'s arguments, and a label."""

    model_config = ConfigDict(defer_build=True)

    label: str
    model: str
    task_type: str
    input: dict[str, Any]


#: A family's follow-ups (``TaskSpec.follow_ups``): from a completed task to what can be done next with it.
FollowUps = Callable[[Task], list[NextAction]]


def output_reference(task: Task, n: int) -> str:
    """``piapi://tasks/{id}#n``: output ``n`` (from 1) of ``task``, as a media argument of a later task."""
    return f"piapi://tasks/{task.task_id}#{n}"


def usd_of_units(units: int) -> float:
    """PiAPI credit units in US dollars."""
    return round(units * USD_PER_CREDIT_UNIT, 7)


def charged_usd(task: Task) -> float | None:
    """What PiAPI charged for ``task`` (``meta.usage.consume``), or ``None`` while it does not say.

    A task still running with nothing consumed yet has no charge known; a finished one's is final.
    """
    consume = task.usage.consume if task.usage is not None else None
    if consume is None or (consume == 0 and not task.done):
        return None
    return usd_of_units(consume)


class TaskResult(BaseModel):
    """What every piapi-mcp tool returns about a task (the tool's structured content)."""

    model_config = ConfigDict(defer_build=True)

    task_id: str
    model: str | None
    task_type: str | None
    status: str = Field(description="Lowercase: pending, processing, completed, failed, cancelled, ...")
    done: bool
    outputs: list[OutputRef] = Field(description="What the task made, in order (#n in piapi:// links).")
    usage: Usage | None
    error: TaskError | None
    created_at: datetime | None
    elapsed_seconds: float | None
    eta_seconds: float | None
    next: str | None = Field(description="What to do while the task is not done.")
    simulated: bool = Field(description="From the built-in simulator (no credits used).")
    reused: bool = Field(default=False, description="An identical recent request's task, not a new one.")
    estimated_usd: float | None = Field(default=None, description="PiAPI's listed price of such a task.")
    cost_usd: float | None = Field(default=None, description="What PiAPI charged, once it says.")
    #: Published as a bare array: each item is ``run_task``'s arguments and a label, which the result's
    #: text shows too, so no host pays for their schema in every tools/list.
    next_actions: Annotated[list[NextAction], WithJsonSchema({"type": "array"})] = Field(
        default_factory=list, description="What can be done next with the outputs: run_task arguments."
    )


#: The longest account name or plan kept from PiAPI's account answer.
MAX_ACCOUNT_TEXT: Final = 100
#: Amounts beyond this (in either direction) are not believed.
_MAX_AMOUNT: Final = 1e12


class AccountInfo(BaseModel):
    """The PiAPI account as ``get_account`` reports it (its structured content)."""

    model_config = ConfigDict(defer_build=True)

    account: str | None = Field(description="PiAPI's name for the account.")
    plan: str | None
    balance_usd: float | None = Field(description="Remaining balance in US$ (PiAPI's equivalent_in_usd).")
    credits: float | None = Field(description="Available credits of the account's credit packs.")
    spent_24h_usd: float = Field(default=0.0, description="What this server's tasks cost in the last 24 h.")
    daily_budget_usd: float | None = Field(default=None, description="PIAPI_DAILY_BUDGET_USD (null: none).")
    simulated: bool = False


def _amount(value: object) -> float | None:
    """A number PiAPI sends (or a numeric string), finite and of sane size; anything else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and len(value) <= 40:
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    number = float(value)
    if not math.isfinite(number) or abs(number) > _MAX_AMOUNT:
        return None
    return round(number, 7)


def _account_text(value: object) -> str | None:
    """A short printable string from PiAPI's account answer (control characters out, length bounded)."""
    if not isinstance(value, str | int) or isinstance(value, bool):
        return None
    text = re.sub(r"\s+", " ", _CONTROL_CHARS.sub("", str(value)[: MAX_ACCOUNT_TEXT * 4])).strip()
    if len(text) > MAX_ACCOUNT_TEXT:
        text = text[: MAX_ACCOUNT_TEXT - 1] + "…"
    return text or None


def parse_account(data: object) -> AccountInfo:
    """PiAPI's ``GET /account/info`` ``data`` as an :class:`AccountInfo`, tolerating any shape.

    Sources disagree on the fields (``piapi-api.md`` §8.1): the balance is ``equivalent_in_usd``; the
    credits ``credit_pack_info.available_credits``, else the legacy ``wallet.point_remain``; the name
    ``name`` (else ``account_name``). Whatever is missing or not of its kind reads as ``None``.

    Raises:
        InvalidResponseError: ``data`` is not an object, or carries none of these fields.
    """
    raw: Mapping[str, Any] = data if isinstance(data, dict) else {}
    packs = raw.get("credit_pack_info")
    wallet = raw.get("wallet")
    credits = _amount(packs.get("available_credits")) if isinstance(packs, dict) else None
    if credits is None and isinstance(wallet, dict):
        credits = _amount(wallet.get("point_remain"))
    account = AccountInfo(
        account=_account_text(raw.get("name") if raw.get("name") is not None else raw.get("account_name")),
        plan=_account_text(raw.get("plan")),
        balance_usd=_amount(raw.get("equivalent_in_usd")),
        credits=credits,
    )
    if account.balance_usd is None and account.credits is None and account.plan is None:
        raise InvalidResponseError(
            "PiAPI's account answer carried no balance, credits or plan; check PIAPI_BASE_URL points at "
            "PiAPI, and try again.",
            status_code=200,
        )
    return account
