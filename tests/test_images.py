"""Images in and out: local files, data: URIs and task references as inputs; saved outputs and previews."""

from __future__ import annotations

import base64
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import BlobResourceContents, ImageContent, ResourceLink, Root
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.loopback import serve_app_on_loopback
from piapi_mcp.media import OutputSaver
from tests.conftest import API_KEY, make_server
from tests.test_kontext_edit import text_of

pytestmark = pytest.mark.anyio

PROMPT = "make the sky purple"


def png_bytes(size: tuple[int, int] = (64, 48), color: str = "orange") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "cat.png").write_bytes(png_bytes())
    return folder


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


@pytest.fixture
async def client(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path, outputs: Path
) -> AsyncIterator[Client]:
    """A server that may read ``pictures``, saves outputs to ``outputs`` and shows previews."""
    server = make_server(
        simulator, clock, http, allowed_dirs=[pictures], outputs=OutputSaver(http, outputs), preview=True
    )
    async with Client(server, raise_exceptions=True) as session:
        yield session


def previews(result: Any) -> list[ImageContent]:
    return [block for block in result.content if isinstance(block, ImageContent)]


async def edit(client: Client, image: str, **extra: Any) -> Any:
    return await client.call_tool("kontext_edit", {"prompt": PROMPT, "image": image, **extra})


async def test_a_local_png_in_an_allowed_folder_is_uploaded_and_piapi_gets_a_url(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """The file's bytes are uploaded and the task PiAPI receives carries an http(s) URL."""
    result = await edit(client, str(pictures / "cat.png"))

    assert not result.is_error, text_of(result)
    (task,) = simulator.tasks.values()
    assert task.input["image"].startswith("http://piapi.test/")
    assert list(simulator.uploads.values()) == [(pictures / "cat.png").read_bytes()]


@pytest.mark.parametrize("form", ["file-uri", "tilde"])
async def test_file_uris_and_home_relative_paths_are_accepted(
    client: Client, simulator: PiAPISimulator, pictures: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file:// URIs and ~ paths name the same local files."""
    monkeypatch.setenv("HOME", str(pictures.parent))
    image = (pictures / "cat.png").as_uri() if form == "file-uri" else "~/pictures/cat.png"

    result = await edit(client, image)

    assert not result.is_error, text_of(result)
    assert len(simulator.uploads) == 1


async def test_a_data_uri_is_uploaded(client: Client, simulator: PiAPISimulator) -> None:
    """A base64 data: URI becomes an uploaded file."""
    data = png_bytes(color="blue")

    result = await edit(client, "data:image/png;base64," + base64.b64encode(data).decode())

    assert not result.is_error, text_of(result)
    assert list(simulator.uploads.values()) == [data]
    assert next(iter(simulator.tasks.values())).input["image"].startswith("http")


async def test_a_task_reference_reuses_an_earlier_output_without_uploading(
    client: Client, simulator: PiAPISimulator
) -> None:
    """piapi://tasks/{id} edits the result of an earlier task."""
    first = await edit(client, "https://example.com/in.png")
    first_id = (first.structured_content or {})["task_id"]
    first_url = (first.structured_content or {})["outputs"][0]["url"]

    second = await client.call_tool(
        "kontext_edit", {"prompt": "now add a moon", "image": f"piapi://tasks/{first_id}#1"}
    )

    assert not second.is_error, text_of(second)
    assert simulator.uploads == {}
    inputs = [task.input["image"] for task in simulator.tasks.values()]
    assert inputs == ["https://example.com/in.png", first_url]


@pytest.mark.parametrize(
    ("make_image", "phrase"),
    [
        (lambda tmp, pics: str(tmp / "elsewhere.png"), "outside the folders"),
        (lambda tmp, pics: str(pics / ".." / "elsewhere.png"), "outside the folders"),
        (lambda tmp, pics: str(pics / "link-out.png"), "outside the folders"),
        (lambda tmp, pics: str(pics / "huge.png"), "over PiAPI's 10 MB upload limit"),
        (lambda tmp, pics: str(pics / "notes.png"), "not a PNG, JPEG or WebP image"),
        (lambda tmp, pics: str(pics / "folder.png"), "not a regular file"),
        (lambda tmp, pics: "/dev/zero", "outside the folders"),
        (lambda tmp, pics: str(pics / "missing.png"), "no file at"),
        (lambda tmp, pics: "cat.png", "not in an accepted form"),
        (lambda tmp, pics: "data:image/png;base64,%%%", "not valid base64"),
        (lambda tmp, pics: "piapi://tasks/unknown-task", "no such task"),
    ],
    ids=[
        "outside",
        "dotdot-escape",
        "symlink-out",
        "12-MB",
        "text-renamed-png",
        "directory",
        "device",
        "missing",
        "relative-name",
        "bad-base64",
        "unknown-task-ref",
    ],
)
async def test_unusable_image_inputs_are_refused_and_nothing_is_uploaded(
    client: Client,
    simulator: PiAPISimulator,
    pictures: Path,
    tmp_path: Path,
    make_image: Any,
    phrase: str,
) -> None:
    """Escapes, symlinks out, huge files and non-images are refused in one sentence, before any upload."""
    (tmp_path / "elsewhere.png").write_bytes(png_bytes())
    (pictures / "link-out.png").symlink_to(tmp_path / "elsewhere.png")
    (pictures / "huge.png").write_bytes(png_bytes() + b"\0" * (12 * 1024 * 1024))
    (pictures / "notes.png").write_text("just some notes, not a picture")
    (pictures / "folder.png").mkdir()

    result = await edit(client, make_image(tmp_path, pictures))

    assert result.is_error
    message = text_of(result)
    assert phrase in message and "\n" not in message
    assert simulator.uploads == {} and simulator.created_count == 0


async def test_refusals_name_the_allowed_folders(client: Client, pictures: Path, tmp_path: Path) -> None:
    """The person learns where images may come from."""
    result = await edit(client, str(tmp_path / "elsewhere.png"))

    assert str(pictures.resolve()) in text_of(result) and "PIAPI_ALLOWED_DIRS" in text_of(result)


async def test_local_paths_are_refused_when_no_folder_is_allowed(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """Hosted over HTTP without PIAPI_ALLOWED_DIRS, the server's disk is off limits."""
    server = make_server(simulator, clock, http, allowed_dirs=[], use_client_roots=False)
    async with Client(server) as session:
        result = await edit(session, str(pictures / "cat.png"))

    assert result.is_error and "no folder is allowed" in text_of(result)
    assert simulator.uploads == {}


async def test_files_inside_the_clients_roots_are_allowed(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """Folders the MCP client declares as roots count as allowed folders."""

    async def roots(context: Any) -> Any:
        from mcp.types import ListRootsResult

        return ListRootsResult(roots=[Root(uri=pictures.as_uri(), name="pictures")])

    server = make_server(simulator, clock, http, allowed_dirs=[])
    async with Client(server, mode="legacy", list_roots_callback=roots) as session:
        result = await edit(session, str(pictures / "cat.png"))

    assert not result.is_error, text_of(result)
    assert len(simulator.uploads) == 1


async def test_an_upload_the_plan_does_not_allow_is_explained(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """PiAPI's 403 on upload says what plan is needed and what to do instead."""
    simulator.controls.uploads_allowed = False

    result = await edit(client, str(pictures / "cat.png"))

    assert result.is_error
    assert "Creator plan" in text_of(result) and "http(s) URL" in text_of(result)
    assert simulator.created_count == 0


async def test_a_completed_result_has_a_small_preview_the_url_and_the_saved_file(
    client: Client, http: httpx2.AsyncClient, outputs: Path
) -> None:
    """The model can look at the result, the host gets the URL, the person gets the file."""
    result = await edit(client, "https://example.com/in.png", width=1024, height=768)

    (preview,) = previews(result)
    assert preview.mime_type == "image/jpeg" and len(preview.data) <= 150 * 1024
    with Image.open(io.BytesIO(base64.b64decode(preview.data))) as thumb:
        assert max(thumb.size) <= 768
    image = (result.structured_content or {})["outputs"][0]
    links = [block.uri for block in result.content if isinstance(block, ResourceLink)]
    saved = Path(image["path"])
    assert image["url"] in links and saved.as_uri() in links
    assert saved.parent == outputs and saved.name.startswith((result.structured_content or {})["task_id"])
    assert saved.read_bytes() == (await http.get(image["url"])).content


async def test_the_task_image_resource_serves_the_saved_bytes(client: Client) -> None:
    """piapi://tasks/{id}/outputs/1 returns the saved file as a blob."""
    result = await edit(client, "https://example.com/in.png")
    data = result.structured_content or {}

    (content,) = (await client.read_resource(f"piapi://tasks/{data['task_id']}/outputs/1")).contents

    assert isinstance(content, BlobResourceContents)
    assert base64.b64decode(content.blob) == Path(data["outputs"][0]["path"]).read_bytes()


async def test_fetching_an_output_twice_does_not_save_it_twice(client: Client, outputs: Path) -> None:
    """get_task on a finished task reuses the saved copy instead of writing another file."""
    result = await edit(client, "https://example.com/in.png")
    task_id = (result.structured_content or {})["task_id"]

    again = await client.call_tool("get_task", {"task_id": task_id})

    assert (again.structured_content or {})["outputs"][0]["path"] == (result.structured_content or {})[
        "outputs"
    ][0]["path"]
    assert len(list(outputs.iterdir())) == 1


async def test_a_failed_download_is_reported_beside_the_url_not_as_a_failure(
    client: Client, simulator: PiAPISimulator
) -> None:
    """If the output cannot be fetched, the edit still succeeds and says why there is no file."""
    simulator.controls.serve_outputs = False

    result = await edit(client, "https://example.com/in.png")

    assert not result.is_error
    image = (result.structured_content or {})["outputs"][0]
    assert image["path"] is None and "HTTP 404" in image["save_error"]
    assert previews(result) == []


async def test_previews_and_saving_can_be_turned_off(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    """PIAPI_SAVE_OUTPUTS=0 and PIAPI_PREVIEW=0 leave just the links."""
    server = make_server(simulator, clock, http, outputs=OutputSaver(http, None), preview=False)
    async with Client(server) as session:
        result = await edit(session, "https://example.com/in.png")

    assert previews(result) == []
    assert (result.structured_content or {})["outputs"][0]["path"] is None


async def test_stdio_server_takes_a_local_file_a_data_uri_and_a_task_reference(
    simulator: PiAPISimulator, clock: ManualClock, pictures: Path, outputs: Path
) -> None:
    """Over stdio, with the settings a user would set, all three input forms reach PiAPI as URLs."""
    async with serve_app_on_loopback(simulator.app) as sim_url:
        env = {
            "PIAPI_API_KEY": API_KEY,
            "PIAPI_BASE_URL": sim_url,
            "PIAPI_UPLOAD_URL": f"{sim_url}/api/ephemeral_resource",
            "PIAPI_ALLOWED_DIRS": str(pictures),
            "PIAPI_OUTPUT_DIR": str(outputs),
            "PIAPI_STATE_DIR": os.environ["PIAPI_STATE_DIR"],
            "PIAPI_WAIT_SECONDS": "0",
            "PATH": os.environ.get("PATH", ""),
        }
        params = StdioServerParameters(command=sys.executable, args=["-m", "piapi_mcp"], env=env)
        with anyio.fail_after(30):
            async with Client(params) as session:
                from_file = await edit(session, str(pictures / "cat.png"))
                data_uri = "data:image/png;base64," + base64.b64encode(png_bytes(color="red")).decode()
                from_data = await edit(session, data_uri)
                clock.advance(60)
                first_id = (from_file.structured_content or {})["task_id"]
                finished = await session.call_tool("get_task", {"task_id": first_id})
                from_task = await edit(session, f"piapi://tasks/{first_id}")

    for result in (from_file, from_data, finished, from_task):
        assert not result.is_error, text_of(result)
    assert all(task.input["image"].startswith("http://127.0.0.1:") for task in simulator.tasks.values())
    assert len(simulator.uploads) == 2 and simulator.created_count == 3
    saved = Path((finished.structured_content or {})["outputs"][0]["path"])
    assert saved.parent == outputs and saved.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"file_name": "a.png", "file_data": base64.b64encode(b"x" * (10 * 1024 * 1024 + 1)).decode()}, 400),
        ({"file_name": "a.exe", "file_data": base64.b64encode(b"x").decode()}, 400),
        ({"file_name": "a" * 125 + ".png", "file_data": base64.b64encode(b"x").decode()}, 400),
        ({"file_name": "a.png"}, 400),
        (
            {"file_name": "a.PNG", "file_data": "data:image/png;base64," + base64.b64encode(b"x").decode()},
            200,
        ),
    ],
    ids=["over-10MB", "bad-extension", "long-name", "no-data", "data-uri-prefix"],
)
async def test_the_simulated_upload_endpoint_keeps_piapis_contract(
    http: httpx2.AsyncClient, body: dict[str, str], status: int
) -> None:
    """The simulator refuses what PiAPI refuses (size, extension, name) with its own envelope."""
    response = await http.post("/api/ephemeral_resource", json=body, headers={"X-API-Key": API_KEY})

    assert response.status_code == status
    envelope = response.json()
    if status == 200:
        assert envelope["data"]["url"].startswith("http://piapi.test/")
    else:
        assert envelope == {"code": 400, "data": None, "message": "Invalid request parameters"}


async def test_the_simulated_edit_is_drawn_on_the_uploaded_picture(
    client: Client, pictures: Path, http: httpx2.AsyncClient
) -> None:
    """In the sandbox the result visibly comes from the user's own picture: red in, reddish out."""
    colors = {}
    for color in ("red", "blue"):
        (pictures / f"{color}.png").write_bytes(png_bytes(size=(32, 32), color=color))
        result = await edit(client, str(pictures / f"{color}.png"), width=256, height=256)
        served = (await http.get((result.structured_content or {})["outputs"][0]["url"])).content
        with Image.open(io.BytesIO(served)) as image:
            assert image.size == (256, 256)
            colors[color] = image.convert("RGB").resize((1, 1)).getpixel((0, 0))

    (red_r, _, red_b), (blue_r, _, blue_b) = colors["red"], colors["blue"]  # type: ignore[misc]
    assert red_r - blue_r > 100 and blue_b - red_b > 100
