"""The MCP server object hosts talk to: lean lists, one-sentence failures, and tools built on first need.

:class:`PiAPIMCPServer` is the SDK's ``MCPServer`` with piapi-mcp's manners. ``piapi_mcp.server`` fills
it with the tools, resources and prompts (``populate``, which imports the catalog and derives the
schemas), on the first request that needs them: a call, a read, a prompt, or a list the
:class:`~piapi_mcp.listings.ListingCache` does not have. Until then a restart answers the host's
start-up lists from that cache. :func:`create_deferred_server` also leaves the settings (the ledger,
the duration estimator...) to that first request (``prepare``). This module imports nothing of the
catalog, so a restart is ready for ``tools/list`` about as soon as the SDK is.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, GetPromptResult, InputRequiredResult
from mcp.types import Prompt as MCPPrompt
from mcp.types import Resource as MCPResource
from mcp.types import ResourceTemplate as MCPResourceTemplate
from mcp.types import Tool as MCPTool
from pydantic import AnyUrl, ValidationError

from piapi_mcp._version import package_version
from piapi_mcp.listings import ListingCache, Listings, ListingSettings

if TYPE_CHECKING:
    from pathlib import Path

    from piapi_mcp.client import PiAPIClient
    from piapi_mcp.server_settings import ServerSettings

logger = logging.getLogger("piapi_mcp")

SERVER_NAME: Final = "piapi-mcp"

INSTRUCTIONS: Final = (
    "Tools for PiAPI's generation API (images, video, music, speech, 3D). The typed tools cover what is "
    "asked most; run_task runs any PiAPI model, described in the resources piapi://models and "
    "piapi://models/{model}/{task_type}. PiAPI tasks take seconds to minutes and cost credits: a tool "
    "waits up to wait_seconds and, if the task is not finished by then, returns its task_id with status "
    "still running. That is not an error; call get_task with that task_id (and wait_seconds) to keep "
    "waiting. Never create the same task again just because it is slow: that pays twice."
)

#: The tool whose output schema is the task result's full shape; other task tools publish its core.
FULL_RESULT_SCHEMA_TOOL: Final = "get_task"
TASK_RESULT_CORE: Final = ("task_id", "status", "done", "outputs")
#: Other tools whose output schema publishes only these top-level fields, by their types.
PUBLISHED_CORES: Final = {"list_tasks": ("tasks", "ledger", "ledger_notice")}

#: Any output of a task; the template's MIME type says "some file", each read says what it is.
OUTPUT_RESOURCE: Final = "piapi://tasks/{task_id}/outputs/{n}"
OUTPUT_RESOURCE_MIME_TYPE: Final = "application/octet-stream"
_OUTPUT_URI: Final = re.compile(r"^piapi://tasks/[^/]+/outputs/\d+$")

#: Registers the tools, resources and prompts on the server it is given.
Populate = Callable[["PiAPIMCPServer"], None]
#: One of the lists a host asks for.
Item = TypeVar("Item", MCPTool, MCPResource, MCPResourceTemplate, MCPPrompt)
#: Gets ready what ``Populate`` needs (the ledger, the duration estimator...), on first need.
Prepare = Callable[[], Awaitable[None]]


class PiAPIMCPServer(MCPServer[Any]):
    """``MCPServer`` whose every tool failure reads as one sentence, whose tool list is lean, and whose
    tools are registered on first need (see the module's docstring)."""

    def __init__(
        self,
        *args: Any,
        populate: Populate | None = None,
        prepare: Prepare | None = None,
        listing_cache: ListingCache | None = None,
        **kwargs: Any,
    ) -> None:
        """``MCPServer``'s arguments, plus what fills the server, what it needs first, and the cache."""
        super().__init__(*args, **kwargs)
        self._populate = populate
        self._prepare = prepare
        self._preparing = anyio.Lock()
        self._listing_cache = listing_cache
        #: The lists answered before the tools exist: the cache's, when it has this start's key.
        self._remembered: Listings | None = listing_cache.load() if listing_cache and populate else None
        self._checked = listing_cache is None
        self._published: tuple[tuple[str, ...], list[MCPTool]] | None = None

    async def ready(self) -> None:
        """Get everything ready (the ``prepare`` step, then the tools, resources and prompts), if not yet.

        Concurrent first requests wait for one preparation; a failed one is tried again by the next.
        """
        if self._populate is None:
            return
        async with self._preparing:
            if self._prepare is not None:
                await self._prepare()
                self._prepare = None
            self._fill()

    def _fill(self) -> None:
        """Register the tools, resources and prompts (``prepare`` done), if that is not done yet."""
        populate, self._populate = self._populate, None
        if populate is not None:
            populate(self)

    @property
    def _answers_from_cache(self) -> bool:
        return self._populate is not None and self._remembered is not None

    async def _check_listings(self) -> None:
        """Once populated: store the real lists, and say so if a start answered from different ones."""
        if self._checked:
            return
        self._checked = True
        assert self._listing_cache is not None
        live = Listings(
            tools=_dumped(await self.list_tools()),
            resources=_dumped(await self.list_resources()),
            resource_templates=_dumped(await self.list_resource_templates()),
            prompts=_dumped(await self.list_prompts()),
        )
        if live == self._remembered:
            return
        if self._remembered is not None:
            logger.warning(
                "the tool list remembered in %s was not this code's; it is rebuilt, and the host sees the "
                "right one from its next start",
                self._listing_cache.path,
            )
        self._listing_cache.save(live)

    async def list_tools(self) -> list[MCPTool]:
        """The tools with lean schemas: hosts load every byte of them into the model's context.

        Descriptions lose any docstring indentation. Input schemas lose pydantic's titles; output
        schemas keep their shape only. The task result's
        full shape is published once, on ``get_task``; every other task tool publishes its core
        (``task_id``, ``status``, ``done``, ``outputs``), which the same results satisfy, and
        ``list_tasks`` the top of its listing (each entry is described by ``piapi://tasks``' JSON).
        """

        async def lean() -> list[MCPTool]:
            return self._lean_tools(await super(PiAPIMCPServer, self).list_tools())

        return await self._listed("tools", MCPTool, lean)

    def _lean_tools(self, tools: list[MCPTool]) -> list[MCPTool]:
        from piapi_mcp.arguments import lean_schema, output_shape
        from piapi_mcp.wording import description

        # The tools are fixed once the server is built: work their lean form out once, and the
        # task tools' shared output shape once for all of them (it is most of the work).
        listed = tuple(tool.model_dump_json() for tool in tools)
        if self._published is not None and self._published[0] == listed:
            return list(self._published[1])
        task_result = task_result_schema()
        shapes: dict[tuple[str, tuple[str, ...] | None], Any] = {}
        published = []
        for tool in tools:
            output = tool.output_schema
            if output is not None:
                core = output == task_result and tool.name != FULL_RESULT_SCHEMA_TOOL
                keep = TASK_RESULT_CORE if core else PUBLISHED_CORES.get(tool.name)
                memo = (json.dumps(output, sort_keys=True), keep)
                if memo not in shapes:
                    shapes[memo] = output_shape(copy.deepcopy(output), keep=keep)
                output = shapes[memo]
            published.append(
                tool.model_copy(
                    update={
                        "description": description(tool.description),
                        "input_schema": lean_schema(tool.input_schema),
                        "output_schema": output,
                    }
                )
            )
        self._published = (listed, published)
        return list(published)

    async def list_resources(self) -> list[MCPResource]:
        """The resources (the catalog, the tasks, the task card)."""
        return await self._listed("resources", MCPResource, super().list_resources)

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        """The resource templates (one catalog entry, one task, one output)."""
        return await self._listed("resource_templates", MCPResourceTemplate, super().list_resource_templates)

    async def list_prompts(self) -> list[MCPPrompt]:
        """The prompts hosts offer as slash commands."""
        return await self._listed("prompts", MCPPrompt, super().list_prompts)

    async def _listed(
        self, field: str, kind: type[Item], live: Callable[[], Awaitable[list[Item]]]
    ) -> list[Item]:
        """A list: the remembered one while nothing is built, else the real one (checked against it)."""
        if self._answers_from_cache:
            return [kind.model_validate(item) for item in getattr(self._remembered, field)]
        await self.ready()
        listed = await live()
        await self._check_listings()
        return listed

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """One prompt's messages."""
        await self.ready()
        await self._check_listings()
        return await super().get_prompt(name, arguments, context)

    def _tool_input_schema(self, name: str) -> dict[str, Any] | None:
        # The SDK's Streamable HTTP transport asks it before a call (to check Mcp-Param headers). It
        # cannot wait for ``prepare`` (HTTP hosting settles its settings before serving, so it has
        # none): until ``prepare`` has run, the SDK skips the check, as for a tool it cannot find.
        if self._prepare is None:
            self._fill()
        return super()._tool_input_schema(name)

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """Read a resource; a task output's read carries the MIME type of its content.

        A template declares one MIME type for every URI it matches, but output ``n`` may be a PNG, an
        MP4 or a text: its bytes (only allowed formats are ever saved or fetched) say which.
        """
        from piapi_mcp.media import output_mime_type

        await self.ready()
        await self._check_listings()
        read = await super().read_resource(uri, context)
        if isinstance(read, InputRequiredResult) or not _OUTPUT_URI.match(str(uri)):
            return read
        return [
            replace(part, mime_type=output_mime_type(part.content))
            if isinstance(part.content, bytes)
            else part
            for part in read
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        """Run a tool; every failure reaches the caller as one plain-language sentence.

        Arguments the tool does not have are refused before it runs (the SDK would drop them
        silently, and a paid task would be made without them). Validation failures name the
        field; a crash inside the tool says so, never as the SDK's bare "Error executing tool".
        """
        from piapi_mcp.arguments import describe_invalid_arguments, describe_unknown_arguments

        await self.ready()
        await self._check_listings()
        tool = self._tool_manager.get_tool(name)
        if tool is not None:
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


def create_server(
    client: PiAPIClient, settings: ServerSettings | None = None, *, listings_in: Path | None = None
) -> PiAPIMCPServer:
    """Build the MCP server over ``client``. Nothing global: call it once per server instance.

    The tools, resources and prompts are registered on the first request. With ``listings_in`` (the
    state folder), the lists a previous start published with the same code and settings are answered
    from there until then; the lists this code publishes are kept there.
    """
    from piapi_mcp.server_settings import ServerSettings

    used = settings or ServerSettings()
    return _piapi_server(client, listing_settings(client.base_url, used), used, listings_in)


def create_deferred_server(
    client: PiAPIClient,
    listing: ListingSettings,
    settle: Callable[[], Awaitable[ServerSettings]],
    *,
    listings_in: Path | None,
) -> PiAPIMCPServer:
    """:func:`create_server`, with the settings made by ``settle`` on the first request that needs them.

    A start then does only what the host's first lists need: opening the ledger and the rest waits
    for the first call. ``listing`` is what the lists depend on; the settled settings must agree.
    """
    return _piapi_server(client, listing, settle, listings_in)


def listing_settings(base_url: str, settings: ServerSettings) -> ListingSettings:
    """What of ``settings`` (and of the PiAPI base URL) the lists show."""
    return ListingSettings.of(
        base_url,
        wait_seconds=settings.wait_seconds,
        dedup_seconds=settings.dedup_seconds,
        task_card=settings.task_card,
    )


def _piapi_server(
    client: PiAPIClient,
    listing: ListingSettings,
    settings: ServerSettings | Callable[[], Awaitable[ServerSettings]],
    listings_in: Path | None,
) -> PiAPIMCPServer:
    from piapi_mcp.card import task_card_apps

    settled: list[ServerSettings] = [] if callable(settings) else [settings]
    prepare = None
    if callable(settings):
        settle = settings

        async def prepare() -> None:
            made = await settle()
            if listing_settings(client.base_url, made) != listing:
                raise RuntimeError("the settled server settings do not show what the listing key says")
            settled.append(made)

    def fill(server: PiAPIMCPServer) -> None:
        from piapi_mcp.server import populate

        populate(server, client, settled[0])

    # The task card (MCP Apps): its resource and capability come with the SDK's extension; each task
    # tool links it through ``_meta`` (added by ``populate``, not by ``Apps.tool``, to keep the tools' order).
    return PiAPIMCPServer(
        SERVER_NAME,
        version=package_version(),
        instructions=INSTRUCTIONS,
        extensions=[task_card_apps(client.base_url)] if listing.task_card else [],
        populate=fill,
        prepare=prepare,
        listing_cache=None if listings_in is None else ListingCache(listings_in, listing),
    )


@functools.cache
def task_result_schema() -> dict[str, Any]:
    """:class:`~piapi_mcp.models.TaskResult`'s JSON schema (derived once)."""
    from piapi_mcp.models import TaskResult

    return TaskResult.model_json_schema()


def _dumped(items: Iterable[MCPTool | MCPResource | MCPResourceTemplate | MCPPrompt]) -> list[dict[str, Any]]:
    """The JSON a list's items are sent as."""
    return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in items]
