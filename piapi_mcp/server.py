"""The MCP layer: a thin typed adapter that exposes the PiAPI client as tools and resources.

Tools: ``kontext_edit`` (create + wait), ``get_task`` (look up / keep waiting), ``cancel_task``.
Resource template: ``piapi://tasks/{task_id}``. Every tool reports the task id in its first
progress message, so a host that cuts the call off still has it.
"""

import base64
import inspect
import json
import logging
import re
import sqlite3
import typing
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError, UnexpectedToolError
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import (
    CallToolResult,
    ImageContent,
    InputRequiredResult,
    ResourceLink,
    TextContent,
    ToolAnnotations,
)
from pydantic import BaseModel, Field, ValidationError

from piapi_mcp.client import PiAPIClient
from piapi_mcp.config import DEFAULT_DEDUP_SECONDS, DEFAULT_WAIT_SECONDS, MAX_WAIT_SECONDS
from piapi_mcp.errors import (
    AuthenticationError,
    BadRequestError,
    CreateOutcomeUnknownError,
    NotFoundError,
    PiAPIError,
    shown,
)
from piapi_mcp.ledger import (
    UNKNOWN_TASK_PREFIX as UNKNOWN_TASK_PREFIX,  # re-exported: ids of creates whose PiAPI id is unknown
)
from piapi_mcp.ledger import (
    Claim,
    ClaimOutcome,
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
    ResolvedImage,
    Resolver,
    SavedImage,
    make_preview,
    paths_from_roots,
)
from piapi_mcp.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    KONTEXT_MODEL,
    KONTEXT_TASK_TYPE,
    TASK_ID_PATTERN,
    ImageRef,
    KontextInput,
    Task,
    TaskResult,
)
from piapi_mcp.timing import Clock, SystemClock
from piapi_mcp.waiting import HEARTBEAT_SECONDS, DurationEstimator, WaitUpdate, wait_for_task

logger = logging.getLogger("piapi_mcp")
T = typing.TypeVar("T")

SERVER_NAME: Final = "piapi-mcp"
#: Downloads of a call's outputs get at least this long, even when the task finished at the very end
#: of the call's budget; what is not saved by then is listed with its URL and saved on a later get_task.
DOWNLOAD_FLOOR_SECONDS: Final = 10.0
#: How long a create waits for another process's create of the same request to get its PiAPI id.
CLAIM_WAIT_SECONDS: Final = 30.0
#: How often it looks meanwhile.
CLAIM_POLL_SECONDS: Final = 0.25
#: Ledger work runs in worker threads, at most this many at once (SQLite writes one at a time anyway).
LEDGER_THREADS: Final = 8
#: PiAPI's task history is searched this far around an unknown create's time (clocks differ)...
HISTORY_SLACK_SECONDS: Final = 600.0
#: ...at most once per unknown create in this long...
RECOVERY_RETRY_SECONDS: Final = 60.0
#: ...and for at most this many unknown creates per list_tasks.
RECOVERIES_PER_LISTING: Final = 5
#: The longest image argument an intent row stores before the image is resolved (data: URIs are big).
_INTENT_IMAGE_CHARS: Final = 2048

INSTRUCTIONS: Final = (
    "Tools for PiAPI's image generation API. kontext_edit edits a picture from a text instruction "
    "(Flux Kontext). PiAPI tasks take 10-120 s and cost credits: a tool waits up to wait_seconds and, "
    "if the task is not finished by then, returns its task_id with status still running. That is not "
    "an error; call get_task with that task_id (and wait_seconds) to keep waiting. Never create the "
    "same edit again just because it is slow: that pays twice."
)

TaskId = Annotated[
    str,
    Field(
        pattern=TASK_ID_PATTERN,
        description=(
            "The PiAPI task id, as returned by kontext_edit (e.g. '8718d5c1-aae9-4cd5-a243-84eeb1e01117')."
        ),
    ),
]

WaitSeconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]


@dataclass
class ServerSettings:
    """How the MCP layer behaves (the PiAPI client carries the connection settings)."""

    #: Default for ``wait_seconds`` when a call gives none (below hosts' ~60 s cut-off).
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    #: Results say they are simulated (the ``--sandbox`` mode).
    simulated: bool = False
    clock: Clock = field(default_factory=SystemClock)
    estimator: DurationEstimator = field(default_factory=DurationEstimator)
    #: Where created tasks are recorded; ``None`` keeps an in-memory ledger (tests, one-off runs).
    ledger: TaskLedger | None = None
    #: An identical create within this many seconds returns the existing task (0 turns it off).
    dedup_seconds: float = DEFAULT_DEDUP_SECONDS
    #: Folders local images may be read from (besides the client's roots, when those are used).
    allowed_dirs: list[Path] = field(default_factory=list)
    #: Whether the MCP client's roots count as allowed folders (stdio: the client's disk is ours).
    use_client_roots: bool = True
    #: Where finished outputs are saved; ``None`` turns saving off.
    outputs: OutputSaver | None = None
    #: Whether results carry a small thumbnail the model can look at.
    preview: bool = True
    #: Looks up output hosts' addresses before any download; ``None`` uses the system's resolver.
    resolver: Resolver | None = None
    #: Output downloads may reach private, loopback and link-local addresses
    #: (``PIAPI_ALLOW_PRIVATE_OUTPUTS=1``); otherwise only public ones (see :class:`OutputGuard`).
    allow_private_outputs: bool = False
    #: Results name saved files relative to the output folder and give no file:// link (HTTP
    #: transports: the caller's disk is not this machine's).
    relative_output_paths: bool = False


class TaskList(BaseModel):
    """The tasks this server has created, newest first (``list_tasks``'s structured content)."""

    tasks: list[LedgerEntry] = Field(description="Recorded tasks, newest first.")
    ledger: str | None = Field(description="The ledger file on this machine (null when kept in memory).")
    ledger_notice: str | None = Field(
        default=None,
        description="Set when the ledger is not the usual file: it was unreadable and moved aside, or "
        "the state folder is unusable and tasks are kept in memory only.",
    )


class PiAPIMCPServer(MCPServer[Any]):
    """``MCPServer`` whose argument errors read as one sentence naming the field."""

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Run a tool; every failure reaches the caller as one plain-language sentence.

        Arguments the tool does not have are refused before it runs (the SDK would drop them
        silently, and a paid task would be made without them). Validation failures name the
        field; a crash inside the tool says so, never as the SDK's bare "Error executing tool".
        """
        tool = self._tool_manager.get_tool(name)
        if tool is not None and isinstance(arguments, dict):
            known = tool.parameters.get("properties", {})
            unknown = [key for key in arguments if key not in known]
            if unknown:
                raise ToolError(describe_unknown_arguments(name, unknown, list(known)))
        try:
            return await super().call_tool(name, arguments, context)
        except UnexpectedToolError as err:
            crash = err.__cause__
            logger.error("%s crashed", name, exc_info=crash)
            if isinstance(crash, ValidationError):
                raise ToolError(describe_invalid_arguments(name, crash)) from crash
            kind = type(crash).__name__ if crash is not None else "an unknown error"
            raise ToolError(
                f"{name} failed inside piapi-mcp ({kind}); any PiAPI task it created is in list_tasks, "
                "so check there before calling it again."
            ) from crash
        except ToolError as err:
            if isinstance(err.__cause__, ValidationError):
                raise ToolError(describe_invalid_arguments(name, err.__cause__)) from err.__cause__
            raise


def create_server(client: PiAPIClient, settings: ServerSettings | None = None) -> MCPServer[Any]:
    """Build the MCP server over ``client``. Nothing global: call it once per server instance."""
    settings = settings or ServerSettings()
    server = PiAPIMCPServer(SERVER_NAME, instructions=INSTRUCTIONS)
    tasks = _TaskTools(client, settings)

    @model_arguments(KontextInput)
    async def kontext_edit(
        request: KontextInput,
        *,
        ctx: Context[Any, Any],
        wait_seconds: Annotated[
            WaitSeconds,
            Field(
                description=(
                    "How long to wait for the result before returning, in seconds (0 returns at once "
                    "with the task id). An unfinished task is not lost: continue with get_task."
                ),
            ),
        ] = settings.wait_seconds,
        force_new: Annotated[
            bool,
            Field(
                description=(
                    "Create a new task even if the same edit was requested in the last "
                    f"{settings.dedup_seconds:g} s (normally that call's task is returned instead, so a "
                    "retried call does not pay twice)."
                )
            ),
        ] = False,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Edit a picture with PiAPI's Flux Kontext from a plain-language instruction.

        Give the image URL and what to change ("make the sky purple", "remove the car"). Creates a
        PiAPI task (costs credits) and waits up to wait_seconds for the edited image, reporting
        progress; the first progress message carries the task id. If the task is still running when
        the wait ends, the result says so with its task_id: call get_task with that id to keep
        waiting. Do not call kontext_edit again for the same edit; that creates and pays for a
        second task.
        """
        return await tasks.create_and_follow(
            request, ctx, wait_seconds, force_new=force_new, tool="kontext_edit"
        )

    async def get_task(
        task_id: TaskId,
        ctx: Context[Any, Any],
        wait_seconds: Annotated[
            WaitSeconds,
            Field(
                description="Seconds to wait for the task to finish before answering (0, the default, "
                "answers at once)."
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, TaskResult]:
        """Look up any PiAPI task of this account by id: its status, output images and cost.

        Use it to resume a kontext_edit that returned before its task finished, or to fetch a task
        started elsewhere. With wait_seconds > 0 it waits (with progress) until the task finishes
        or the time is up; waiting again is always safe and costs nothing.
        """
        return await tasks.look_up(task_id, ctx, wait_seconds)

    async def cancel_task(task_id: TaskId) -> Annotated[CallToolResult, TaskResult]:
        """Ask PiAPI to cancel a task that has not started yet.

        PiAPI only cancels tasks still pending; once processing, a task runs to the end (and is
        charged). Returns the task's state after the request.
        """
        return await tasks.cancel(task_id)

    async def list_tasks(
        status: Annotated[
            str | None,
            Field(
                max_length=32,
                description="Only tasks whose last known status is this (e.g. 'processing', 'completed').",
            ),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="How many tasks at most (newest first).")] = 20,
    ) -> Annotated[CallToolResult, TaskList]:
        """List the PiAPI tasks this server has created, newest first, with their last known status.

        The list is kept on disk and survives restarts: use it to find a task whose id was lost,
        then get_task to fetch its current state. Statuses shown are as last seen, not live.
        """
        return await tasks.list_recent(status, limit)

    server.add_tool(
        kontext_edit,
        title="Edit an image (Flux Kontext)",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
        ),
    )
    server.add_tool(
        get_task,
        title="Get a PiAPI task",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
        ),
    )
    server.add_tool(
        cancel_task,
        title="Cancel a PiAPI task",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
        ),
    )

    server.add_tool(
        list_tasks,
        title="List recent PiAPI tasks",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )

    @server.resource(
        "piapi://tasks",
        name="piapi-tasks",
        title="PiAPI tasks created here",
        description="The 50 most recent tasks this server created, from its ledger, as JSON.",
        mime_type="application/json",
    )
    async def task_list_resource() -> str:
        """Recent tasks from the ledger, newest first, as JSON."""
        structured = (await tasks.list_recent(None, 50)).structured_content
        return json.dumps(structured, indent=2)

    @server.resource(
        "piapi://tasks/{task_id}",
        name="piapi-task",
        title="PiAPI task",
        description="The current state of a PiAPI task, normalised, as JSON.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        """The current state of a PiAPI task as JSON (the same fields as the tools' structured content)."""
        return await tasks.as_json(task_id)

    @server.resource(
        "piapi://tasks/{task_id}/images/{n}",
        name="piapi-task-image",
        title="Output image of a PiAPI task",
        description="Output image n (from 1) of a task: the saved copy if there is one, else fetched "
        "from PiAPI.",
        mime_type="image/png",
    )
    async def task_image_resource(task_id: str, n: str) -> bytes:
        """The bytes of output image ``n`` of a task."""
        return await tasks.image_bytes(task_id, n)

    return server


class _TaskTools:
    """What the tools do, over the PiAPI client; MCP types appear only at the edges."""

    def __init__(self, client: PiAPIClient, settings: ServerSettings) -> None:
        self.client = client
        self.settings = settings
        self.clock = settings.clock
        self.ledger = settings.ledger or TaskLedger(None, clock=settings.clock)
        self._locks: dict[str, anyio.Lock] = {}
        # Ledger calls get their own threads, so a burst of calls never waits behind image work.
        self._ledger_work = anyio.CapacityLimiter(LEDGER_THREADS)
        #: When each unknown create was last looked for in PiAPI's history (clock.monotonic()).
        self._recovery_tried: dict[str, float] = {}
        self._resolver = ImageResolver(
            upload=self._upload,
            look_up_task=client.get_task,
            confinement=Confinement(settings.allowed_dirs),
        )
        # Two at a time: enough to keep the event loop free, few enough to bound memory under load.
        self._image_work = anyio.CapacityLimiter(2)
        self._guard = OutputGuard(
            settings.resolver,
            base_url=client.base_url,
            upload_url=client.upload_url,
            allow_private=settings.allow_private_outputs,
        )

    async def create_and_follow(
        self, request: KontextInput, ctx: Context[Any, Any], budget: float, *, force_new: bool, tool: str
    ) -> CallToolResult:
        started = self.clock.monotonic()
        task_input = request.model_dump()
        fingerprint = request_fingerprint(KONTEXT_MODEL, KONTEXT_TASK_TYPE, task_input)
        existing: LedgerEntry | None = None
        # Identical calls in this process queue here; other processes meet the ledger's claim instead.
        async with self._request_lock(fingerprint):
            for _ in range(2):  # a second round only when the task found is one PiAPI no longer knows
                outcome = await self._claim(fingerprint, tool, task_input, force_new=force_new)
                existing = outcome.existing
                if existing is None:
                    task = await self._create(outcome.claim, request, task_input, ctx, tool, fingerprint)
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
                    raise ToolError(err.message) from err
                break
            else:
                raise ToolError(
                    "PiAPI no longer knows the earlier tasks for this same edit; call kontext_edit again "
                    "with force_new=true to create it anew."
                )
        if existing is not None and existing.may_exist:
            age = max(0.0, (self.clock.now() - existing.created_at).total_seconds())
            raise ToolError(
                f"The same edit was sent to PiAPI {age:.0f} s ago and its answer never arrived (lost, or "
                "the server stopped mid-create), so PiAPI may already be running it; check list_tasks and "
                "your PiAPI dashboard, and to create it anyway call kontext_edit again with force_new=true."
            )
        if existing is not None:
            age = max(0.0, (self.clock.now() - existing.created_at).total_seconds())
            note = (
                f"The same edit was requested {age:.0f} s ago as task {task.task_id}, so this call reuses "
                "that task instead of paying for a new one (pass force_new=true to create another)."
            )
            return await self._follow(
                task, ctx, started=started, created_at=started - self._age(task), budget=budget, reused=note
            )
        return await self._follow(
            task, ctx, started=started, created_at=self.clock.monotonic(), budget=budget
        )

    async def _claim(
        self, fingerprint: str, tool: str, task_input: dict[str, Any], *, force_new: bool
    ) -> ClaimOutcome:
        """Claim the create in the ledger, or find the same request's entry (waiting out a create in flight).

        An ``unknown`` entry met here is looked for in PiAPI's task history first: a create that did
        happen is then reused, and only one that cannot be found asks for ``force_new``.
        """
        within = 0.0 if force_new else max(0.0, self.settings.dedup_seconds)
        intent = _intent_input(task_input)
        deadline = self.clock.monotonic() + CLAIM_WAIT_SECONDS
        while True:
            try:
                outcome = await self._ledger_raw(
                    lambda: self.ledger.claim(
                        fingerprint,
                        tool=tool,
                        model=KONTEXT_MODEL,
                        task_type=KONTEXT_TASK_TYPE,
                        task_input=intent,
                        within_seconds=within,
                    )
                )
            except (sqlite3.Error, OSError):
                logger.warning("task ledger unusable; the create is sent unrecorded", exc_info=True)
                return ClaimOutcome(None, None)
            if not outcome.in_flight:
                break
            if self.clock.monotonic() >= deadline:
                raise ToolError(
                    "The same edit is being created right now by another piapi-mcp process sharing this "
                    "state folder; call kontext_edit again in a few seconds to get its task (or pass "
                    "force_new=true to create another)."
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
        request: KontextInput,
        task_input: dict[str, Any],
        ctx: Context[Any, Any],
        tool: str,
        fingerprint: str,
    ) -> Task:
        """Send the create under ``claim``; its intent row becomes the task, is dropped, or stays unknown."""

        async def settle(write: Callable[[Claim], object]) -> None:
            if claim is not None:
                held = claim
                with anyio.CancelScope(shield=True):
                    await self._write_ledger(lambda: write(held))

        try:
            task_input["image"] = (await self._resolve_image(request.image, ctx)).url
        except BaseException:
            await settle(self.ledger.release_claim)
            raise
        if claim is not None and task_input["image"] != request.image:
            held = claim
            await self._write_ledger(lambda: self.ledger.set_claim_input(held, task_input))
        try:
            task = await self.client.create_task(KONTEXT_MODEL, KONTEXT_TASK_TYPE, task_input)
        except CreateOutcomeUnknownError as err:
            # Remember the attempt: an identical retry must not silently pay a second time.
            await settle(self.ledger.mark_unknown)
            raise ToolError(err.message) from err
        except PiAPIError as err:
            await settle(self.ledger.release_claim)
            raise ToolError(f"{err.message} No task was created.") from err
        except BaseException:
            # Cut off (or broken) while the create may be on the wire: PiAPI may have made it.
            await settle(self.ledger.mark_unknown)
            raise
        logger.info("created PiAPI task %s (%s)", task.task_id, task.task_type)
        if claim is not None:
            await settle(lambda held: self.ledger.resolve_claim(held, task))
        else:
            await self._write_ledger(
                lambda: self.ledger.record_created(
                    task, tool=tool, task_input=task_input, fingerprint=fingerprint
                ),
                key=task.task_id,
            )
        return task

    async def _recover(self, entry: LedgerEntry) -> LedgerEntry | None:
        """Find an ``unknown`` create in PiAPI's task history by its time and input; record and return it."""
        if not self.client.has_api_key:
            return None
        now = self.clock.monotonic()
        tried = self._recovery_tried.get(entry.task_id)
        if tried is not None and now - tried < RECOVERY_RETRY_SECONDS:
            return None
        moment = entry.created_at.timestamp()
        try:
            found = await self.client.task_history(
                start_time=moment - HISTORY_SLACK_SECONDS, end_time=moment + HISTORY_SLACK_SECONDS
            )
        except PiAPIError as err:
            logger.info("could not search PiAPI's task history for %s: %s", entry.task_id, err.message)
            return None
        # Searched and not found: PiAPI's history may lag, so look again later, not at every call.
        self._recovery_tried[entry.task_id] = now
        candidates = [task for task in found if _valid_task_id(task.task_id) and _same_create(task, entry)]
        known = await self._ledger(lambda: self.ledger.known_ids([task.task_id for task in candidates]))
        candidates = [task for task in candidates if task.task_id not in (known or set())]
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

    async def _resolve_image(self, value: str, ctx: Context[Any, Any]) -> ResolvedImage:
        """An image argument as an http(s) URL for PiAPI; refusals become one-sentence tool errors."""
        local = not value.strip().lower().startswith(("http://", "https://", "data:", "piapi://"))
        roots = await _client_roots(ctx) if local and self.settings.use_client_roots else []
        try:
            return await self._resolver.resolve(value, roots=roots)
        except ImageInputError as err:
            raise ToolError(f"{err} Nothing was uploaded and no task was created.") from err
        except PiAPIError as err:
            raise ToolError(f"{err.message} No task was created.") from err

    async def _upload(self, file_name: str, data: bytes) -> str:
        try:
            url = await self.client.upload_file(file_name, data)
        except AuthenticationError as err:
            if err.status_code != 403:
                raise
            said = f" ({err.upstream_message})" if err.upstream_message else ""
            raise ImageInputError(
                f"PiAPI refused the upload{said}: file uploads need PiAPI's Creator plan or higher. Give "
                "the image as a public http(s) URL instead."
            ) from err
        logger.info("uploaded %s (%d bytes) for PiAPI", file_name, len(data))
        return url

    @asynccontextmanager
    async def _request_lock(self, fingerprint: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(fingerprint, anyio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._locks.pop(fingerprint, None)

    async def _ledger_raw(self, call: Callable[[], T], *, key: str | None = None) -> T:
        """Run a ledger call in a worker thread (SQLite blocks); calls with the same ``key`` run in order."""
        if key is None:
            return await anyio.to_thread.run_sync(call, limiter=self._ledger_work)
        async with self._request_lock(f"ledger:{key}"):
            return await anyio.to_thread.run_sync(call, limiter=self._ledger_work)

    async def _ledger(self, call: Callable[[], T], *, key: str | None = None) -> T | None:
        """:meth:`_ledger_raw`, with ledger trouble (disk full, permissions) logged, never failing a call."""
        try:
            return await self._ledger_raw(call, key=key)
        except (sqlite3.Error, OSError):
            logger.warning("could not use the task ledger", exc_info=True)
            return None

    async def _write_ledger(self, write: Callable[[], object], *, key: str | None = None) -> None:
        """Write the ledger off the event loop, in order per ``key`` (a task id); trouble is only logged."""
        await self._ledger(write, key=key)

    async def list_recent(self, status: str | None, limit: int) -> CallToolResult:
        try:
            entries = await self._ledger_raw(lambda: self.ledger.recent(status=status, limit=limit))
        except (sqlite3.Error, OSError) as err:
            raise ToolError(f"The task ledger could not be read ({type(err).__name__}).") from err
        unknown = [entry for entry in entries if entry.may_exist][:RECOVERIES_PER_LISTING]
        recovered = [found for entry in unknown if (found := await self._recover(entry)) is not None]
        if recovered:
            entries = await self._ledger_raw(lambda: self.ledger.recent(status=status, limit=limit))
        notice = self.ledger.notice
        listing = TaskList(
            tasks=entries, ledger=str(self.ledger.path) if self.ledger.path else None, ledger_notice=notice
        )
        if entries:
            lines = [
                f"{e.task_id}  {e.status:<10}  {e.created_at:%Y-%m-%d %H:%M:%S} UTC  "
                f"{shown(e.input.get('prompt', ''), 60)}" + (f"  ({e.note})" if e.note else "")
                for e in entries
            ]
            text = f"{len(entries)} task(s), newest first:\n" + "\n".join(lines)
        else:
            text = "No tasks recorded" + (f" with status {status}." if status else " yet.")
        if notice:
            text += f"\n{notice}"
        return CallToolResult(
            content=[TextContent(type="text", text=text)],
            structured_content=listing.model_dump(mode="json"),
        )

    async def look_up(self, task_id: str, ctx: Context[Any, Any], wait_seconds: float) -> CallToolResult:
        started = self.clock.monotonic()
        if task_id.startswith(UNKNOWN_TASK_PREFIX):
            entry = await self._ledger(lambda: self.ledger.get(task_id))
            if entry is not None:
                raise ToolError(
                    f"{task_id} is this server's record of a create whose PiAPI id never arrived, not a "
                    "PiAPI task id; list_tasks shows it, and your PiAPI dashboard whether PiAPI made it."
                )
        task = await self._get(task_id)
        if task.done or wait_seconds <= 0:
            # No wait, but saving outputs may take a while: the heartbeat keeps the host informed.
            async with _ProgressReporter(ctx, self.clock, started, task.task_id).running() as progress:
                progress.phase = _saving_phase(task)
                return await self._result(
                    task, elapsed=self._age(task), eta=None, deadline=started + wait_seconds
                )
        return await self._follow(
            task, ctx, started=started, created_at=started - self._age(task), budget=wait_seconds
        )

    async def cancel(self, task_id: str) -> CallToolResult:
        try:
            await self.client.cancel_task(task_id)
        except BadRequestError as err:
            # A retried DELETE whose first answer was lost finds the task already cancelled.
            task = await self._get(task_id)
            if task.status == CANCELLED:
                return await self._result(task, elapsed=None, eta=None)
            await self._write_ledger(lambda: self.ledger.record_seen(task), key=task.task_id)
            said = f" (PiAPI said: {err.upstream_message})" if err.upstream_message else ""
            raise ToolError(
                f"PiAPI could not cancel task {task_id}{said}; PiAPI only cancels tasks that are still "
                "pending, and one already processing runs to the end. Check it with get_task."
            ) from err
        except PiAPIError as err:
            raise ToolError(err.message) from err
        task = await self._get(task_id)
        return await self._result(task, elapsed=None, eta=None)

    async def as_json(self, task_id: str) -> str:
        if not _valid_task_id(task_id):
            raise ResourceError(f"{task_id!r} is not a PiAPI task id.")
        try:
            task = await self.client.get_task(task_id)
        except PiAPIError as err:
            raise ResourceError(err.message) from err
        return self._task_result(task, elapsed=None, eta=None).model_dump_json(indent=2)

    async def image_bytes(self, task_id: str, n: str) -> bytes:
        if not _valid_task_id(task_id) or not n.isdigit() or int(n) < 1:
            raise ResourceError(f"piapi://tasks/{task_id}/images/{n} names no task image.")
        index = int(n)
        saver = self.settings.outputs
        if saver is not None and (saved := saver.existing(task_id, index)) is not None:
            with suppress(ImageInputError):  # gone or swapped meanwhile: fetch it again
                return saver.read_saved(saved)
        try:
            task = await self.client.get_task(task_id)
        except PiAPIError as err:
            raise ResourceError(err.message) from err
        if not 1 <= index <= len(task.images):
            raise ResourceError(
                f"Task {task_id} has {len(task.images)} output image(s); there is no image {n}."
            )
        fetcher = saver or OutputSaver(self.client.http_client, None)
        deadline = self.clock.monotonic() + fetcher.download_seconds
        try:
            # The same guarded path as saving: public addresses only, allowed formats only.
            return await fetcher.download(task.images[index - 1], self._guard, self.clock, deadline=deadline)
        except ImageInputError as err:
            raise ResourceError(f"Image {n} of task {task_id}: {err}.") from err

    async def _get(self, task_id: str) -> Task:
        try:
            task = await self.client.get_task(task_id)
        except NotFoundError as err:
            # Never "pending" forever: a task PiAPI no longer knows is unknown, and never reused.
            known = await self._ledger(lambda: self.ledger.mark_gone(task_id), key=task_id)
            marked = " This server's task list now shows it as unknown." if known else ""
            raise ToolError(f"{err.message}{marked}") from err
        except PiAPIError as err:
            raise ToolError(err.message) from err
        return task

    def _age(self, task: Task) -> float:
        if task.created_at is None:
            return 0.0
        return max(0.0, (self.clock.now() - task.created_at).total_seconds())

    async def _follow(
        self,
        task: Task,
        ctx: Context[Any, Any],
        *,
        started: float,
        created_at: float,
        budget: float,
        reused: str | None = None,
    ) -> CallToolResult:
        """Report the id at once, then wait until done or out of budget; never lose the id.

        Progress keeps flowing at least every few seconds whatever the call is doing (a slow poll,
        downloads), so hosts that reset their time-out on progress do not cut it.
        """
        async with _ProgressReporter(ctx, self.clock, started, task.task_id).running() as progress:
            return await self._follow_reported(
                task, progress, started=started, created_at=created_at, budget=budget, reused=reused
            )

    async def _follow_reported(
        self,
        task: Task,
        progress: "_ProgressReporter",
        *,
        started: float,
        created_at: float,
        budget: float,
        reused: str | None,
    ) -> CallToolResult:
        await progress.send(
            f"PiAPI task {task.task_id} is {task.status}; waiting up to {budget:g} s. If this call is cut "
            f'off, the task keeps running: get it with get_task(task_id="{task.task_id}").'
        )
        if task.done:
            progress.phase = _saving_phase(task)
            return await self._result(
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
            )
        except anyio.get_cancelled_exc_class():
            logger.info("call cancelled by the client; PiAPI task %s left running", task.task_id)
            raise
        except PiAPIError as err:
            raise ToolError(
                f"{err.message} (PiAPI task {task.task_id} was created; check it later with get_task.)"
            ) from err
        except Exception as err:
            logger.exception("unexpected error while waiting for PiAPI task %s", task.task_id)
            raise ToolError(
                f"Something went wrong while waiting for PiAPI task {task.task_id}; the task itself is "
                f'safe on PiAPI: get it with get_task(task_id="{task.task_id}").'
            ) from err
        notes = [reused] if reused else []
        if outcome.last_error is not None and not outcome.task.done:
            notes.append(f"The last check on it failed: {outcome.last_error.message}")
        progress.phase = _saving_phase(outcome.task)
        return await self._result(
            outcome.task,
            elapsed=outcome.elapsed,
            eta=outcome.eta,
            note="\n".join(notes) or None,
            reused=reused is not None,
            deadline=started + budget,
        )

    def _task_result(
        self,
        task: Task,
        *,
        elapsed: float | None,
        eta: float | None,
        reused: bool = False,
        saved: Sequence[SavedImage] = (),
    ) -> TaskResult:
        done = task.done
        by_url = {image.url: image for image in saved}
        return TaskResult(
            task_id=task.task_id,
            model=task.model,
            task_type=task.task_type,
            status=task.status,
            done=done,
            images=[_image_ref(url, by_url.get(url), self._shown_relative_to()) for url in task.images],
            usage=task.usage,
            error=task.error if task.status == FAILED else None,
            created_at=task.created_at,
            started_at=task.started_at,
            ended_at=task.ended_at,
            elapsed_seconds=(
                task.duration_seconds if done and task.duration_seconds is not None else elapsed
            ),
            eta_seconds=None if done else eta,
            next=None if done else _resume_hint(task.task_id),
            simulated=self.settings.simulated,
            reused=reused,
        )

    def _shown_relative_to(self) -> Path | None:
        """The folder saved paths are shown relative to (HTTP callers), or ``None`` for absolute paths."""
        saver = self.settings.outputs
        if not self.settings.relative_output_paths or saver is None or saver.folder is None:
            return None
        return saver.folder

    async def _outputs(self, task: Task, deadline: float) -> list[SavedImage]:
        """Save a completed task's outputs (or fetch some for previews) until ``deadline``; never raises."""
        if task.status != COMPLETED or not task.images:
            return []
        saver = self.settings.outputs
        if saver is None or (saver.folder is None and not self.settings.preview):
            return []
        previews = MAX_PREVIEWS if self.settings.preview else 0
        return await saver.save(task, self._guard, self.clock, deadline=deadline, previews=previews)

    async def _result(
        self,
        task: Task,
        *,
        elapsed: float | None,
        eta: float | None,
        note: str | None = None,
        reused: bool = False,
        deadline: float | None = None,
    ) -> CallToolResult:
        # Downloads stop at the call's deadline (on the clock), but get at least a short floor.
        floor = self.clock.monotonic() + DOWNLOAD_FLOOR_SECONDS
        saved = await self._outputs(task, floor if deadline is None else max(deadline, floor))
        # The one place a state reaches the caller, so the one place it is written to the ledger.
        paths = [str(image.path) for image in saved if image.path is not None]
        await self._write_ledger(
            lambda: self.ledger.record_seen(task, local_paths=paths or None), key=task.task_id
        )
        structured = self._task_result(task, elapsed=elapsed, eta=eta, reused=reused, saved=saved)
        text = _summary(structured)
        if note:
            text += f"\n{note}"
        if structured.simulated:
            text += "\n(Simulated by piapi-mcp's built-in PiAPI sandbox: no credits were used.)"
        content: list[Any] = [TextContent(type="text", text=text)]
        if self.settings.preview:
            for copy in saved[:MAX_PREVIEWS]:
                source = copy.path or copy.data
                # Pillow works outside the GIL: other calls' polls keep flowing meanwhile.
                preview = (
                    await anyio.to_thread.run_sync(make_preview, source, copy.kind, limiter=self._image_work)
                    if source is not None
                    else None
                )
                if preview is not None:
                    data, mime_type = preview
                    content.append(
                        ImageContent(
                            type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime_type
                        )
                    )
        by_url = {copy.url: copy for copy in saved}
        for index, image in enumerate(structured.images, start=1):
            output = by_url.get(image.url)
            known = output.kind.mime_type if output is not None and output.kind is not None else None
            content.append(
                ResourceLink(
                    type="resource_link",
                    name=f"{task.task_id}-image-{index}",
                    title=f"Output image {index} of PiAPI task {task.task_id}",
                    uri=image.url,
                    mime_type=known or _image_mime_type(image.url),
                )
            )
            if output is not None and output.path is not None and not self.settings.relative_output_paths:
                content.append(
                    ResourceLink(
                        type="resource_link",
                        name=f"{task.task_id}-image-{index}-file",
                        title=f"Saved copy of output image {index}",
                        uri=output.path.as_uri(),
                        mime_type=known or _image_mime_type(str(output.path)),
                    )
                )
        content.append(
            ResourceLink(
                type="resource_link",
                name=f"task-{task.task_id}",
                title=f"PiAPI task {task.task_id}",
                uri=f"piapi://tasks/{task.task_id}",
                mime_type="application/json",
            )
        )
        return CallToolResult(
            content=content,
            structured_content=structured.model_dump(mode="json"),
            is_error=task.status == FAILED,
        )


class _ProgressReporter:
    """Sends progress notifications whose ``progress`` always increases (elapsed seconds).

    While :meth:`running`, a heartbeat repeats the task's phase whenever nothing was sent for
    :data:`HEARTBEAT_SECONDS`, whatever the call is busy with.
    """

    def __init__(self, ctx: Context[Any, Any], clock: Clock, started: float, task_id: str) -> None:
        self._ctx = ctx
        self._clock = clock
        self._started = started
        self._task_id = task_id
        self._last = -1.0
        self._last_sent_at = clock.monotonic()
        self._sending = anyio.Lock()
        #: What the task is doing, as the heartbeat says it (its last status, or the call's step).
        self.phase = "pending"

    @asynccontextmanager
    async def running(self) -> AsyncIterator["_ProgressReporter"]:
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
                    f"{self._clock.monotonic() - self._started:.0f} s elapsed"
                )

    async def send(self, message: str, total: float | None = None) -> None:
        """One progress notification; a client gone away never fails the call."""
        async with self._sending:  # the heartbeat and the call must not interleave their values
            progress = max(round(self._clock.monotonic() - self._started, 1), round(self._last + 0.1, 1))
            self._last = progress
            self._last_sent_at = self._clock.monotonic()
            try:
                await self._ctx.report_progress(
                    progress, total if total and total > progress else None, message
                )
            except anyio.get_cancelled_exc_class():
                raise
            except Exception:  # a client gone away must not fail the task it created
                logger.debug("progress notification could not be sent", exc_info=True)


def _saving_phase(task: Task) -> str:
    """What the heartbeat says while a result is put together (downloads, previews)."""
    return f"{task.status}, saving its outputs" if task.status == COMPLETED else task.status


def _progress_message(update: WaitUpdate) -> str:
    task = update.task
    text = f"PiAPI task {task.task_id}: {task.status}, {update.elapsed:.0f} s elapsed"
    if not task.done and update.eta is not None:
        text += f", about {update.eta:.0f} s left" if update.eta >= 1 else ", finishing any moment"
    return text


def _total(update: WaitUpdate) -> float | None:
    return None if update.eta is None else update.elapsed + update.eta


def _resume_hint(task_id: str) -> str:
    return (
        f'Still running on PiAPI. Call get_task with {{"task_id": "{task_id}", "wait_seconds": '
        f"{DEFAULT_WAIT_SECONDS:g}}} to wait for the result; do not create the edit again."
    )


def _summary(result: TaskResult) -> str:
    tid = result.task_id
    if result.status == COMPLETED:
        took = f" in {result.elapsed_seconds:.0f} s" if result.elapsed_seconds is not None else ""
        if not result.images:
            return f"PiAPI task {tid} completed{took}, but PiAPI returned no image URL."
        urls = "\n".join(image.url for image in result.images)
        count = "1 image" if len(result.images) == 1 else f"{len(result.images)} images"
        return f"PiAPI task {tid} completed{took}: {count}.\n{urls}"
    if result.status == FAILED:
        reason = result.error.message if result.error else "no reason given"
        code = f" (code {result.error.code})" if result.error and result.error.code else ""
        return (
            f"PiAPI task {tid} failed: {reason}{code}. Nothing was produced; try again with a "
            "different prompt or image."
        )
    if result.status == CANCELLED:
        return f"PiAPI task {tid} was cancelled before it ran, so it produced nothing."
    if result.done:
        return f"PiAPI task {tid} ended with status {result.status}."
    elapsed = f" after {result.elapsed_seconds:.0f} s" if result.elapsed_seconds is not None else ""
    eta = f" (about {result.eta_seconds:.0f} s left)" if result.eta_seconds is not None else ""
    return (
        f"PiAPI task {tid} is still {result.status}{elapsed}{eta}. It is not lost: call get_task "
        f'with task_id "{tid}" and wait_seconds {DEFAULT_WAIT_SECONDS:g} to get the result.'
    )


async def _client_roots(ctx: Context[Any, Any]) -> list[Path]:
    """The local folders the MCP client declared as roots; none when it has none or cannot say."""
    session = ctx.request_context.session
    capabilities = session.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return []
    try:
        with anyio.fail_after(5), warnings.catch_warnings():
            # Roots are deprecated in the 2026-07-28 protocol, but clients of the 2025 era use them.
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            listed = await session.list_roots()
    except (MCPError, TimeoutError):
        return []
    return paths_from_roots([str(root.uri) for root in listed.roots])


def _image_ref(url: str, saved: SavedImage | None, relative_to: Path | None = None) -> ImageRef:
    """One output as results show it; with ``relative_to``, its saved path relative to that folder."""
    if saved is None:
        return ImageRef(url=url)
    path = saved.path
    if path is not None and relative_to is not None:
        path = Path(path.name) if path.parent.resolve() == relative_to.resolve() else None
    return ImageRef(url=url, path=str(path) if path else None, save_error=saved.error)


def _image_mime_type(url: str) -> str:
    path = url.split("?", 1)[0].lower()
    for suffix, mime in (
        (".jpg", "image/jpeg"),
        (".jpeg", "image/jpeg"),
        (".webp", "image/webp"),
        (".gif", "image/gif"),
    ):
        if path.endswith(suffix):
            return mime
    return "image/png"


def _intent_input(task_input: dict[str, Any]) -> dict[str, Any]:
    """The input an intent row stores before its image is resolved (a data: URI is not stored whole)."""
    image = str(task_input.get("image", ""))
    if len(image) <= _INTENT_IMAGE_CHARS:
        return task_input
    return {**task_input, "image": f"{image[:40]}… ({len(image)} characters, being uploaded)"}


def _same_create(task: Task, entry: LedgerEntry) -> bool:
    """Whether a task from PiAPI's history is the create ``entry`` recorded (same model, type and input)."""
    if task.model != entry.model or (task.task_type is not None and task.task_type != entry.task_type):
        return False
    sent = task.input or {}
    return bool(entry.input) and all(sent.get(name) == value for name, value in entry.input.items())


def _valid_task_id(task_id: str) -> bool:
    return re.fullmatch(TASK_ID_PATTERN, task_id) is not None


# --- arguments ------------------------------------------------------------------------------------

_PATTERN_MEANINGS: Final = {
    r"\S": "must not be blank",
    TASK_ID_PATTERN: "must be a PiAPI task id (letters, digits, '-', '_' or '.')",
}


def describe_invalid_arguments(tool: str, error: ValidationError) -> str:
    """One sentence naming each bad argument of ``tool`` and what it must be."""
    problems = [_describe_problem(tool, err) for err in error.errors()]
    return f"Invalid arguments for {tool}: {'; '.join(problems)}. Fix and call {tool} again."


def describe_unknown_arguments(tool: str, unknown: Sequence[str], known: Sequence[str]) -> str:
    """One sentence refusing arguments ``tool`` does not have, naming the ones it has."""
    names = ", ".join(shown(name, 40) for name in unknown[:8])
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    plural = "is not an argument" if len(unknown) == 1 else "are not arguments"
    return (
        f"{names}{more} {plural} of {tool}, so nothing was sent; its arguments are "
        f"{', '.join(known) or 'none'}. Call {tool} again without {'it' if len(unknown) == 1 else 'them'}."
    )


def _describe_problem(tool: str, err: Any) -> str:
    name = ".".join(str(part) for part in err.get("loc", ())) or "arguments"
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    got = shown(err.get("input"), 60)
    if kind == "missing":
        return f"`{name}` is required"
    if kind == "string_too_short":
        return f"`{name}` must not be empty"
    if kind == "string_too_long":
        return f"`{name}` must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        meaning = _PATTERN_MEANINGS.get(ctx.get("pattern", ""), "is not in an accepted form")
        return f"`{name}` {meaning} (got {got})"
    if kind in ("greater_than_equal", "greater_than"):
        return f"`{name}` must be at least {ctx.get('ge', ctx.get('gt'))} (got {got})"
    if kind in ("less_than_equal", "less_than"):
        return f"`{name}` must be at most {ctx.get('le', ctx.get('lt'))} (got {got})"
    if kind.startswith("int_"):
        return f"`{name}` must be a whole number (got {got})"
    if kind.startswith("float_"):
        return f"`{name}` must be a number (got {got})"
    if kind.startswith("string_"):
        return f"`{name}` must be a string (got {got})"
    if kind == "extra_forbidden":
        return f"`{name}` is not an argument of {tool}"
    return f"`{name}`: {err.get('msg', 'invalid value')}"


def model_arguments(
    model: type[BaseModel],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Expose ``model``'s fields as the tool's top-level arguments.

    The decorated function takes the validated model as its first parameter; its other
    parameters (controls such as ``wait_seconds``, and the MCP ``Context``) stay as they are.
    The SDK builds the tool's ``inputSchema`` from the resulting signature, so the schema is the
    model's, constraints and descriptions included, with nothing copied by hand.
    """

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = list(inspect.signature(fn).parameters.values())[1:]
        fields = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[info.annotation, info],
                default=inspect.Parameter.empty if info.is_required() else info.default,
            )
            for name, info in model.model_fields.items()
        ]
        controls = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]) for p in own]
        control_names = {p.name for p in controls}

        async def wrapper(**kwargs: Any) -> Any:
            extra = {name: kwargs.pop(name) for name in list(kwargs) if name in control_names}
            return await fn(model.model_validate(kwargs), **extra)

        signature = inspect.Signature(fields + controls, return_annotation=hints["return"])
        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
            "return": signature.return_annotation
        }
        return wrapper

    return decorate
