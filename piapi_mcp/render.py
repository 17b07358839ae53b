"""Outcomes as MCP results: the text, the typed structured content, previews and resource links.

The workflow (``piapi_mcp.tasks``) says where a task is; this module says it to the caller: one
summary a person can read, the :class:`~piapi_mcp.models.TaskResult` a program can, a thumbnail
the model can look at, and links to every output, its saved copy and the task itself.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel, Field

from piapi_mcp.config import DEFAULT_WAIT_SECONDS
from piapi_mcp.errors import shown
from piapi_mcp.ledger import LedgerEntry
from piapi_mcp.media import MAX_PREVIEWS, SavedImage, make_preview
from piapi_mcp.models import CANCELLED, COMPLETED, FAILED, ImageRef, Task, TaskResult
from piapi_mcp.tasks import Listing, Outcome, ServerSettings


class TaskList(BaseModel):
    """The tasks this server has created, newest first (``list_tasks``'s structured content)."""

    tasks: list[LedgerEntry] = Field(description="Recorded tasks, newest first.")
    ledger: str | None = Field(description="The ledger file on this machine (null when kept in memory).")
    ledger_notice: str | None = Field(
        default=None,
        description="Set when the ledger is not the usual file: it was unreadable and moved aside, or "
        "the state folder is unusable and tasks are kept in memory only.",
    )


class Renderer:
    """Turns outcomes into ``CallToolResult``s, under the server's settings."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        # Two at a time: enough to keep the event loop free, few enough to bound memory under load.
        self._image_work = anyio.CapacityLimiter(2)

    def task_result(
        self,
        task: Task,
        *,
        elapsed: float | None,
        eta: float | None,
        reused: bool = False,
        saved: tuple[SavedImage, ...] | list[SavedImage] = (),
    ) -> TaskResult:
        """The structured content for ``task``."""
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
            next=None if done else resume_hint(task.task_id),
            simulated=self.settings.simulated,
            reused=reused,
        )

    def _shown_relative_to(self) -> Path | None:
        """The folder saved paths are shown relative to (HTTP callers), or ``None`` for absolute paths."""
        saver = self.settings.outputs
        if not self.settings.relative_output_paths or saver is None or saver.folder is None:
            return None
        return saver.folder

    async def result(self, outcome: Outcome) -> CallToolResult:
        """The tool result for ``outcome``: summary text, previews, links; an error when the task failed."""
        task, saved = outcome.task, list(outcome.saved)
        structured = self.task_result(
            task, elapsed=outcome.elapsed, eta=outcome.eta, reused=outcome.reused, saved=saved
        )
        text = summary(structured)
        if outcome.note:
            text += f"\n{outcome.note}"
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

    def listing(self, listing: Listing, status: str | None) -> tuple[str, dict[str, Any]]:
        """``list_tasks``'s text and structured content."""
        entries = listing.entries
        structured = TaskList(
            tasks=entries,
            ledger=str(listing.ledger) if listing.ledger else None,
            ledger_notice=listing.notice,
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
        if listing.notice:
            text += f"\n{listing.notice}"
        return text, structured.model_dump(mode="json")


def resume_hint(task_id: str) -> str:
    """What to do while a task is not done (the result's ``next``)."""
    return (
        f'Still running on PiAPI. Call get_task with {{"task_id": "{task_id}", "wait_seconds": '
        f"{DEFAULT_WAIT_SECONDS:g}}} to wait for the result; do not create it again."
    )


def summary(result: TaskResult) -> str:
    """The result's first line(s), for the person and the model."""
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
