"""The task card: an MCP App (extension ``io.modelcontextprotocol/ui``) that hosts rendering MCP Apps show
beside a task tool's result: progress, then the image, video, audio or 3D file, and the next actions.

Every task tool names the card in ``_meta.ui.resourceUri``; ``resources/read`` of :data:`TASK_CARD_URI`
returns the HTML (``piapi_mcp/ui/task.html``, package data, built from ``apps/``) as
``text/html;profile=mcp-app``, with a content-security policy that lets it load media only from
PiAPI's output origins. The card reads the result's structured content, which every host gets
anyway, so results are the same for every host: one without MCP Apps sees only the link in
``tools/list``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from mcp.server.apps import Apps, ResourceCsp

from piapi_mcp.client import DEFAULT_BASE_URL

#: The origins PiAPI's finished outputs are served from, as its documented outputs show them
#: (``piapi-catalog.md``; every active catalog entry's ``output_example``): PiAPI's own storage, and the
#: providers' CDNs some families link directly (Kling's signed CDN, Luma and its Cloudflare Images
#: thumbnails, Udio's Google Cloud Storage). Downloads do not use this list (``media.OutputGuard``
#: judges any host by its address); the task card's content-security policy declares it, so a host
#: lets the card show media from these origins and no others. ``*.`` is any subdomain, as in CSP.
PIAPI_OUTPUT_ORIGINS: Final = (
    "https://img.theapi.app",
    "https://storage.theapi.app",
    "https://storage.goapi.ai",
    "https://*.klingai.com",
    "https://storage.cdn-luma.com",
    "https://imagedelivery.net",
    "https://storage.googleapis.com",
)
#: The card's resource; tools link it. Short on purpose: every task tool's ``tools/list`` entry carries it.
TASK_CARD_URI: Final = "ui://piapi-mcp/task.html"
#: Where the built card sits inside the package.
TASK_CARD_FILE: Final = ("ui", "task.html")


def task_card_link() -> dict[str, Any]:
    """A task tool's ``_meta``: the link to the card, in the shape ``mcp.server.apps.Apps.tool`` stamps."""
    return {"ui": {"resourceUri": TASK_CARD_URI}}


@cache
def task_card_html() -> str:
    """The card's HTML, read from the installed package (once: it is the same for every server).

    Read beside this module rather than through ``importlib.resources``, whose import costs every
    start about a millisecond: the package is always installed as files (wheel, bundle or source).
    """
    return Path(__file__).parent.joinpath(*TASK_CARD_FILE).read_text(encoding="utf-8")


def media_origins(base_url: str) -> list[str]:
    """The origins the card may load media from: PiAPI's output origins, plus ``base_url``'s when it is
    not PiAPI's own (the sandbox's simulator on loopback, or a proxy), which serves outputs too."""
    origins = list(PIAPI_OUTPUT_ORIGINS)
    if base_url.strip().rstrip("/") != DEFAULT_BASE_URL:
        parts = urlsplit(base_url.strip())
        own = f"{parts.scheme.lower()}://{parts.netloc.rpartition('@')[2].lower()}"
        if parts.scheme in ("http", "https") and parts.netloc and own not in origins:
            origins.append(own)
    return origins


def task_card_apps(base_url: str) -> Apps:
    """The MCP Apps extension serving the card (the server advertises it as the SDK does)."""
    apps = Apps()
    apps.add_html_resource(
        TASK_CARD_URI,
        task_card_html(),
        name="piapi-task-card",
        title="PiAPI task card",
        description="The card MCP Apps hosts show beside a task tool's result: progress, the outputs "
        "(image, video, audio, 3D file), the cost and buttons for the next actions.",
        csp=ResourceCsp(resource_domains=media_origins(base_url)),
        prefers_border=True,
    )
    return apps
