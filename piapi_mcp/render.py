"""Outcomes as MCP results: the text, the typed structured content, previews and resource links.

The workflow (``piapi_mcp.tasks``) says where a task is; this module says it to the caller: one
summary a person can read (with any text output in full), the :class:`~piapi_mcp.models.TaskResult`
a program can, a thumbnail of image outputs the model can look at, and links to every file output
(with its MIME type), its saved copy and the task itself.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.types import CallToolResult, ImageContent, ResourceLink, TextContent
from pydantic import BaseModel, Field, ValidationError

from piapi_mcp.catalog import CATALOG
from piapi_mcp.config import DEFAULT_WAIT_SECONDS
from piapi_mcp.errors import shown
from piapi_mcp.ledger import LedgerEntry
from piapi_mcp.media import MAX_PREVIEWS, PREVIEW_WORKERS, SavedOutput
from piapi_mcp.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    AccountInfo,
    NextAction,
    OutputRef,
    Task,
    TaskResult,
    charged_usd,
    output_reference,
)
from piapi_mcp.tasks import Listing, Outcome, ServerSettings
from piapi_mcp.wording import clause, ended, number, seconds, usd

logger = logging.getLogger("piapi_mcp")

#: A result offers at most this many next actions.
MAX_NEXT_ACTIONS = 10


class TaskList(BaseModel):
    """The tasks this server has created, newest first (``list_tasks``'s structured content)."""

    tasks: list[LedgerEntry] = Field(description="Recorded tasks, newest first.")
    ledger: str | None = Field(
        description="The ledger's file on this machine or its database (null when kept in memory)."
    )
    ledger_notice: str | None = Field(
        default=None,
        description="Set when the ledger is not the usual file: it was unreadable and moved aside, or "
        "the state folder is unusable and tasks are kept in memory only.",
    )


class Renderer:
    """Turns outcomes into ``CallToolResult``s, under the server's settings."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        # One pool for every call's previews: enough to keep the event loop free, few enough that
        # 100 completions at once decode PREVIEW_WORKERS images at a time, not 100.
        self._image_work = anyio.CapacityLimiter(PREVIEW_WORKERS)

    def task_result(
        self,
        task: Task,
        *,
        elapsed: float | None,
        eta: float | None,
        reused: bool = False,
        saved: Mapping[int, SavedOutput] | None = None,
    ) -> TaskResult:
        """The structured content for ``task``; ``saved`` by output number (from 1)."""
        done = task.done
        copies = saved or {}
        spec = CATALOG.find(task.model, task.task_type) if task.model and task.task_type else None
        relative_to = self._shown_relative_to()
        return TaskResult(
            task_id=task.task_id,
            model=task.model,
            task_type=task.task_type,
            status=task.status,
            done=done,
            outputs=[
                _output_ref(output, copies.get(index), relative_to)
                for index, output in enumerate(task.outputs, start=1)
            ],
            usage=task.usage,
            error=task.error if task.status == FAILED else None,
            created_at=task.created_at,
            elapsed_seconds=(
                task.duration_seconds if done and task.duration_seconds is not None else elapsed
            ),
            eta_seconds=None if done else eta,
            next=None if done else resume_hint(task.task_id),
            simulated=self.settings.simulated,
            reused=reused,
            estimated_usd=spec.price_usd if spec is not None else None,
            cost_usd=charged_usd(task),
            next_actions=next_actions(task),
        )

    def _shown_relative_to(self) -> Path | None:
        """The folder saved paths are shown relative to (HTTP callers), or ``None`` for absolute paths."""
        saver = self.settings.outputs
        if not self.settings.relative_output_paths or saver is None or saver.folder is None:
            return None
        return saver.folder

    async def result(self, outcome: Outcome) -> CallToolResult:
        """The tool result for ``outcome``: summary text, previews, links; an error when the task failed."""
        task, saved = outcome.task, outcome.saved
        structured = self.task_result(
            task, elapsed=outcome.elapsed, eta=outcome.eta, reused=outcome.reused, saved=saved
        )
        text = summary(structured) + cost_and_next(structured)
        if outcome.note:
            text += f"\n{ended(outcome.note)}"
        if structured.simulated:
            text += "\n(Simulated by piapi-mcp's built-in PiAPI sandbox: no credits were used.)"
        content: list[Any] = [TextContent(type="text", text=text)]
        if self.settings.preview:
            content.extend(await self._previews(saved))
        for index, output in enumerate(structured.outputs, start=1):
            if output.url is None:
                continue
            copy = saved.get(index)
            what = _KIND_WORDS.get(output.kind, output.kind)
            content.append(
                ResourceLink(
                    type="resource_link",
                    name=f"{task.task_id}-output-{index}",
                    title=f"Output {index} of PiAPI task {task.task_id} ({what})",
                    uri=output.url,
                    mime_type=output.mime_type,
                )
            )
            if copy is not None and copy.path is not None and not self.settings.relative_output_paths:
                content.append(
                    ResourceLink(
                        type="resource_link",
                        name=f"{task.task_id}-output-{index}-file",
                        title=f"Saved copy of output {index} ({what})",
                        uri=copy.path.as_uri(),
                        mime_type=output.mime_type,
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

    async def _previews(self, saved: Mapping[int, SavedOutput]) -> list[ImageContent]:
        """Thumbnails of the first image outputs (other kinds have none)."""
        previews: list[ImageContent] = []
        tried = 0
        for _, copy in sorted(saved.items()):
            source = copy.path or copy.data
            if source is None or copy.kind is None or copy.kind.pil_format is None:
                continue
            if tried >= MAX_PREVIEWS:
                break
            tried += 1
            # Pillow works outside the GIL: other calls' polls keep flowing meanwhile.
            preview = await anyio.to_thread.run_sync(
                self.settings.previewer, source, copy.kind, limiter=self._image_work
            )
            if preview is not None:
                data, mime_type = preview
                previews.append(
                    ImageContent(
                        type="image", data=base64.b64encode(data).decode("ascii"), mime_type=mime_type
                    )
                )
        return previews

    def account(self, info: AccountInfo) -> CallToolResult:
        """``get_account``'s result: the balance, credits and plan, and this server's spending."""
        parts = [f"balance {usd(info.balance_usd)}" if info.balance_usd is not None else None]
        if info.credits is not None:
            parts.append(f"{number(info.credits, 0)} credits")
        if info.plan:
            parts.append(f"plan {info.plan}")
        name = f" {info.account}" if info.account else ""
        text = f"PiAPI account{name}: " + ", ".join(part for part in parts if part) + "."
        text += f"\nThis server's tasks of the last 24 h cost {usd(info.spent_24h_usd)}"
        if info.daily_budget_usd is not None:
            left = max(0.0, info.daily_budget_usd - info.spent_24h_usd)
            text += f" of its {usd(info.daily_budget_usd)} daily budget ({usd(left)} left)"
        text += "."
        if info.simulated:
            text += "\n(Simulated by piapi-mcp's built-in PiAPI sandbox: not a real account.)"
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=info.model_dump(mode="json")
        )

    def listing(self, listing: Listing, status: str | None) -> tuple[str, dict[str, Any]]:
        """``list_tasks``'s text and structured content."""
        entries = listing.entries
        structured = TaskList(
            tasks=entries,
            ledger=listing.ledger,
            ledger_notice=listing.notice,
        )
        if entries:
            lines = [
                f"{e.task_id}  {e.status:<10}  {e.created_at:%Y-%m-%d %H:%M:%S} UTC  "
                f"{shown(e.input.get('prompt', ''), 60)}" + (f"  ({clause(e.note)})" if e.note else "")
                for e in entries
            ]
            text = f"{len(entries)} task(s), newest first:\n" + "\n".join(lines)
        else:
            text = "No tasks recorded" + (f" with status {status}." if status else " yet.")
        if listing.notice:
            text += f"\n{ended(listing.notice)}"
        return text, structured.model_dump(mode="json")


def resume_hint(task_id: str) -> str:
    """What to do while a task is not done (the result's ``next``)."""
    return (
        f'Still running on PiAPI. Call get_task with {{"task_id": "{task_id}", "wait_seconds": '
        f"{DEFAULT_WAIT_SECONDS:g}}} to wait for the result; do not create it again."
    )


#: How results name one output of each kind, and several.
_KIND_WORDS: dict[str, str] = {"audio": "audio file", "model3d": "3D model"}
_PLURALS: dict[str, str] = {"audio": "audio files", "model3d": "3D models", "text": "texts"}


def count_outputs(outputs: list[OutputRef]) -> str:
    """``"1 video"``, ``"2 images and 1 text"``: the outputs by kind, in order of first appearance."""
    counts: dict[str, int] = {}
    for output in outputs:
        counts[output.kind] = counts.get(output.kind, 0) + 1
    parts = []
    for kind, n in counts.items():
        word = _KIND_WORDS.get(kind, kind)
        parts.append(f"{n} {word if n == 1 else _PLURALS.get(kind, word + 's')}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def summary(result: TaskResult) -> str:
    """The result's first line(s), for the person and the model: each file's URL, each text in full."""
    tid = result.task_id
    if result.status == COMPLETED:
        took = f" in {seconds(result.elapsed_seconds)}" if result.elapsed_seconds is not None else ""
        if not result.outputs:
            return f"PiAPI task {tid} completed{took}, but PiAPI returned no output."
        lines = []
        for index, output in enumerate(result.outputs, start=1):
            if output.url is not None:
                lines.append(output.url)
            else:
                lines.append(f"Text output {index}:\n{output.text}")
        return f"PiAPI task {tid} completed{took}: {count_outputs(result.outputs)}.\n" + "\n".join(lines)
    if result.status == FAILED:
        # PiAPI's message is quoted whole (it may end a sentence itself), after the code.
        reason = result.error.message if result.error and result.error.message else "no reason given"
        code = f" (code {result.error.code})" if result.error and result.error.code else ""
        return (
            ended(f"PiAPI task {tid} failed{code}: {reason}")
            + " Nothing was produced; try again with a different prompt or input."
        )
    if result.status == CANCELLED:
        return f"PiAPI task {tid} was cancelled before it ran, so it produced nothing."
    if result.done:
        return f"PiAPI task {tid} ended with status {result.status}."
    elapsed = f" after {seconds(result.elapsed_seconds)}" if result.elapsed_seconds is not None else ""
    eta = f" (about {seconds(result.eta_seconds)} left)" if result.eta_seconds is not None else ""
    return (
        f"PiAPI task {tid} is still {result.status}{elapsed}{eta}. It is not lost: call get_task "
        f'with task_id "{tid}" and wait_seconds {DEFAULT_WAIT_SECONDS:g} to get the result.'
    )


def cost_and_next(result: TaskResult) -> str:
    """The lines after the summary: the task's cost, and what can be done next (as run_task arguments)."""
    text = ""
    estimate = f"listed price {usd(result.estimated_usd)}" if result.estimated_usd is not None else ""
    if result.cost_usd is not None:
        text += f"\nCost: {usd(result.cost_usd)} charged by PiAPI" + (f" ({estimate})." if estimate else ".")
    elif estimate:
        text += f"\nCost: not reported yet ({estimate})."
    if result.next_actions:
        text += "\nNext, with run_task:"
        for action in result.next_actions:
            arguments = {"model": action.model, "task_type": action.task_type, "input": action.input}
            text += f"\n- {action.label}: {json.dumps(arguments, separators=(',', ':'))}"
    return text


def next_actions(task: Task) -> list[NextAction]:
    """What the task's spec offers to do next with its outputs (``TaskSpec.follow_ups``), ready for run_task.

    Only for a completed task. An action on a pair the catalog refuses (discontinued, stopped) or
    whose input the pair's spec would not take is left out; one on a pair the catalog does not know
    (sent as given, with no media resolution) names this task's outputs by their URLs.
    """
    spec = CATALOG.find(task.model, task.task_type) if task.model and task.task_type else None
    if task.status != COMPLETED or not task.outputs or spec is None or spec.follow_ups is None:
        return []
    try:
        offered = spec.follow_ups(task)
    except Exception:  # a family's follow-ups must never cost the caller its result
        logger.warning("the %s %s follow-ups failed", task.model, task.task_type, exc_info=True)
        return []
    kept: list[NextAction] = []
    for action in offered:
        target = CATALOG.find(action.model, action.task_type)
        ready: NextAction | None = action
        if target is None:
            ready = _by_url(action, task)
        elif target.status != "active":
            continue
        else:
            try:
                target.input.model_validate(action.input)
            except ValidationError:
                logger.warning("a follow-up of %s %s does not fit its target", task.model, task.task_type)
                continue
        if ready is not None:
            kept.append(ready)
        if len(kept) >= MAX_NEXT_ACTIONS:
            break
    return kept


def _by_url(action: NextAction, task: Task) -> NextAction | None:
    """``action`` with each ``piapi://tasks/{id}#n`` of ``task`` as that output's URL (``None``: no URL)."""
    references = {output_reference(task, n): output.url for n, output in enumerate(task.outputs, start=1)}
    swapped: dict[str, object] = {}
    for name, value in action.input.items():
        if isinstance(value, str) and value in references:
            url = references[value]
            if url is None:
                return None
            swapped[name] = url
        else:
            swapped[name] = value
    return action.model_copy(update={"input": swapped})


def _output_ref(output: OutputRef, saved: SavedOutput | None, relative_to: Path | None = None) -> OutputRef:
    """One output as results show it: its saved copy (relative to ``relative_to`` when given) and the MIME
    type its content was judged to be, once saved."""
    if saved is None:
        return output
    path = saved.path
    if path is not None and relative_to is not None:
        path = Path(path.name) if path.parent.resolve() == relative_to.resolve() else None
    update: dict[str, Any] = {"path": str(path) if path else None, "save_error": saved.error}
    if saved.kind is not None:
        update["mime_type"] = saved.kind.mime_type
        if output.kind == "file":  # a URL that said nothing of itself: its content does
            update["kind"] = saved.kind.kind
    return output.model_copy(update=update)
