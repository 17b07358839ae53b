"""How the server behaves (:class:`ServerSettings`); where PiAPI pushes task changes (:class:`WebhookTarget`).

Apart from the workflow (``piapi_mcp.tasks``) so that a start can settle them without importing the
catalog: the server's lists can be answered before the tools are built (``piapi_mcp.mcp_server``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from piapi_mcp.config import DEFAULT_DEDUP_SECONDS, DEFAULT_WAIT_SECONDS
from piapi_mcp.events import LocalTaskEvents, TaskEvents
from piapi_mcp.timing import Clock, SystemClock

if TYPE_CHECKING:
    from piapi_mcp.ledger import Ledger
    from piapi_mcp.media import MediaKind, OutputSaver, Resolver
    from piapi_mcp.waiting import DurationEstimator


def _new_estimator() -> DurationEstimator:
    from piapi_mcp.waiting import DurationEstimator

    return DurationEstimator()


def make_preview(source: Path | bytes, kind: MediaKind | None) -> tuple[bytes, str] | None:
    """:func:`piapi_mcp.media.make_preview`, whose module is imported on first use, not at start."""
    from piapi_mcp.media import make_preview

    return make_preview(source, kind)


@dataclass(frozen=True)
class WebhookTarget:
    """Where PiAPI pushes task changes (``config.webhook_config`` of every create), and the secret it echoes.

    The secret is never shown: not in ``repr``, logs, results, errors, nor the ledger (the create's
    ``config`` is not part of the recorded input).
    """

    endpoint: str
    secret: str = field(repr=False)

    def config(self) -> dict[str, Any]:
        """The create body's ``config``."""
        return {"webhook_config": {"endpoint": self.endpoint, "secret": self.secret}}


@dataclass
class ServerSettings:
    """How the server behaves (the PiAPI client carries the connection settings)."""

    #: Default for ``wait_seconds`` when a call gives none (below hosts' ~60 s cut-off).
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    #: Results say they are simulated (the ``--sandbox`` mode).
    simulated: bool = False
    clock: Clock = field(default_factory=SystemClock)
    estimator: DurationEstimator = field(default_factory=_new_estimator)
    #: Where created tasks are recorded; ``None`` keeps an in-memory ledger (tests, one-off runs).
    ledger: Ledger | None = None
    #: An identical create within this many seconds returns the existing task (0 turns it off).
    dedup_seconds: float = DEFAULT_DEDUP_SECONDS
    #: Folders local files may be read from (besides the client's roots, when those are used).
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
    #: ``PIAPI_DAILY_BUDGET_USD``: a create whose estimate would take the last 24 h's spending (from
    #: the ledger) over this many US$ is refused before anything is sent; ``None``: no limit.
    daily_budget_usd: float | None = None
    #: Makes one preview (image bytes and MIME type) in a worker thread; a seam to watch or replace
    #: preview work (at most ``media.PREVIEW_WORKERS`` run at once, whatever it is).
    previewer: Callable[[Path | bytes, MediaKind | None], tuple[bytes, str] | None] = make_preview
    #: Task tools link the task card (an MCP App, ``piapi_mcp.card``) and the server serves it; off, the
    #: tools, resources and capabilities are exactly those of a server without the card.
    task_card: bool = True
    #: Hosted with a public URL: creates ask PiAPI to push task changes there (see
    #: ``hosting.WebhookReceiver``); ``None`` (stdio, or no ``PIAPI_PUBLIC_URL``): polling only.
    webhook: WebhookTarget | None = None
    #: Where waits learn of pushed task changes; shared with the webhook route.
    events: TaskEvents = field(default_factory=LocalTaskEvents)
