"""The MCP layer: a thin typed adapter over the task workflow.

One tool per curated catalog entry (generated from its spec: the input schema is the spec's input
model, or the tool's own arguments when it fronts several specs), ``run_task`` for any PiAPI
(model, task_type), plus ``get_task``, ``cancel_task`` and ``list_tasks``; resources
``piapi://models`` and ``piapi://models/{model}/{task_type}`` (the catalog, read on demand rather
than paid for in every ``tools/list``), ``piapi://tasks``, ``piapi://tasks/{task_id}`` and
``piapi://tasks/{task_id}/outputs/{n}``; and the task card ``ui://piapi-mcp/task.html``, an MCP App
that every task tool links (:mod:`piapi_mcp.card`). Every tool reports the
task id in its first progress message, so a host that cuts the call off still has it. What the
tools do is :class:`~piapi_mcp.tasks.TaskService`'s; how results read is ``piapi_mcp.render``'s.
"""

import copy
import functools
import json
import logging
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Final

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
)
from mcp.server.mcpserver.utilities.func_metadata import FuncMetadata, func_metadata
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field, ValidationError

from piapi_mcp.arguments import describe_invalid_arguments, lean_schema, model_arguments
from piapi_mcp.card import task_card_link
from piapi_mcp.catalog import CATALOG, TaskSpec
from piapi_mcp.client import PiAPIClient
from piapi_mcp.config import MAX_WAIT_SECONDS
from piapi_mcp.errors import shown
from piapi_mcp.ledger import (
    UNKNOWN_TASK_PREFIX as UNKNOWN_TASK_PREFIX,  # re-exported: ids of creates whose PiAPI id is unknown
)
from piapi_mcp.mcp_server import INSTRUCTIONS as INSTRUCTIONS  # re-exported
from piapi_mcp.mcp_server import OUTPUT_RESOURCE, OUTPUT_RESOURCE_MIME_TYPE, PiAPIMCPServer
from piapi_mcp.mcp_server import SERVER_NAME as SERVER_NAME  # re-exported
from piapi_mcp.mcp_server import create_server as create_server  # re-exported
from piapi_mcp.media import local_paths_from_roots
from piapi_mcp.models import MODEL_PATTERN, TASK_ID_PATTERN, TASK_TYPE_PATTERN, AccountInfo, TaskResult
from piapi_mcp.prompts import add_prompts
from piapi_mcp.render import Renderer, TaskList
from piapi_mcp.tasks import (
    DOWNLOAD_FLOOR_SECONDS as DOWNLOAD_FLOOR_SECONDS,  # re-exported for tests and benchmarks
)
from piapi_mcp.tasks import Call, CallFailed, CreateRequest, ServerSettings, TaskNotFound, TaskService
from piapi_mcp.wording import seconds

logger = logging.getLogger("piapi_mcp")

TaskId = Annotated[str, Field(pattern=TASK_ID_PATTERN, description="A PiAPI task id, as a tool returned it.")]

WaitSeconds = Annotated[float, Field(ge=0, le=MAX_WAIT_SECONDS)]
#: How long a creating tool waits (its default is the server's setting).
CreateWait = Annotated[WaitSeconds, Field(description="Seconds to wait; 0 answers at once with the id.")]
#: The longest ``input`` run_task takes, as compact JSON (room for a 10 MB file as a data: URI).
MAX_RUN_INPUT_CHARS: Final = 15_000_000

#: One catalog entry; ``{+model}`` takes the slash in names such as 'Qubico/flux1-dev' (plain or %2F).
MODEL_RESOURCE: Final = "piapi://models/{+model}/{task_type}"

#: Tool annotations, each hint given only where it differs from MCP's default (readOnly false,
#: destructive true, idempotent false, open world true): hosts read a missing hint as the default.
#: Creating tools make new outputs and delete nothing, but each call pays for a new task.
CREATES: Final = ToolAnnotations(destructive_hint=False)
READS: Final = ToolAnnotations(read_only_hint=True)
CANCELS: Final = ToolAnnotations(idempotent_hint=True)
READS_LOCAL: Final = ToolAnnotations(read_only_hint=True, open_world_hint=False)

__all__ = ["SERVER_NAME", "PiAPIMCPServer", "ServerSettings", "TaskList", "create_server", "populate"]


@contextmanager
def _as_tool_error() -> Iterator[None]:
    """The workflow's one-sentence failures, as MCP tool errors (the one place they are mapped)."""
    try:
        yield
    except CallFailed as err:
        raise ToolError(str(err)) from err


@contextmanager
def _as_resource_error() -> Iterator[None]:
    """The workflow's one-sentence failures, as MCP resource errors."""
    try:
        yield
    except TaskNotFound as err:
        raise ResourceNotFoundError(str(err)) from err
    except CallFailed as err:
        raise ResourceError(str(err)) from err


@functools.cache
def _task_result_output() -> FuncMetadata:
    """How the SDK validates and publishes a tool result that is a :class:`TaskResult` (derived once)."""

    async def returns_task_result() -> Annotated[CallToolResult, TaskResult]:
        raise NotImplementedError

    return func_metadata(returns_task_result)


def _returns_task_result(server: MCPServer[Any], name: str) -> None:
    """Tool ``name``'s result is a :class:`TaskResult`: validated and published as such.

    Deriving the JSON schema of the task result takes several milliseconds; every task tool has the
    same one, so it is derived once rather than once per tool, which shortens the server's start
    (the SDK reads these two fields live).
    """
    tool = server._tool_manager.get_tool(name)
    assert tool is not None
    shared = _task_result_output()
    tool.fn_metadata.output_model = shared.output_model
    tool.fn_metadata.output_schema = copy.deepcopy(shared.output_schema)


def populate(server: PiAPIMCPServer, client: PiAPIClient, settings: ServerSettings) -> None:
    """Register on ``server`` the tools, resources and prompts that work over ``client``.

    :func:`~piapi_mcp.mcp_server.create_server` calls it, at once or on the server's first need.
    """

    def card() -> dict[str, Any] | None:
        return task_card_link() if settings.task_card else None

    service = TaskService(client, settings)
    renderer = Renderer(settings)

    def call_of(ctx: Context[Any, Any]) -> Call:
        if not settings.use_client_roots:
            return Call(notify=ctx.report_progress)
        no_roots = _why_no_roots(ctx)
        roots = None if no_roots else (lambda: _client_roots(ctx))
        return Call(notify=ctx.report_progress, roots=roots, no_roots=no_roots)

    for spec in CATALOG.tools():
        assert spec.tool is not None
        server.add_tool(
            _creation_tool(spec, service, renderer, settings, call_of),
            name=spec.tool.name,
            title=spec.tool.title,
            description=spec.tool.description,
            annotations=CREATES,
            meta=card(),
        )
        _returns_task_result(server, spec.tool.name)

    async def run_task(
        model: Annotated[
            str, Field(pattern=MODEL_PATTERN, description="PiAPI model, e.g. 'Qubico/flux1-dev'.")
        ],
        task_type: Annotated[
            str, Field(pattern=TASK_TYPE_PATTERN, description="PiAPI task type, e.g. 'txt2img'.")
        ],
        input: Annotated[
            dict[str, Any], Field(description="The task's input: see piapi://models/{model}/{task_type}.")
        ],
        ctx: Context[Any, Any],
        wait_seconds: CreateWait = settings.wait_seconds,
        force_new: Annotated[bool, Field(description=_force_new_description(settings))] = False,
    ) -> CallToolResult:
        with _as_tool_error():
            request = _run_request(model, task_type, input)
            outcome = await service.create_and_wait(
                request, call_of(ctx), budget=wait_seconds, force_new=force_new
            )
        return await renderer.result(outcome)

    server.add_tool(
        run_task,
        title="Run any PiAPI task",
        description=(
            "Run any PiAPI model and task type (paid). Read piapi://models first (what exists, its "
            "status), then piapi://models/{model}/{task_type} (its input, an example); an unlisted pair "
            "is sent as given."
        ),
        annotations=CREATES,
        meta=card(),
    )
    _returns_task_result(server, "run_task")

    async def get_task(
        task_id: TaskId,
        ctx: Context[Any, Any],
        wait_seconds: Annotated[WaitSeconds, Field(description="Seconds to wait for it to finish.")] = 0,
    ) -> CallToolResult:
        """Look up any PiAPI task of this account by id, waiting up to wait_seconds for it to finish."""
        with _as_tool_error():
            outcome = await service.look_up(task_id, call_of(ctx), wait_seconds)
        return await renderer.result(outcome)

    async def cancel_task(task_id: TaskId) -> CallToolResult:
        """Ask PiAPI to cancel a task that has not started yet."""
        with _as_tool_error():
            outcome = await service.cancel(task_id)
        return await renderer.result(outcome)

    async def list_tasks(
        status: Annotated[
            str | None, Field(max_length=32, description="Only tasks last seen with this status.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="How many tasks at most.")] = 20,
    ) -> Annotated[CallToolResult, TaskList]:
        """List the tasks this server created, newest first, with their last known status."""
        with _as_tool_error():
            listing = await service.list_recent(status, limit)
        text, structured = renderer.listing(listing, status)
        return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)

    async def get_account() -> Annotated[CallToolResult, AccountInfo]:
        """The PiAPI account's balance, credits and plan, and what this server spent in the last 24 h."""
        with _as_tool_error():
            info = await service.account()
        return renderer.account(info)

    server.add_tool(
        get_account,
        title="PiAPI account",
        description="Your PiAPI balance (US$), credits and plan, and what this server spent in the last "
        "24 h (and its daily budget). Free.",
        annotations=READS,
    )
    server.add_tool(
        get_task,
        title="Get a PiAPI task",
        description=(
            "A PiAPI task by id: status, outputs, cost. wait_seconds waits for the end, with progress; "
            "it creates nothing, so call it as often as needed."
        ),
        annotations=READS,
        meta=card(),
    )
    _returns_task_result(server, "get_task")
    server.add_tool(
        cancel_task,
        title="Cancel a PiAPI task",
        description=(
            "Ask PiAPI to cancel a task still pending; once processing, a task runs to the end and is "
            "charged."
        ),
        annotations=CANCELS,
        meta=card(),
    )
    _returns_task_result(server, "cancel_task")
    server.add_tool(
        list_tasks,
        title="List recent PiAPI tasks",
        description=(
            "The tasks this server created, newest first, with their last known status (kept across "
            "restarts): find a lost task id here, then call get_task."
        ),
        annotations=READS_LOCAL,
    )

    @server.resource(
        "piapi://models",
        name="piapi-models",
        title="PiAPI models",
        description="Every PiAPI model and task type piapi-mcp knows (summary, output kind, status, "
        "typed tool), as JSON; run any with run_task.",
        mime_type="application/json",
    )
    def models_resource() -> str:
        """The catalog, one entry per (model, task_type), as JSON."""
        return json.dumps({"models": [_catalog_entry(spec) for spec in CATALOG.all()]}, indent=2)

    @server.resource(
        MODEL_RESOURCE,
        name="piapi-model",
        title="PiAPI model and task type",
        description="One catalog entry: its input JSON schema and an example input for run_task.",
        mime_type="application/json",
    )
    def model_resource(model: str, task_type: str) -> str:
        """One catalog entry with its input schema and example, as JSON."""
        spec = CATALOG.find(model, task_type)
        if spec is None:
            raise ResourceError(
                f"piapi-mcp's catalog has no model {shown(model, 100)} with task type "
                f"{shown(task_type, 64)}; read piapi://models for the ones it knows (run_task still sends "
                "an unknown pair to PiAPI as given)."
            )
        entry = _catalog_entry(spec) | {
            "typical_seconds": spec.typical_seconds,
            "input_schema": lean_schema(spec.input.model_json_schema()),
            "example": dict(spec.example),
        }
        if spec.defaults:
            entry["defaults"] = dict(spec.defaults)
        return json.dumps(entry, indent=2)

    @server.resource(
        "piapi://tasks",
        name="piapi-tasks",
        title="PiAPI tasks created here",
        description="The 50 most recent tasks this server created, from its ledger, as JSON.",
        mime_type="application/json",
    )
    async def task_list_resource() -> str:
        """Recent tasks from the ledger, newest first, as JSON."""
        with _as_resource_error():
            listing = await service.list_recent(None, 50)
        return json.dumps(renderer.listing(listing, None)[1], indent=2)

    @server.resource(
        "piapi://tasks/{task_id}",
        name="piapi-task",
        title="PiAPI task",
        description="The current state of a PiAPI task, normalised, as JSON.",
        mime_type="application/json",
    )
    async def task_resource(task_id: str) -> str:
        """The current state of a PiAPI task as JSON (the same fields as the tools' structured content)."""
        with _as_resource_error():
            task = await service.state(task_id)
        return renderer.task_result(task, elapsed=None, eta=None).model_dump_json(indent=2)

    @server.resource(
        OUTPUT_RESOURCE,
        name="piapi-task-output",
        title="Output of a PiAPI task",
        description="Output n (from 1, as numbered in the task's outputs) of a task: the saved copy if "
        "there is one, else fetched from PiAPI; a text output as UTF-8 text. Each read names its own "
        "MIME type (image/png, video/mp4, audio/wav, model/gltf-binary, text/plain...).",
        mime_type=OUTPUT_RESOURCE_MIME_TYPE,
    )
    async def task_output_resource(task_id: str, n: str) -> bytes:
        """The bytes of output ``n`` of a task."""
        with _as_resource_error():
            return await service.output_bytes(task_id, n)

    add_prompts(server)


def _creation_tool(
    spec: TaskSpec,
    service: TaskService,
    renderer: Renderer,
    settings: ServerSettings,
    call_of: Callable[[Context[Any, Any]], Call],
) -> Callable[..., Awaitable[Any]]:
    """The curated tool over ``spec``: its arguments (the spec's input, or the tool's own), plus the controls.

    A tool over several specs routes each call to one of them (``ToolInfo.route``); a routed input
    that does not fit raises ``ValidationError``, which reaches the caller as one sentence.
    """
    assert spec.tool is not None
    name = spec.tool.name

    @model_arguments(spec.arguments)
    async def create(
        arguments: BaseModel,
        *,
        ctx: Context[Any, Any],
        wait_seconds: CreateWait = settings.wait_seconds,
        force_new: Annotated[bool, Field(description=_force_new_description(settings))] = False,
    ) -> CallToolResult:
        target, request = spec.routed(arguments)
        with _as_tool_error():
            outcome = await service.create_and_wait(
                CreateRequest.for_spec(target, target.request_input(request), tool=name),
                call_of(ctx),
                budget=wait_seconds,
                force_new=force_new,
            )
        return await renderer.result(outcome)

    create.__name__ = create.__qualname__ = name
    return create


def _force_new_description(settings: ServerSettings) -> str:
    return f"Skip the {seconds(settings.dedup_seconds)} duplicate check (create anew)."


def _catalog_entry(spec: TaskSpec) -> dict[str, Any]:
    """What ``piapi://models`` says of one spec."""
    return {
        "model": spec.model,
        "task_type": spec.task_type,
        "summary": spec.summary,
        "output": spec.output,
        "status": spec.status,
        "tool": spec.tool.name if spec.tool is not None else None,
        "uri": f"piapi://models/{spec.model}/{spec.task_type}",
    }


def _run_request(model: str, task_type: str, task_input: dict[str, Any]) -> CreateRequest:
    """run_task's request: the catalog entry's validated input, or the input as given for an unknown pair.

    Raises:
        ToolError: ``input`` is not JSON of bounded size, or does not fit the catalog entry.
    """
    try:
        size = len(json.dumps(task_input, separators=(",", ":"), allow_nan=False))
    except (ValueError, TypeError) as err:
        raise ToolError(
            "`input` of run_task must be plain JSON (no NaN or infinite numbers), so nothing was sent. "
            "Fix it and call run_task again."
        ) from err
    if size > MAX_RUN_INPUT_CHARS:
        raise ToolError(
            f"`input` of run_task is {size:,} characters of JSON, more than the {MAX_RUN_INPUT_CHARS:,} it "
            "takes, so nothing was sent; give large media as a URL or a local file path instead."
        )
    try:
        return CreateRequest.for_pair(model, task_type, task_input, tool="run_task")
    except ValidationError as err:
        raise ToolError(describe_invalid_arguments("run_task", err, within="input")) from err


#: What a refused local path says when the host's protocol has no way to share roots.
NO_ROOTS_ON_PROTOCOL: Final = "this MCP host cannot share its roots (protocol {version})"
#: ... and when the host (e.g. Claude Desktop) declared no roots.
NO_ROOTS_DECLARED: Final = "this MCP host shares no roots"


def _why_no_roots(ctx: Context[Any, Any]) -> str | None:
    """Why the client cannot or does not share roots; ``None`` when it declared the capability.

    On 2026-07-28 a server cannot send the client requests, so ``roots/list`` cannot be asked.
    """
    version = ctx.protocol_version
    if version in MODERN_PROTOCOL_VERSIONS:
        return NO_ROOTS_ON_PROTOCOL.format(version=version)
    capabilities = ctx.request_context.session.client_capabilities
    if capabilities is None or capabilities.roots is None:
        return NO_ROOTS_DECLARED
    return None


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
    return local_paths_from_roots([str(root.uri) for root in listed.roots])
