"""``file://`` URIs and roots read as Windows paths (drive letters, ``%3A``, UNC hosts) on any OS, and
as POSIX paths as before (another host is not this machine)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.types import ListRootsResult, Root

from piapi_mcp import ManualClock, PiAPISimulator
from piapi_mcp.media import path_from_file_uri, paths_from_roots
from tests.conftest import make_server
from tests.helpers import png_bytes, text_of


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///C:/Users/a/Pictures", r"C:\Users\a\Pictures"),
        ("file:///C%3A/Users/a", r"C:\Users\a"),
        ("file:///c%3a/Users/a", r"c:\Users\a"),
        ("file://localhost/C:/Users/a", r"C:\Users\a"),
        ("file://LOCALHOST/D:/x", r"D:\x"),
        ("file:///C|/old/style", r"C:\old\style"),
        ("file://C:/Users/a", r"C:\Users\a"),
        ("file:///C:", "C:\\"),
        ("file:///C:/My%20Pictures/100%25%20real", r"C:\My Pictures\100% real"),
        ("file://server/share/dir", r"\\server\share\dir"),
        ("file://server/share/My%20Dir", r"\\server\share\My Dir"),
        ("file:////server/share/dir", r"\\server\share\dir"),
        ("FILE:///C:/Upper/Scheme", r"C:\Upper\Scheme"),
    ],
)
def test_a_windows_file_uri_names_the_drive_or_share_path(uri: str, expected: str) -> None:
    assert path_from_file_uri(uri, PureWindowsPath) == PureWindowsPath(expected)
    assert str(path_from_file_uri(uri, PureWindowsPath)) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "file:///Users/a",  # no drive: not one definite place on Windows
        "file://server",  # a host without a share
        "https://example.com/C:/x",
        "C:/Users/a",
    ],
)
def test_a_windows_uri_that_names_no_definite_local_folder_gives_none(uri: str) -> None:
    assert path_from_file_uri(uri, PureWindowsPath) is None


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///home/a/Pictures", "/home/a/Pictures"),
        ("file://localhost/home/a", "/home/a"),
        ("file:///home/a/My%20Pictures", "/home/a/My Pictures"),
        ("file:///home/a/colon%3Aname", "/home/a/colon:name"),
    ],
)
def test_a_posix_file_uri_names_its_path_as_before(uri: str, expected: str) -> None:
    assert path_from_file_uri(uri, PurePosixPath) == PurePosixPath(expected)


def test_a_posix_file_uri_on_another_host_is_not_this_machine() -> None:
    assert path_from_file_uri("file://server/share/dir", PurePosixPath) is None


def test_roots_keep_only_the_local_folders_in_order() -> None:
    uris = [
        "file:///C%3A/Users/a/Pictures",
        "https://example.com/not-a-folder",
        "file://nas/photos/2024",
        "file:///D:/Scans",
    ]
    assert paths_from_roots(uris, PureWindowsPath) == [
        PureWindowsPath(r"C:\Users\a\Pictures"),
        PureWindowsPath(r"\\nas\photos\2024"),
        PureWindowsPath(r"D:\Scans"),
    ]
    assert paths_from_roots(uris, PurePosixPath) == [
        PurePosixPath("/C:/Users/a/Pictures"),
        PurePosixPath("/D:/Scans"),
    ]


@pytest.mark.anyio
async def test_a_root_with_escaped_spaces_allows_a_picture_given_as_an_escaped_file_uri(
    tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    pictures = tmp_path / "My Pictures"
    pictures.mkdir()
    (pictures / "a b.png").write_bytes(png_bytes())

    async def roots(context: Any) -> ListRootsResult:
        return ListRootsResult(roots=[Root(uri=pictures.as_uri(), name="pictures")])

    server = make_server(simulator, clock, http, allowed_dirs=[])
    async with Client(server, mode="legacy", list_roots_callback=roots) as client:
        uri = (pictures / "a b.png").as_uri()
        assert "%20" in uri
        result = await client.call_tool("kontext_edit", {"prompt": "p", "image": uri, "wait_seconds": 0})
    assert not result.is_error, text_of(result)
    assert len(simulator.uploads) == 1


@pytest.mark.anyio
async def test_a_file_uri_on_another_host_is_refused_in_one_sentence(
    tmp_path: Path, simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient
) -> None:
    server = make_server(simulator, clock, http, allowed_dirs=[tmp_path])
    async with Client(server) as client:
        result = await client.call_tool(
            "kontext_edit", {"prompt": "p", "image": "file://fileserver/share/pic.png", "wait_seconds": 0}
        )
    assert result.is_error
    assert "does not name a file on this machine" in text_of(result)
    assert "no task was created" in text_of(result)
    assert simulator.uploads == {}
