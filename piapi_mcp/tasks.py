"""The task workflow: create, wait, look up, cancel, list; it knows PiAPI and the catalog, not MCP.

:class:`TaskService` is what every tool does, for any (model, task_type): the duplicate guard
(an intent row claimed in the ledger before the create is sent), media resolution (every media
field of the input, by its marker), the create itself, waiting with progress and a heartbeat,
saving outputs, and the ledger. It returns :class:`Outcome` values and raises :class:`CallFailed`
with one sentence for the caller; turning those into MCP results is ``piapi_mcp.render``'s job,
and the MCP layer hands in what it knows of the call (how to send progress, the client's roots)
as a :class:`Call`.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio

from piapi_mcp.catalog import CATALOG, MediaField, SizeFromImage, Status, TaskSpec
from piapi_mcp.client import MAX_HISTORY_PAGE_SIZE, PiAPIClient, host_of
from piapi_mcp.errors import (
    AuthenticationError,
    BadRequestError,
    CreateOutcomeUnknownError,
    NotFoundError,
    PiAPIError,
)
from piapi_mcp.events import TaskSubscription
from piapi_mcp.ledger import (
    LEDGER_ERRORS,
    UNKNOWN_TASK_PREFIX,
    Claim,
    ClaimOutcome,
    Ledger,
    LedgerEntry,
    TaskLedger,
    request_fingerprint,
)
from piapi_mcp.media import (
    MAX_PREVIEWS,
    Confinement,
    ImageInputError,
    ImageResolver,
    OutputGuard,
    OutputSaver,
    OutputTooLarge,
    SavedOutput,
)
from piapi_mcp.models import CANCELLED, COMPLETED, TERMINAL_STATUSES, AccountInfo, Task, valid_task_id
from piapi_mcp.server_settings import ServerSettings as ServerSettings  # re-exported
from piapi_mcp.server_settings import WebhookTarget as WebhookTarget  # re-exported
from piapi_mcp.timing import Clock
from piapi_mcp.waiting import HEARTBEAT_SECONDS, WaitUpdate, wait_for_task
from piapi_mcp.wording import clause, ended, seconds, sentences
from piapi_mcp.wording import usd as usd  # re-exported: how results write money

logger = logging.getLogger("piapi_mcp")
T = typing.TypeVar("T")

#: Downloads of a call's outputs get at least this long, even when the task finished at the very end
#: of the call's budget; what is not saved by then is listed with its URL and saved on a later get_task.
DOWNLOAD_FLOOR_SECONDS: Final = 10.0
#: How long a create waits for another process's create of the same request to get its PiAPI id.
CLAIM_WAIT_SECONDS: Final = 30.0
#: How often it looks meanwhile.
CLAIM_POLL_SECONDS: Final = 0.25
#: PiAPI's task history is searched this far around an unknown create's time (clocks differ)...
HISTORY_SLACK_SECONDS: Final = 600.0
#: At most this many pages of PiAPI's history are read looking for one lost create (a busy account
#: makes more than a page of tasks in the window around it).
MAX_HISTORY_PAGES: Final = 5
#: ...at most once per unknown create in this long...
RECOVERY_RETRY_SECONDS: Final = 60.0
#: ...and for at most this many unknown creates per list_tasks.
RECOVERIES_PER_LISTING: Final = 5
#: The longest media argument an intent row stores before it is resolved (data: URIs are big).
_INTENT_MEDIA_CHARS: Final = 2048


class CallFailed(Exception):
    """A call's failure, as one sentence for the caller (the MCP layer makes it a tool error)."""


class TaskNotFound(CallFailed):
    """The task named does not exist for PiAPI (or is not a task id): a resource read says "not found"."""


#: Sends one progress notification: (elapsed seconds, expected total or None, message).
Notify = Callable[[float, float | None, str], Awaitable[None]]
#: The local folders the caller declared (an MCP client's roots).
Roots = Callable[[], Awaitable[Sequence[Path]]]


@dataclass(frozen=True)
class Call:
    """What the protocol layer knows of one call: how to report progress, and the caller's folders."""

    notify: Notify | None = None
    roots: Roots | None = None
    #: Why the caller shares no folders (e.g. its protocol cannot), said when a local path is refused.
    no_roots: str | None = None


@dataclass(frozen=True)
class CreateRequest:
    """One create as the workflow sees it: what to send, and the words results use for it."""

    model: str
    task_type: str
    #: The ``input`` to send, before media fields are resolved (the fingerprint is taken of this).
    input: dict[str, Any]
    #: The tool that asked, for the ledger and for "call it again with force_new".
    tool: str
    noun: str = "task"
    #: Input fields that take media, resolved into URLs before the create.
    media: Mapping[str, MediaField] = field(default_factory=dict)
    #: The catalog's word on the pair: anything but ``active`` is refused before anything is sent.
    status: Status = "active"
    #: PiAPI's price of one such task in US$ (the spend guard's estimate); ``None`` when not known.
    price_usd: float | None = None
    #: An output size left out follows the input picture's aspect ratio (filled in once it is resolved).
    size: SizeFromImage | None = None

    @classmethod
    def for_spec(cls, spec: TaskSpec, task_input: dict[str, Any], *, tool: str) -> CreateRequest:
        """The request for a catalog entry, its input already validated."""
        return cls(
            spec.model,
            spec.task_type,
            task_input,
            tool,
            spec.noun,
            spec.media_fields(),
            spec.status,
            spec.price_usd,
            spec.size_from_image,
        )

    @classmethod
    def for_pair(
        cls, model: str, task_type: str, task_input: Mapping[str, Any], *, tool: str
    ) -> CreateRequest:
        """The request for any (model, task_type): a catalog entry's validated, else ``task_input`` as given.

        A pair the catalog does not know is passed through for PiAPI to judge (no media resolution,
        no defaults); one it marks discontinued or stopped is not validated, since it is refused anyway.

        Raises:
            ValidationError: ``task_input`` does not fit the catalog entry's input model.
        """
        spec = CATALOG.find(model, task_type)
        if spec is None:
            return cls(model, task_type, dict(task_input), tool)
        if spec.status != "active":
            return cls.for_spec(spec, dict(task_input), tool=tool)
        return cls.for_spec(spec, spec.request_input(spec.input.model_validate(task_input)), tool=tool)


@dataclass(frozen=True)
class Outcome:
    """Where a call left a task: its last state, with what was saved and what to tell the caller."""

    task: Task
    elapsed: float | None
    eta: float | None
    #: What was saved (or fetched for a preview) of each file output, by its number in ``task.outputs``.
    saved: Mapping[int, SavedOutput] = field(default_factory=dict)
    note: str | None = None
    reused: bool = False


@dataclass(frozen=True)
class Listing:
    """The ledger's recent entries, and whether the ledger is the usual file."""

    entries: list[LedgerEntry]
    #: Where the ledger lives (its file, or its database's URL without the password); ``None``: in memory.
    ledger: str | None
    notice: str | None


class Progress:
    """Sends progress whose ``progress`` always increases (elapsed seconds) through a :data:`Notify`.

    While :meth:`running`, a heartbeat repeats the task's phase whenever nothing was sent for
    :data:`HEARTBEAT_SECONDS`, whatever the call is busy with (a stuck poll, downloads).
    """

    def __init__(self, notify: Notify | None, clock: Clock, started: float, task_id: str) -> None:
        self._notify = notify
        self._clock = clock
        self._started = started
        self._task_id = task_id
        self._last = -1.0
        self._last_sent_at = clock.monotonic()
        self._sending = anyio.Lock()
        #: What the task is doing, as the heartbeat says it (its last status, or the call's step).
        self.phase = "pending"

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Progress]:
        """This reporter, with its heartbeat running until the block ends."""
        async with anyio.create_task_group() as group:
            group.start_soon(self._heartbeat)
            try:
                yield self
            finally:
                group.cancel_scope.cancel()

    async def _heartbeat(self) -> None:
        while True:
            await self._clock.wait_until(self._last_sent_at + HEARTBEAT_SECONDS)
            elapsed = self._clock.monotonic() - self._last_sent_at
            if elapsed >= HEARTBEAT_SECONDS - 1e-6:
                await self.send(
                    f"PiAPI task {self._task_id}: {self.phase}, "
                    f"{seconds(self._clock.monotonic() - self._started)} elapsed"
                )

    async def send(self, message: str, total: float | None = None) -> None:
        """One progress notification; a client gone away never fails the call."""
        if self._notify is None:
            return
        async with self._sending:  # the heartbeat and the call must not interleave their values
            progress = max(round(self._clock.monotonic() - self._started, 1), round(self._last + 0.1, 1))
            self._last = progress
            self._last_sent_at = self._clock.monotonic()
            try:
                await self._notify(progress, total if total and total > progress else None, message)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:  # a client gone away must not fail the task it created
                logger.debug("progress notification could not be sent", exc_info=True)


class TaskService:
    """Every tool's workflow over the PiAPI client, for any (model, task_type)."""

    def __init__(self, client: PiAPIClient, settings: ServerSettings) -> None:
        self.client = client
        self.settings = settings
        self.clock = settings.clock
        if settings.webhook is not None:
            client.redact_also(settings.webhook.secret)
        self.ledger: Ledger = settings.ledger or TaskLedger(None, clock=settings.clock)
        self._locks: dict[str, anyio.Lock] = {}
        #: When each unknown create was last looked for in PiAPI's history (clock.monotonic()).
        self._recovery_tried: dict[str, float] = {}
        self._resolver = ImageResolver(
            upload=self._upload,
            look_up_task=client.get_task,
            confinement=Confinement(settings.allowed_dirs),
        )
        self.guard = OutputGuard(
            settings.resolver,
            base_url=client.base_url,
            upload_url=client.upload_url,
            allow_private=settings.allow_private_outputs,
        )

    # --- creating ---------------------------------------------------------------------------------

    async def create_and_wait(
        self, request: CreateRequest, call: Call, *, budget: float, force_new: bool
    ) -> Outcome:
        """Create the task (or find the same request's), then wait for it up to ``budget`` seconds.

        Raises:
            CallFailed: nothing could be created, or whether PiAPI created it is unknown (the
                sentence says which, and what to do).
        """
        if request.status != "active":
            raise CallFailed(
                f"PiAPI's {request.model} {request.task_type} is {request.status} (PiAPI no longer runs it), "
                "so nothing was sent; read piapi://models for the models that run."
            )
        started = self.clock.monotonic()
        fingerprint = request_fingerprint(request.model, request.task_type, request.input)
        existing: LedgerEntry | None = None
        #: Set when the task id went to the ledger's local fallback (its database was out).
        kept: str | None = None
        # Media given as URLs are sent as given (no read, no upload): resolved before the claim, the
        # intent row already holds the input as it will be sent, and the create needs no second
        # ledger write before it goes out.
        resolved = await self._resolve_media(request, call) if _media_are_urls(request) else None
        intent = _intent_input(request) if resolved is None else resolved
        # Identical calls in this process queue here; other processes meet the ledger's claim instead.
        async with self._request_lock(fingerprint):
            for _ in range(2):  # a second round only when the task found is one PiAPI no longer knows
                outcome = await self._claim(request, fingerprint, intent, force_new=force_new)
                existing = outcome.existing
                if existing is None:
                    task, kept = await self._create(
                        outcome.claim, request, call, fingerprint, intent=intent, resolved=resolved
                    )
                    break
                if existing.may_exist:
                    break
                gone_id = existing.task_id
                try:
                    task = await self.client.get_task(gone_id)
                except NotFoundError:
                    await self._write_ledger(partial(self.ledger.mark_gone, gone_id), key=gone_id)
                    continue
                except PiAPIError as err:
                    raise CallFailed(err.message) from err
                break
            else:
                raise CallFailed(
                    f"PiAPI no longer knows the earlier tasks for this same {request.noun}; call "
                    f"{request.tool} again with force_new=true to create it anew."
                )
        if existing is not None and existing.may_exist:
            age = max(0.0, (self.clock.now() - existing.created_at).total_seconds())
            raise CallFailed(
                f"The same {request.noun} was sent to PiAPI {seconds(age)} ago and its answer never arrived "
                "(lost, or the server stopped mid-create), so PiAPI may already be running it; check "
                f"list_tasks and your PiAPI dashboard, and to create it anyway call {request.tool} again "
                "with force_new=true."
            )
        if existing is not None:
            age = max(0.0, (self.clock.now() - existing.created_at).total_seconds())
            note = (
                f"The same {request.noun} was requested {seconds(age)} ago as task {task.task_id}, so this "
                "call reuses that task instead of paying for a new one (pass force_new=true to create "
                "another)."
            )
            return await self._follow(
                task, call, started=started, created_at=started - self._age(task), budget=budget, reused=note
            )
        followed = await self._follow(
            task, call, started=started, created_at=self.clock.monotonic(), budget=budget
        )
        unpriced = None
        if self.settings.daily_budget_usd is not None and request.price_usd is None:
            unpriced = (
                f"piapi-mcp knows no price for {request.model} {request.task_type}, so the daily budget "
                "counted it at US$0 until PiAPI reports what it charged."
            )
        if unpriced or kept:
            return replace(followed, note="\n".join(filter(None, [followed.note, kept, unpriced])))
        return followed

    async def _claim(
        self, request: CreateRequest, fingerprint: str, intent: dict[str, Any], *, force_new: bool
    ) -> ClaimOutcome:
        """Claim the create in the ledger, or find the same request's entry (waiting out a create in flight).

        ``intent`` is the input the intent row stores until the create is sent.

        An ``unknown`` entry met here is looked for in PiAPI's task history first: a create that did
        happen is then reused, and only one that cannot be found asks for ``force_new``.
        """
        within = 0.0 if force_new else max(0.0, self.settings.dedup_seconds)
        budget = self.settings.daily_budget_usd
        deadline = self.clock.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            try:
                outcome = await self._ledger_raw(
                    lambda: self.ledger.claim(
                        fingerprint,
                        tool=request.tool,
                        model=request.model,
                        task_type=request.task_type,
                        task_input=intent,
                        within_seconds=within,
                        estimated_usd=request.price_usd,
                        budget_usd=budget,
                    )
                )
            except LEDGER_ERRORS as err:
                if budget is not None:
                    raise CallFailed(
                        f"The task ledger could not be read ({type(err).__name__}), so the daily budget "
                        "(PIAPI_DAILY_BUDGET_USD) cannot be checked and nothing was sent; fix the ledger "
                        "(PIAPI_STATE_DIR, or PIAPI_LEDGER_URL's database) or unset the budget."
                    ) from err
                logger.warning("task ledger unusable; the create is sent unrecorded", exc_info=True)
                return ClaimOutcome(None, None)
            if outcome.over_budget_spent is not None:
                raise CallFailed(_over_budget(request, outcome.over_budget_spent, budget))
            if not outcome.in_flight:
                break
            if self.clock.monotonic() >= deadline:
                raise CallFailed(
                    f"The same {request.noun} is being created right now by another piapi-mcp process "
                    f"sharing this state folder; call {request.tool} again in a few seconds to get its task "
                    "(or pass force_new=true to create another)."
                )
            await self.clock.sleep(CLAIM_POLL_SECONDS)
        if outcome.existing is not None and outcome.existing.may_exist:
            recovered = await self._recover(outcome.existing)
            if recovered is not None:
                return ClaimOutcome(None, recovered)
        return outcome

    async def _create(
        self,
        claim: Claim | None,
        request: CreateRequest,
        call: Call,
        fingerprint: str,
        *,
        intent: dict[str, Any],
        resolved: dict[str, Any] | None,
    ) -> tuple[Task, str | None]:
        """Send the create under ``claim``; its intent row becomes the task, is dropped, or stays unknown.

        ``intent`` is what the intent row holds; ``resolved`` the input to send when already known
        (else its media are resolved here, and the row is updated first when that changed it).

        Returns the task, and the ledger's sentence when its id was kept outside the ledger for now.
        """

        async def settle(write: Callable[[Claim], Awaitable[object]]) -> None:
            if claim is not None:
                held = claim
                with anyio.CancelScope(shield=True):
                    await self._write_ledger(lambda: write(held))

        try:
            task_input = await self._resolve_media(request, call) if resolved is None else resolved
        except BaseException:
            await settle(self.ledger.release_claim)
            raise
        if claim is not None and task_input != intent:
            held = claim
            await self._write_ledger(lambda: self.ledger.set_claim_input(held, task_input))
        try:
            webhook = self.settings.webhook
            config = webhook.config() if webhook is not None else None
            task = await self.client.create_task(request.model, request.task_type, task_input, config)
        except CreateOutcomeUnknownError as err:
            # Remember the attempt: an identical retry must not silently pay a second time.
            await settle(self.ledger.mark_unknown)
            raise CallFailed(err.message) from err
        except PiAPIError as err:
            await settle(self.ledger.release_claim)
            raise CallFailed(sentences(err.message, "No task was created")) from err
        except BaseException:
            # Cut off (or broken) while the create may be on the wire: PiAPI may have made it.
            await settle(self.ledger.mark_unknown)
            raise
        logger.info("created PiAPI task %s (%s)", task.task_id, task.task_type)
        if claim is not None:
            held = claim
            with anyio.CancelScope(shield=True):
                kept = await self._ledger(lambda: self.ledger.resolve_claim(held, task))
        else:
            kept = await self._ledger(
                lambda: self.ledger.record_created(
                    task,
                    tool=request.tool,
                    task_input=task_input,
                    fingerprint=fingerprint,
                    estimated_usd=request.price_usd,
                ),
                key=task.task_id,
            )
        return task, kept

    async def _recover(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Find an ``unknown`` create in PiAPI's task history by its time and input; record and return it."""
        if not self.client.has_api_key:
            return None
        now = self.clock.monotonic()
        tried = self._recovery_tried.get(entry.task_id)
        if tried is not None and now - tried < RECOVERY_RETRY_SECONDS:
            return None
        moment = entry.created_at.timestamp()
        candidates: list[Task] = []
        for page in range(1, MAX_HISTORY_PAGES + 1):
            try:
                found = await self.client.task_history(
                    start_time=moment - HISTORY_SLACK_SECONDS,
                    end_time=moment + HISTORY_SLACK_SECONDS,
                    page=page,
                )
            except PiAPIError as err:
                logger.info("could not search PiAPI's task history for %s: %s", entry.task_id, err.message)
                return None
            matching = [task for task in found if valid_task_id(task.task_id) and _same_create(task, entry)]
            ids = [task.task_id for task in matching]
            known = await self._ledger(lambda: self.ledger.known_ids(ids))  # noqa: B023 - awaited at once
            candidates = [task for task in matching if task.task_id not in (known or set())]
            if candidates or len(found) < MAX_HISTORY_PAGE_SIZE:
                break
        # Searched and not found: PiAPI's history may lag, so look again later, not at every call.
        self._recovery_tried[entry.task_id] = now
        if not candidates:
            return None
        best = min(
            candidates,
            key=lambda task: abs((task.created_at or entry.created_at) - entry.created_at).total_seconds(),
        )
        if not await self._ledger(lambda: self.ledger.recover(entry.task_id, best), key=best.task_id):
            return None
        self._recovery_tried.pop(entry.task_id, None)
        logger.info("found PiAPI task %s in PiAPI's history (its create answer never arrived)", best.task_id)
        return await self._ledger(lambda: self.ledger.get(best.task_id))

    async def _resolve_media(self, request: CreateRequest, call: Call) -> dict[str, Any]:
        """The input with every media field as a URL PiAPI can fetch; refusals are one sentence."""
        resolved = dict(request.input)
        roots: Sequence[Path] | None = None
        #: The size of the picture an output size follows, when its bytes were read.
        picture: tuple[int, int] | None = None
        for name in request.media:
            value = resolved.get(name)
            values = value if isinstance(value, list) else [value]
            urls: list[Any] = []
            for item in values:
                if not isinstance(item, str):
                    urls.append(item)
                    continue
                if roots is None and _is_local(item):
                    use_roots = self.settings.use_client_roots and call.roots is not None
                    roots = list(await call.roots()) if use_roots and call.roots is not None else []
                try:
                    resolved_item = await self._resolver.resolve(
                        item,
                        roots=roots or (),
                        kind=request.media[name].kind,
                        no_roots=call.no_roots if self.settings.use_client_roots else None,
                    )
                    urls.append(resolved_item.url)
                    if request.size is not None and name == request.size.image and len(urls) == 1:
                        picture = resolved_item.size
                except ImageInputError as err:
                    nothing = "Nothing was uploaded and no task was created"
                    raise CallFailed(sentences(str(err), nothing)) from err
                except PiAPIError as err:
                    raise CallFailed(sentences(err.message, "No task was created")) from err
            resolved[name] = urls if isinstance(value, list) else urls[0]
        return resolved if request.size is None else request.size.fill(resolved, picture)

    async def _upload(self, file_name: str, data: bytes) -> str:
        try:
            url = await self.client.upload_file(file_name, data)
        except AuthenticationError as err:
            if err.status_code != 403:
                raise
            said = f" ({clause(err.upstream_message)})" if err.upstream_message else ""
            raise ImageInputError(
                f"PiAPI refused the upload to {host_of(self.client.upload_url)}{said}: file uploads need "
                "PiAPI's Creator plan or higher. Give the file as a public http(s) URL instead."
            ) from err
        logger.info("uploaded %s (%d bytes) for PiAPI", file_name, len(data))
        return url

    # --- the ledger --------------------------------------------------------------------------------

    @asynccontextmanager
    async def _request_lock(self, fingerprint: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(fingerprint, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(fingerprint, None)

    async def _ledger_raw(self, call: Callable[[], Awaitable[T]], *, key: str | None = None) -> T:
        """Run a ledger call (the ledger runs it off the event loop); calls with one ``key`` run in order."""
        if key is None:
            return await call()
        async with self._request_lock(f"ledger:{key}"):
            return await call()

    async def _ledger(self, call: Callable[[], Awaitable[T]], *, key: str | None = None) -> T | None:
        """:meth:`_ledger_raw`, with ledger trouble (disk full, permissions) logged, never failing a call."""
        try:
            return await self._ledger_raw(call, key=key)
        except LEDGER_ERRORS:
            logger.warning("could not use the task ledger", exc_info=True)
            return None

    async def _write_ledger(self, write: Callable[[], Awaitable[object]], *, key: str | None = None) -> None:
        """Write the ledger off the event loop, in order per ``key`` (a task id); trouble is only logged."""
        await self._ledger(write, key=key)

    async def list_recent(self, status: str | None, limit: int) -> Listing:
        """The newest ledger entries (``unknown`` creates looked for in PiAPI's history first).

        Raises:
            CallFailed: the ledger cannot be read.
        """
        try:
            entries = await self._ledger_raw(lambda: self.ledger.recent(status=status, limit=limit))
        except LEDGER_ERRORS as err:
            raise CallFailed(f"The task ledger could not be read ({type(err).__name__}).") from err
        unknown = [entry for entry in entries if entry.may_exist][:RECOVERIES_PER_LISTING]
        recovered = [found for entry in unknown if (found := await self._recover(entry)) is not None]
        if recovered:
            entries = await self._ledger_raw(lambda: self.ledger.recent(status=status, limit=limit))
        return Listing(entries, self.ledger.location, self.ledger.notice)

    # --- looking up, cancelling ---------------------------------------------------------------------

    async def look_up(self, task_id: str, call: Call, wait_seconds: float) -> Outcome:
        """Any task of the account by id, waiting up to ``wait_seconds`` for it to finish.

        Raises:
            CallFailed: PiAPI does not know it, or could not be asked.
        """
        started = self.clock.monotonic()
        if task_id.startswith(UNKNOWN_TASK_PREFIX):
            entry = await self._ledger(lambda: self.ledger.get(task_id))
            if entry is not None:
                raise CallFailed(
                    f"{task_id} is this server's record of a create whose PiAPI id never arrived, not a "
                    "PiAPI task id; list_tasks shows it, and your PiAPI dashboard whether PiAPI made it."
                )
        task = await self._get(task_id)
        if task.done or wait_seconds <= 0:
            # No wait, but saving outputs may take a while: the heartbeat keeps the host informed.
            async with Progress(call.notify, self.clock, started, task.task_id).running() as progress:
                progress.phase = _saving_phase(task)
                return await self._finish(
                    task, elapsed=self._age(task), eta=None, deadline=started + wait_seconds
                )
        return await self._follow(
            task, call, started=started, created_at=started - self._age(task), budget=wait_seconds
        )

    async def cancel(self, task_id: str) -> Outcome:
        """Ask PiAPI to cancel a task (it cancels only pending ones) and report its state after.

        Raises:
            CallFailed: PiAPI would not cancel it (already running), or could not be asked.
        """
        try:
            await self.client.cancel_task(task_id)
        except BadRequestError as err:
            # A retried DELETE whose first answer was lost finds the task already cancelled.
            task = await self._get(task_id)
            if task.status == CANCELLED:
                return await self._finish(task, elapsed=None, eta=None)
            if task.status in TERMINAL_STATUSES:
                # Nothing left to cancel: the task is reported as it ended, and said so.
                note = f"Task {task_id} had already finished ({task.status}); nothing was cancelled."
                return await self._finish(task, elapsed=None, eta=None, note=note)
            await self._write_ledger(lambda: self.ledger.record_seen(task), key=task.task_id)
            said = f" (PiAPI said: {clause(err.upstream_message)})" if err.upstream_message else ""
            raise CallFailed(
                f"PiAPI could not cancel task {task_id}{said}; PiAPI only cancels tasks that are still "
                "pending, and one already processing runs to the end. Check it with get_task."
            ) from err
        except PiAPIError as err:
            raise CallFailed(err.message) from err
        task = await self._get(task_id)
        return await self._finish(task, elapsed=None, eta=None)

    async def state(self, task_id: str) -> Task:
        """The current state of a task, as PiAPI reports it (nothing saved, nothing recorded).

        Raises:
            CallFailed: not a task id, or PiAPI could not say.
        """
        if not valid_task_id(task_id):
            raise TaskNotFound(f"{task_id!r} is not a PiAPI task id.")
        try:
            return await self.client.get_task(task_id)
        except NotFoundError as err:
            raise TaskNotFound(err.message) from err
        except PiAPIError as err:
            raise CallFailed(err.message) from err

    async def output_bytes(self, task_id: str, n: str) -> bytes:
        """The bytes of output ``n`` (from 1) of a task: the saved copy, else fetched the guarded way.

        A text output is its text, in UTF-8.

        Raises:
            CallFailed: no such output, or it cannot be fetched (the sentence says why).
        """
        if not valid_task_id(task_id) or not n.isdigit() or int(n) < 1:
            raise CallFailed(f"piapi://tasks/{task_id}/outputs/{n} names no task output.")
        index = int(n)
        saver = self.settings.outputs
        if saver is not None and (saved := saver.existing(task_id, index)) is not None:
            try:
                return saver.read_saved(saved)
            except OutputTooLarge as err:
                raise CallFailed(ended(f"Output {n} of task {task_id}: {err}")) from err
            except ImageInputError:
                pass  # gone or swapped meanwhile: fetch it again
        task = await self.state(task_id)
        if not 1 <= index <= len(task.outputs):
            raise CallFailed(f"Task {task_id} has {len(task.outputs)} output(s); there is no output {n}.")
        output = task.outputs[index - 1]
        if output.url is None:
            return (output.text or "").encode("utf-8")
        fetcher = saver or OutputSaver(self.client.http_client, None)
        deadline = self.clock.monotonic() + fetcher.download_seconds
        try:
            # The same guarded path as saving: public addresses only, allowed formats only.
            return await fetcher.download(output.url, self.guard, self.clock, deadline=deadline)
        except ImageInputError as err:
            raise CallFailed(ended(f"Output {n} of task {task_id}: {err}")) from err

    async def account(self) -> AccountInfo:
        """The PiAPI account (balance, credits, plan) and what this server's tasks cost in the last 24 h.

        Raises:
            CallFailed: PiAPI could not say.
        """
        try:
            info = await self.client.account_info()
        except NotFoundError as err:
            raise CallFailed(
                "PiAPI answered 404 for its account endpoint, so the account is unknown; check that "
                "PIAPI_BASE_URL points at PiAPI."
            ) from err
        except PiAPIError as err:
            raise CallFailed(err.message) from err
        spent = await self._ledger(self.ledger.spent_usd)
        return info.model_copy(
            update={
                "spent_24h_usd": spent or 0.0,
                "daily_budget_usd": self.settings.daily_budget_usd,
                "simulated": self.settings.simulated,
            }
        )

    async def _get(self, task_id: str) -> Task:
        try:
            task = await self.client.get_task(task_id)
        except NotFoundError as err:
            # Never "pending" forever: a task PiAPI no longer knows is unknown, and never reused.
            known = await self._ledger(lambda: self.ledger.mark_gone(task_id), key=task_id)
            marked = "This server's task list now shows it as unknown." if known else ""
            raise CallFailed(sentences(err.message, marked)) from err
        except PiAPIError as err:
            raise CallFailed(err.message) from err
        return task

    def _age(self, task: Task) -> float:
        if task.created_at is None:
            return 0.0
        return max(0.0, (self.clock.now() - task.created_at).total_seconds())

    # --- waiting ------------------------------------------------------------------------------------

    async def _follow(
        self,
        task: Task,
        call: Call,
        *,
        started: float,
        created_at: float,
        budget: float,
        reused: str | None = None,
    ) -> Outcome:
        """Report the id at once, then wait until done or out of budget; never lose the id.

        Progress keeps flowing at least every few seconds whatever the call is doing (a slow poll,
        downloads), so hosts that reset their time-out on progress do not cut it.
        """
        async with (
            Progress(call.notify, self.clock, started, task.task_id).running() as progress,
            self._events(task.task_id) as events,
        ):
            return await self._follow_reported(
                task,
                progress,
                started=started,
                created_at=created_at,
                budget=budget,
                reused=reused,
                events=events,
            )

    @asynccontextmanager
    async def _events(self, task_id: str) -> AsyncIterator[TaskSubscription | None]:
        """The task's pushed events while webhooks are on; ``None`` (polling alone) otherwise."""
        if self.settings.webhook is None:
            yield None
            return
        async with self.settings.events.subscribe(task_id) as subscription:
            yield subscription

    async def _follow_reported(
        self,
        task: Task,
        progress: Progress,
        *,
        started: float,
        created_at: float,
        budget: float,
        reused: str | None,
        events: TaskSubscription | None = None,
    ) -> Outcome:
        await progress.send(
            f"PiAPI task {task.task_id} is {task.status}; waiting up to {seconds(budget)}. If this call is "
            f'cut off, the task keeps running: get it with get_task(task_id="{task.task_id}").'
        )
        if task.done:
            progress.phase = _saving_phase(task)
            return await self._finish(
                task,
                elapsed=self._age(task),
                eta=None,
                note=reused,
                reused=reused is not None,
                deadline=started + budget,
            )

        async def on_update(update: WaitUpdate) -> None:
            progress.phase = update.task.status
            await progress.send(_progress_message(update), total=_total(update))

        try:
            outcome = await wait_for_task(
                self.client,
                task,
                clock=self.clock,
                estimator=self.settings.estimator,
                deadline=started + budget,
                created_at=created_at,
                on_update=on_update,
                events=events,
            )
        except anyio.get_cancelled_exc_class():
            logger.info("call cancelled by the client; PiAPI task %s left running", task.task_id)
            raise
        except PiAPIError as err:
            raise CallFailed(
                sentences(err.message, f"PiAPI task {task.task_id} was created; check it later with get_task")
            ) from err
        except Exception as err:
            logger.exception("unexpected error while waiting for PiAPI task %s", task.task_id)
            raise CallFailed(
                f"Something went wrong while waiting for PiAPI task {task.task_id}; the task itself is "
                f'safe on PiAPI: get it with get_task(task_id="{task.task_id}").'
            ) from err
        notes = [reused] if reused else []
        if outcome.last_error is not None and not outcome.task.done:
            notes.append(ended(f"The last check on it failed: {outcome.last_error.message}"))
        progress.phase = _saving_phase(outcome.task)
        return await self._finish(
            outcome.task,
            elapsed=outcome.elapsed,
            eta=outcome.eta,
            note="\n".join(notes) or None,
            reused=reused is not None,
            deadline=started + budget,
        )

    async def _finish(
        self,
        task: Task,
        *,
        elapsed: float | None,
        eta: float | None,
        note: str | None = None,
        reused: bool = False,
        deadline: float | None = None,
    ) -> Outcome:
        """Save what a finished task made (until ``deadline``), record the state, return the outcome."""
        # Downloads stop at the call's deadline (on the clock), but get at least a short floor.
        floor = self.clock.monotonic() + DOWNLOAD_FLOOR_SECONDS
        saved = await self._outputs(task, floor if deadline is None else max(deadline, floor))
        # The one place a state reaches the caller, so the one place it is written to the ledger.
        paths = [str(copy.path) for copy in saved.values() if copy.path is not None]
        await self._write_ledger(
            lambda: self.ledger.record_seen(task, local_paths=paths or None), key=task.task_id
        )
        return Outcome(task, elapsed=elapsed, eta=eta, saved=saved, note=note, reused=reused)

    async def _outputs(self, task: Task, deadline: float) -> dict[int, SavedOutput]:
        """Save a completed task's file outputs (or fetch images to preview) by ``deadline``; never raises."""
        if task.status != COMPLETED or not task.urls:
            return {}
        saver = self.settings.outputs
        if saver is None or (saver.folder is None and not self.settings.preview):
            return {}
        previews = MAX_PREVIEWS if self.settings.preview else 0
        return await saver.save(task, self.guard, self.clock, deadline=deadline, previews=previews)


def _over_budget(request: CreateRequest, spent: float, budget: float | None) -> str:
    """The daily budget's refusal, in one sentence."""
    cost = f"would cost about {usd(request.price_usd)}, and " if request.price_usd else ""
    return (
        f"This {request.noun} {cost}this server's tasks of the last 24 h already cost {usd(spent)} of its "
        f"{usd(budget or 0.0)} daily budget (PIAPI_DAILY_BUDGET_USD), so nothing was sent; wait for "
        "earlier tasks to leave the 24-hour window, or raise the budget."
    )


def _is_local(value: str) -> bool:
    """Whether a media argument names something on this machine (a path or file:// URI)."""
    return not value.strip().lower().startswith(("http://", "https://", "data:", "piapi://"))


def _saving_phase(task: Task) -> str:
    """What the heartbeat says while a result is put together (downloads, previews)."""
    return f"{task.status}, saving its outputs" if task.status == COMPLETED else task.status


def _progress_message(update: WaitUpdate) -> str:
    task = update.task
    text = f"PiAPI task {task.task_id}: {task.status}, {seconds(update.elapsed)} elapsed"
    if not task.done and update.eta is not None:
        text += f", about {seconds(update.eta)} left" if update.eta >= 1 else ", finishing any moment"
    return text


def _total(update: WaitUpdate) -> float | None:
    return None if update.eta is None else update.elapsed + update.eta


def _intent_input(request: CreateRequest) -> dict[str, Any]:
    """The input an intent row stores before media is resolved (a data: URI is not stored whole)."""
    stored = dict(request.input)
    for name in request.media:
        value = stored.get(name)
        if isinstance(value, str) and len(value) > _INTENT_MEDIA_CHARS:
            stored[name] = f"{value[:40]}… ({len(value)} characters, being uploaded)"
    return stored


def _media_are_urls(request: CreateRequest) -> bool:
    """Whether every media argument given is an http(s) URL (sent as given: no read, no upload)."""
    for name in request.media:
        value = request.input.get(name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and not item.strip().lower().startswith(("http://", "https://")):
                return False
    return True


def _same_create(task: Task, entry: LedgerEntry) -> bool:
    """Whether a task from PiAPI's history is the create ``entry`` recorded (same model, type and input)."""
    if task.model != entry.model or (task.task_type is not None and task.task_type != entry.task_type):
        return False
    sent = task.input or {}
    return bool(entry.input) and all(sent.get(name) == value for name, value in entry.input.items())
