"""Hostile outputs: what an upstream (or whatever answers in PiAPI's place) sends back as a task's outputs.

The upstream is the simulator with its ``tamper`` hook rewriting task answers and ``files`` serving
hostile bodies. Name resolution is a seam (``ServerSettings.resolver``): made-up names resolve to
whatever a test says, and a recording transport shows where the server tried to connect. Nothing
leaves the process: every request is answered by the simulator in memory.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import AsyncIterator, Callable, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import ImageContent, ResourceLink
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.cli import build_parser
from piapi_mcp.config import Config
from piapi_mcp.media import MAX_OUTPUTS_PER_TASK, OutputSaver
from piapi_mcp.simulator import HostedFile
from tests.conftest import SIM_BASE_URL, TEST_HOSTS, make_server, resolver_for
from tests.test_kontext_edit import text_of

pytestmark = pytest.mark.anyio

PROMPT = "make the sky purple"
#: A public address for the simulator's host; no packet is sent to it (the transport is in process).
PUBLIC = "93.184.215.14"
HOSTS = {
    "piapi.test": [PUBLIC],
    "cdn.test": ["93.184.215.20"],
    "metadata.test": ["169.254.169.254"],
    "lan.test": ["10.0.0.5"],
    "cgnat.test": ["100.64.0.1"],
    "local.test": ["127.0.0.1"],
    "mixed.test": ["93.184.215.21", "10.0.0.9"],
}


def png_bytes(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, "orange" if mode == "RGB" else 128).save(out, format="PNG")
    return out.getvalue()


def pillow_bytes(fmt: str, size: tuple[int, int] = (40, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "teal").save(out, format=fmt)
    return out.getvalue()


class Recording(httpx2.AsyncBaseTransport):
    """Passes requests to the simulator and remembers each one (where the server tried to connect)."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx2.Request] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return await self.inner.handle_async_request(request)

    @property
    def hosts(self) -> set[str]:
        return {request.url.host for request in self.requests}


@pytest.fixture
def recording(simulator: PiAPISimulator) -> Recording:
    return Recording(httpx2.ASGITransport(simulator.app))


@pytest.fixture
async def recorded_http(recording: Recording) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(transport=recording, base_url=SIM_BASE_URL) as client:
        yield client


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture(autouse=True)
def instant_tasks(simulator: PiAPISimulator) -> None:
    """Tasks are completed in the create's own answer, so the result is rendered at once."""
    simulator.controls.queue_seconds = 0
    simulator.controls.duration = 0


def serve_outputs(simulator: PiAPISimulator, *urls: str, task_id: str | None = None) -> None:
    """Make every completed task's answer list ``urls`` as its outputs (and carry ``task_id``)."""

    def tamper(data: dict[str, Any]) -> dict[str, Any]:
        if str(data.get("status")).lower() == "completed":
            data = {**data, "output": {"image_urls": list(urls)}}
        if task_id is not None:
            data = {**data, "task_id": task_id}
        return data

    simulator.controls.tamper = tamper


def host(simulator: PiAPISimulator, name: str, body: bytes, **extra: Any) -> str:
    simulator.controls.files[name] = HostedFile(body=body, **extra)
    return f"{SIM_BASE_URL}/files/{name}"


async def edit(session: Client, **extra: Any) -> Any:
    return await session.call_tool(
        "kontext_edit", {"prompt": PROMPT, "image": "https://example.com/in.png", **extra}
    )


def images_of(result: Any) -> list[dict[str, Any]]:
    return list((result.structured_content or {})["outputs"])


def previews(result: Any) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


def server_over(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    outputs: Path | None,
    hosts: dict[str, list[str]] | None = None,
    **settings: Any,
) -> Any:
    """A server whose downloads resolve names through ``hosts`` (the simulator's host public by default)."""
    return make_server(
        simulator,
        clock,
        http,
        outputs=OutputSaver(http, outputs),
        resolver=resolver_for(hosts or HOSTS),
        **settings,
    )


# --- critical: what upstream names and sends never chooses a path or an extension -----------------


async def test_an_upstream_task_id_that_climbs_out_of_the_output_folder_plants_no_file(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path, tmp_path: Path
) -> None:
    """An id of ``../escaped/zz`` with a Python ``.pth`` output writes nothing outside (or inside) the folder."""
    escaped = tmp_path / "escaped"
    escaped.mkdir()
    url = host(simulator, "zz.pth", b"import os; os.system('echo pwned')\n")
    serve_outputs(simulator, url, task_id="../escaped/zz")
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)

    assert list(escaped.iterdir()) == []
    assert list(tmp_path.rglob("*.pth")) == []
    assert not outputs.exists() or [p for p in outputs.iterdir() if not p.name.startswith(".")] == []
    assert result.is_error or images_of(result)[0]["path"] is None


@pytest.mark.parametrize(
    ("name", "body", "looks"),
    [
        ("page.png", b"<!DOCTYPE html><html><script>alert(document.cookie)</script></html>", "HTML"),
        ("hook.pth", b"import os; os.system('touch /tmp/pwned')\n", "text"),
        ("art.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(x) run\n", "PostScript/EPS"),
        ("icon.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "SVG"),
        ("doc.jpg", b"%PDF-1.7\n1 0 obj << /OpenAction << /JS (app.alert(1)) >> >>\n", "a PDF"),
        ("run.webp", b"#!/bin/sh\nrm -rf ~\n", "text"),
        ("empty.png", b"", "empty"),
    ],
    ids=["html", "pth", "eps", "svg", "pdf", "shell", "empty"],
)
async def test_output_bytes_in_no_allowed_format_are_not_saved_and_the_result_says_why(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    outputs: Path,
    name: str,
    body: bytes,
    looks: str,
) -> None:
    """Whatever the URL calls it, content that sniffs as no allowed format never reaches the disk."""
    serve_outputs(simulator, host(simulator, name, body))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)

    assert not result.is_error, text_of(result)
    (image,) = images_of(result)
    assert image["path"] is None
    assert image["save_error"].startswith("not saved") and looks in image["save_error"]
    assert not outputs.exists() or [p for p in outputs.iterdir() if not p.name.startswith(".")] == []
    assert previews(result) == []


WAV = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x44\xac\x00\x00" + b"\x00" * 64
ALLOWED: list[tuple[str, Callable[[], bytes], str]] = [
    ("png", png_bytes, "png"),
    ("jpeg", lambda: pillow_bytes("JPEG"), "jpg"),
    ("webp", lambda: pillow_bytes("WEBP"), "webp"),
    ("gif", lambda: pillow_bytes("GIF"), "gif"),
    ("mp4", lambda: b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00" * 80, "mp4"),
    ("mov", lambda: b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00qt  " + b"\x00" * 80, "mov"),
    ("m4a", lambda: b"\x00\x00\x00\x18ftypM4A \x00\x00\x02\x00M4A mp42" + b"\x00" * 80, "m4a"),
    ("webm", lambda: b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm" + b"\x00" * 80, "webm"),
    ("wav", lambda: WAV, "wav"),
    ("mp3-id3", lambda: b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x00" + b"\x00" * 80, "mp3"),
    ("mp3-frame", lambda: b"\xff\xfb\x90\x64" + b"\x00" * 80, "mp3"),
    ("flac", lambda: b"fLaC\x00\x00\x00\x22" + b"\x00" * 80, "flac"),
    ("ogg", lambda: b"OggS\x00\x02" + b"\x00" * 80, "ogg"),
    ("glb", lambda: b"glTF\x02\x00\x00\x00\x64\x00\x00\x00" + b"\x00" * 88, "glb"),
]


@pytest.mark.parametrize(
    ("make", "extension"), [(m, e) for _, m, e in ALLOWED], ids=[i for i, _, _ in ALLOWED]
)
async def test_the_saved_extension_comes_from_the_content_never_from_the_url(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    outputs: Path,
    make: Callable[[], bytes],
    extension: str,
) -> None:
    """Allowed images, videos, audio and 3D are saved under their own extension, even from a URL ending .pth."""
    body = make()
    serve_outputs(simulator, host(simulator, "output.pth", body))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    saved = Path(image["path"])
    assert image["save_error"] is None
    assert saved.parent == outputs and saved.suffix == f".{extension}"
    assert saved.read_bytes() == body


async def test_a_link_planted_under_an_outputs_name_is_neither_taken_as_saved_nor_served(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path, tmp_path: Path
) -> None:
    """A symlink named like an output, pointing outside the folder, is not read: the output is saved beside it."""
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(mode="L") + b"SECRET")
    outputs.mkdir()
    (outputs / "fixed-task-1.png").symlink_to(secret)
    serve_outputs(simulator, host(simulator, "out.png", png_bytes()), task_id="fixed-task")
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)
        try:
            read = (await session.read_resource("piapi://tasks/fixed-task/outputs/1")).contents
        except MCPError:
            read = []

    (image,) = images_of(result)
    saved = Path(image["path"])
    assert not saved.is_symlink() and saved.read_bytes() == png_bytes()
    assert secret.read_bytes().endswith(b"SECRET")
    assert all(b"SECRET" not in base64.b64decode(getattr(part, "blob", "")) for part in read)


# --- #2: downloads go to public addresses only ----------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://metadata.test/latest/meta-data/iam/security-credentials/", "169.254.169.254"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://[::ffff:169.254.169.254]/latest/meta-data/", "169.254.169.254"),
        ("http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", "169.254.169.254"),
        ("http://lan.test:8080/admin.png", "10.0.0.5"),
        ("http://cgnat.test/x.png", "100.64.0.1"),
        ("http://local.test:6379/x.png", "127.0.0.1"),
        ("http://127.0.0.1:2375/containers/json", "127.0.0.1"),
        ("http://[::1]:8000/x.png", "::1"),
        ("http://mixed.test/x.png", "10.0.0.9"),
        ("http://0.0.0.0:80/x.png", "0.0.0.0"),
        ("http://224.0.0.1/x.png", "224.0.0.1"),
    ],
    ids=[
        "metadata-by-name",
        "metadata-literal",
        "ipv4-mapped",
        "nat64",
        "private",
        "cgnat",
        "loopback-by-name",
        "loopback-literal",
        "ipv6-loopback",
        "one-private-address-of-two",
        "unspecified",
        "multicast",
    ],
)
async def test_outputs_on_non_public_addresses_are_refused_before_any_connection(
    simulator: PiAPISimulator,
    clock: ManualClock,
    recorded_http: httpx2.AsyncClient,
    recording: Recording,
    outputs: Path,
    url: str,
    address: str,
) -> None:
    """The URL is judged by the addresses its host resolves to; a refused one is never requested."""
    serve_outputs(simulator, url)
    server = server_over(simulator, clock, recorded_http, outputs)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert image["path"] is None and address in image["save_error"]
    assert recording.hosts <= {"piapi.test"}, recording.hosts


async def test_a_redirect_to_the_metadata_address_is_refused_at_that_hop(
    simulator: PiAPISimulator,
    clock: ManualClock,
    recorded_http: httpx2.AsyncClient,
    recording: Recording,
    outputs: Path,
) -> None:
    """Redirects are followed by hand and each hop is judged like the first URL."""
    url = host(
        simulator,
        "hop.png",
        b"",
        status=302,
        headers={"Location": "http://169.254.169.254/latest/meta-data/"},
    )
    serve_outputs(simulator, url)
    server = server_over(simulator, clock, recorded_http, outputs)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert image["path"] is None and "169.254.169.254" in image["save_error"]
    assert "169.254.169.254" not in recording.hosts
    assert [r.url.path for r in recording.requests if r.url.path.startswith("/files/")] == ["/files/hop.png"]


@pytest.mark.parametrize(("hops", "saved"), [(2, True), (5, False)])
async def test_only_a_few_redirect_hops_are_followed(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    outputs: Path,
    hops: int,
    saved: bool,
) -> None:
    """Two hops reach the file; five stop the download, whatever the hosts."""
    host(simulator, "final.png", png_bytes())
    for n in range(hops):
        target = "final.png" if n == hops - 1 else f"hop{n + 1}"
        host(simulator, f"hop{n}", b"", status=307, headers={"Location": f"/files/{target}"})
    serve_outputs(simulator, f"{SIM_BASE_URL}/files/hop0")
    server = server_over(simulator, clock, http, outputs)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert (image["path"] is not None) is saved
    if not saved:
        assert "redirected more than" in image["save_error"]


async def test_a_download_connects_to_the_address_that_was_judged_with_the_real_name_for_host_and_tls(
    simulator: PiAPISimulator,
    clock: ManualClock,
    recorded_http: httpx2.AsyncClient,
    recording: Recording,
    outputs: Path,
) -> None:
    """A name that answers a public address once and loopback after (DNS rebinding) is fetched from the first."""
    answers = iter([["93.184.215.30"], ["127.0.0.1"], ["127.0.0.1"]])
    rebinding = {**HOSTS}

    async def resolve(name: str) -> list[str]:
        return next(answers) if name == "rebind.test" else rebinding[name]

    host(simulator, "pic.png", png_bytes())
    serve_outputs(simulator, "https://rebind.test/files/pic.png")
    server = make_server(
        simulator, clock, recorded_http, outputs=OutputSaver(recorded_http, outputs), resolver=resolve
    )

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert image["save_error"] is None, image
    (fetch,) = [r for r in recording.requests if r.url.path == "/files/pic.png"]
    assert fetch.url.host == "93.184.215.30"
    assert fetch.headers["host"] == "rebind.test"
    assert fetch.extensions.get("sni_hostname") == "rebind.test"


async def test_the_task_image_resource_takes_the_same_guarded_path(
    simulator: PiAPISimulator,
    clock: ManualClock,
    recorded_http: httpx2.AsyncClient,
    recording: Recording,
) -> None:
    """piapi://tasks/{id}/outputs/1 does not fetch (and serve back) the cloud metadata address."""
    serve_outputs(simulator, "http://169.254.169.254/latest/meta-data/")
    server = make_server(simulator, clock, recorded_http, resolver=resolver_for(HOSTS))

    async with Client(server) as session:
        result = await edit(session)
        task_id = (result.structured_content or {})["task_id"]
        with pytest.raises(MCPError) as refused:
            await session.read_resource(f"piapi://tasks/{task_id}/outputs/1")

    assert "169.254.169.254" in str(refused.value)
    assert "169.254.169.254" not in recording.hosts


async def test_the_task_image_resource_refuses_bytes_in_no_allowed_format(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """Served back over MCP, an HTML 'image' is refused rather than relayed."""
    serve_outputs(simulator, host(simulator, "x.png", b"<html><script>alert(1)</script></html>"))
    server = make_server(simulator, clock, http)

    async with Client(server) as session:
        task_id = ((await edit(session)).structured_content or {})["task_id"]
        with pytest.raises(MCPError) as refused:
            await session.read_resource(f"piapi://tasks/{task_id}/outputs/1")

    assert "HTML" in str(refused.value)


async def test_loopback_outputs_are_fetched_when_piapi_itself_is_on_loopback(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """The sandbox and tests: PiAPI's base URL resolves to loopback, so loopback outputs are fine."""
    host(simulator, "pic.png", png_bytes())
    serve_outputs(simulator, "http://local.test:9/files/pic.png")
    server = server_over(simulator, clock, http, outputs, {**TEST_HOSTS, "local.test": ["127.0.0.1"]})

    async with Client(server) as session:
        result = await edit(session)

    assert images_of(result)[0]["save_error"] is None


async def test_private_outputs_are_fetched_when_the_setting_allows_them(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """PIAPI_ALLOW_PRIVATE_OUTPUTS=1 (a mirror on the LAN) lets private addresses through."""
    host(simulator, "pic.png", png_bytes())
    serve_outputs(simulator, "http://lan.test/files/pic.png")
    server = server_over(simulator, clock, http, outputs, allow_private_outputs=True)

    async with Client(server) as session:
        result = await edit(session)

    assert images_of(result)[0]["save_error"] is None


@pytest.mark.parametrize(("value", "allowed"), [(None, False), ("1", True), ("0", False)])
def test_the_private_outputs_setting_is_read_from_the_environment(value: str | None, allowed: bool) -> None:
    """Off unless PIAPI_ALLOW_PRIVATE_OUTPUTS says 1."""
    env = {} if value is None else {"PIAPI_ALLOW_PRIVATE_OUTPUTS": value}

    config = Config.load(build_parser().parse_args([]), env)

    assert config.allow_private_outputs is allowed


# --- #3, #4: decompression bombs and Ghostscript ----------------------------------------------------


async def test_an_output_over_the_pixel_budget_is_saved_but_never_decoded_for_a_preview(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """A small PNG declaring 25 megapixels gets no preview; the file is still saved for the person."""
    bomb = png_bytes(size=(5000, 5000), mode="L")
    serve_outputs(simulator, host(simulator, "bomb.png", bomb))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS, preview=True)

    async with Client(server) as session:
        result = await edit(session)

    assert previews(result) == []
    assert Path(images_of(result)[0]["path"]).read_bytes() == bomb


async def test_a_large_jpeg_is_previewed_through_draft_decoding(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """A 20-megapixel JPEG decodes at a fraction of its size, so it stays within the budget and is shown."""
    serve_outputs(simulator, host(simulator, "big.jpg", pillow_bytes("JPEG", (5000, 4000))))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS, preview=True)

    async with Client(server) as session:
        result = await edit(session)

    (preview,) = previews(result)
    with Image.open(io.BytesIO(base64.b64decode(preview.data))) as thumb:
        assert max(thumb.size) <= 768


@pytest.mark.parametrize("saving", [True, False], ids=["saving", "preview-only"])
async def test_an_eps_output_never_reaches_pillow(
    simulator: PiAPISimulator,
    clock: ManualClock,
    http: httpx2.AsyncClient,
    outputs: Path,
    monkeypatch: pytest.MonkeyPatch,
    saving: bool,
) -> None:
    """Pillow's EPS plugin (which runs Ghostscript) is never asked to open upstream bytes."""
    from PIL import EpsImagePlugin

    opened: list[str] = []

    def spy(self: Any) -> None:
        opened.append("eps")
        raise SyntaxError("the test refuses EPS")

    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", spy)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto showpage\n"
    serve_outputs(simulator, host(simulator, "art.png", eps))
    server = server_over(simulator, clock, http, outputs if saving else None, TEST_HOSTS, preview=True)

    async with Client(server) as session:
        result = await edit(session)

    assert opened == []
    assert images_of(result)[0]["path"] is None and previews(result) == []


# --- #5: bounded outputs ---------------------------------------------------------------------------


async def test_only_the_first_outputs_up_to_the_cap_are_downloaded_and_the_rest_say_why(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """Sixty outputs: the first sixteen are saved, all sixty are listed, the others with a reason."""
    urls = [host(simulator, f"o{n}.png", png_bytes(size=(8, 8 + n))) for n in range(60)]
    serve_outputs(simulator, *urls)
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)

    images = images_of(result)
    assert [image["url"] for image in images] == urls
    assert all(image["path"] for image in images[:MAX_OUTPUTS_PER_TASK])
    assert all(image["path"] is None for image in images[MAX_OUTPUTS_PER_TASK:])
    assert all(
        f"first {MAX_OUTPUTS_PER_TASK} outputs" in image["save_error"]
        for image in images[MAX_OUTPUTS_PER_TASK:]
    )
    assert len([p for p in outputs.iterdir() if not p.name.startswith(".")]) == MAX_OUTPUTS_PER_TASK
    assert len(previews(result)) <= 4


async def test_an_output_over_fifty_megabytes_is_not_kept_and_leaves_no_partial_file(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """The download streams to a temporary file and stops at the limit; nothing is left behind."""
    big = png_bytes() + b"\0" * (51 * 1024 * 1024)
    serve_outputs(simulator, host(simulator, "big.png", big))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert image["path"] is None and "larger than 50 MB" in image["save_error"]
    assert not outputs.exists() or list(outputs.iterdir()) == []


# --- #6: a total deadline for downloads ------------------------------------------------------------


class StreamingASGI(httpx2.AsyncBaseTransport):
    """Serves an ASGI app in process, handing its body over chunk by chunk as it is read.

    httpx2's ``ASGITransport`` collects the whole body before answering, so a trickling body would
    run to its end (moving the shared clock) before the server saw its first byte.
    """

    def __init__(self, app: Any, group: anyio.abc.TaskGroup) -> None:
        self.app = app
        self.group = group

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        to_reader, from_app = anyio.create_memory_object_stream[MutableMapping[str, Any]](0)
        gone = anyio.Event()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        asked = False

        async def receive() -> dict[str, Any]:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            try:
                await to_reader.send(message)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                gone.set()
                raise OSError("the client went away") from None

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except OSError:
                pass
            finally:
                to_reader.close()

        self.group.start_soon(run)
        start = await from_app.receive()
        return httpx2.Response(
            start["status"], headers=start.get("headers", []), stream=_Body(from_app, gone)
        )


class _Body(httpx2.AsyncByteStream):
    def __init__(self, messages: Any, gone: anyio.Event) -> None:
        self.messages = messages
        self.gone = gone

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for message in self.messages:
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body", False):
                return

    async def aclose(self) -> None:
        self.gone.set()
        self.messages.close()


async def test_a_trickling_output_does_not_hold_the_answer_past_the_budget_and_is_saved_later(
    simulator: PiAPISimulator, clock: ManualClock, outputs: Path
) -> None:
    """A body arriving 1 KB a second: the answer comes by the budget (+ the download floor) with the URL
    and a reason, and a later get_task saves it once it flows."""
    from piapi_mcp.server import DOWNLOAD_FLOOR_SECONDS

    simulator.controls.queue_seconds, simulator.controls.duration = 1, 20
    picture = png_bytes(size=(300, 300), mode="L") + b"\0" * (300 * 1024)
    url = host(simulator, "slow.png", picture, content_type="image/png", chunk_bytes=1024, chunk_seconds=1.0)
    serve_outputs(simulator, url)
    budget = 30.0
    async with anyio.create_task_group() as group:
        transport = StreamingASGI(simulator.app, group)
        async with httpx2.AsyncClient(transport=transport, base_url=SIM_BASE_URL) as http:
            server = server_over(simulator, clock, http, outputs, TEST_HOSTS)
            async with Client(server) as session:
                started = clock.monotonic()
                first = await edit(session, wait_seconds=budget)
                took = clock.monotonic() - started
                simulator.controls.files["slow.png"].chunk_bytes = 0
                task_id = (first.structured_content or {})["task_id"]
                again = await session.call_tool("get_task", {"task_id": task_id})
        group.cancel_scope.cancel()

    assert took <= budget + DOWNLOAD_FLOOR_SECONDS + 1.0, took
    (image,) = images_of(first)
    assert image["url"] == url and image["path"] is None
    assert "not saved yet" in image["save_error"] and "get_task" in image["save_error"]
    assert url in text_of(first)
    (later,) = images_of(again)
    assert Path(later["path"]).read_bytes() == picture


# --- low: no server paths for HTTP callers ----------------------------------------------------------


async def test_over_http_saved_files_are_named_relative_to_the_output_folder_without_file_links(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """An HTTP caller sees the file's name in the output folder, never this machine's absolute path."""
    serve_outputs(simulator, host(simulator, "pic.png", png_bytes()))
    server = server_over(simulator, clock, http, outputs, TEST_HOSTS, relative_output_paths=True)

    async with Client(server) as session:
        result = await edit(session)

    (image,) = images_of(result)
    assert image["path"] == os.path.basename(image["path"]) and (outputs / image["path"]).is_file()
    assert str(outputs) not in str(result.structured_content) and str(outputs) not in text_of(result)
    links = [block.uri for block in result.content if isinstance(block, ResourceLink)]
    assert not any(str(link).startswith("file:") for link in links)
