"""Local image files under attack: paths swapped while the server checks them, FIFOs, devices, symlinks.

The race tests run a thread that keeps swapping one path in the allowed folder between a regular
image and something hostile while the server resolves that path through ``kontext_edit`` again
and again. A watchdog thread is the hang guard: if no call finishes for ``STALL_SECONDS`` of real
time (a FIFO open blocking the event loop), it records the hang, stops the swapping and opens the
FIFO for writing so the blocked reader returns; the test then fails saying so instead of hanging.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from PIL import Image

from piapi_mcp import ManualClock, PiAPISimulator
from tests.conftest import make_server
from tests.test_kontext_edit import text_of

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="FIFOs and POSIX symlink races"),
]

#: Calls per race: at least RACE_CALLS, then on until the server has refused the hostile swap
#: RACE_REFUSALS_WANTED times (on a loaded machine the swapping process runs less), at most RACE_MAX_CALLS.
#: On the unfixed server every race failed within this (see each test's docstring).
RACE_CALLS = 300
RACE_REFUSALS_WANTED = 40
RACE_MAX_CALLS = 2000
#: Hang guard only (real time, never a timing assertion): no call finished for this long means stuck.
STALL_SECONDS = 10.0

#: What a refusal during the races may say (each is one sentence naming the cause).
RACE_REFUSALS = (
    "not a regular file",
    "outside the folders",
    "no file at",
    "changed while",
    "cannot be resolved",
    "not a PNG, JPEG or WebP image",
)


def png_bytes(color: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(out, format="PNG")
    return out.getvalue()


INSIDE = png_bytes("green")
OUTSIDE = png_bytes("red")


@pytest.fixture
def pictures(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    (folder / "cat.png").write_bytes(INSIDE)
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder the server may not read from, holding an image it must never upload."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.png").write_bytes(OUTSIDE)
    return folder


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    """Where the swapping thread prepares what it moves into place (same file system, not allowed)."""
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def server_for(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, allowed: list[Path]
) -> Any:
    """A server that may read ``allowed``, answers right after creating, and saves nothing."""
    return make_server(
        simulator, clock, http, allowed_dirs=allowed, wait_seconds=0, preview=False, outputs=None
    )


@pytest.fixture
async def client(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path
) -> AsyncIterator[Client]:
    async with Client(server_for(simulator, clock, http, [pictures])) as session:
        yield session


async def edit(client: Client, image: str, prompt: str = "make the sky purple") -> Any:
    return await client.call_tool("kontext_edit", {"prompt": prompt, "image": image})


# --- the races ------------------------------------------------------------------------------------

#: The swapping runs in a child process: a thread would only interleave with the server at its system
#: calls (the GIL), which hit the unfixed server's window about once per 1,000 calls; a process hits it
#: a few times per 100.
SWAPPER = r"""
import os, sys
mode, *paths = sys.argv[1:]
if mode == "folder":
    album, parked, link = paths
    steps = [(os.rename, album, parked), (os.rename, link, album), (os.rename, album, link), (os.rename, parked, album)]
else:
    hostile, regular, target, staging = paths
    put = os.symlink if mode == "symlink" else os.link
    hostile_tmp, regular_tmp = os.path.join(staging, "hostile.tmp"), os.path.join(staging, "regular.tmp")
    steps = [(put, hostile, hostile_tmp), (os.replace, hostile_tmp, target),
             (os.link, regular, regular_tmp), (os.replace, regular_tmp, target)]
first = True
while True:
    for step, source, destination in steps:
        step(source, destination)
    if first:
        print("swapping", flush=True)
        first = False
"""


class Swapper:
    """A child process that keeps swapping a path between what belongs there and something hostile."""

    def __init__(self, mode: str, *paths: Path) -> None:
        self._args = [sys.executable, "-c", SWAPPER, mode, *map(str, paths)]
        self._process: subprocess.Popen[str] | None = None
        self._stopped = False
        self._affinity: set[int] | None = None

    def __enter__(self) -> Swapper:
        self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        self._pin_apart(self._process.pid)
        assert self._process.stdout is not None
        started = self._process.stdout.readline()
        assert started == "swapping\n", f"the swapping process did not start (exit {self._process.poll()})"
        return self

    def _pin_apart(self, child: int) -> None:
        """Run the swapper and the server on different CPUs (Linux, two or more), restored on exit.

        Left to the scheduler, the two often share one CPU and take turns in whole time slices, so a
        swap seldom lands inside the server's check-then-open window (measured: leaks on the unfixed
        server dropped from ~30 to ~4 per 2,000 calls).
        """
        if not hasattr(os, "sched_setaffinity"):
            return
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return
        self._affinity = set(cpus)
        os.sched_setaffinity(0, {cpus[0]})
        os.sched_setaffinity(child, set(cpus[1:]))

    def stop(self) -> None:
        """Stop swapping (idempotent; called from the watchdog thread too)."""
        self._stopped = True
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait()

    def __exit__(self, *exc: object) -> None:
        died = None if self._stopped or self._process is None else self._process.poll()
        self.stop()
        if self._affinity is not None:
            os.sched_setaffinity(0, self._affinity)
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        assert died is None, f"the swapping process died (exit {died}), so the race stopped early"


class Watchdog:
    """Hang guard: when calls stop finishing, stop the swapper and free a reader blocked on ``fifo``."""

    def __init__(self, swapper: Swapper, fifo: Path | None) -> None:
        self._swapper = swapper
        self._fifo = fifo
        self.finished = 0
        self.hung = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def _run(self) -> None:
        seen = -1
        while not self._done.wait(STALL_SECONDS):
            if self.finished != seen:
                seen = self.finished
                continue
            self.hung = True
            self._swapper.stop()
            break
        while self.hung and not self._done.wait(0.05):
            self._free_blocked_reader()

    def _free_blocked_reader(self) -> None:
        if self._fifo is None:
            return
        # Succeeds only while someone has the FIFO open for reading; closing it gives them EOF.
        with contextlib.suppress(OSError):
            os.close(os.open(self._fifo, os.O_WRONLY | os.O_NONBLOCK))

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


@contextlib.contextmanager
def racing(swapper: Swapper, fifo: Path | None = None) -> Iterator[Watchdog]:
    """The swapper running, under a watchdog that frees the server if a call gets stuck."""
    with swapper, Watchdog(swapper, fifo) as watchdog:
        yield watchdog


def swapped_file(staging: Path, pictures: Path) -> tuple[Path, Path]:
    """The inside image as ``staging/regular.png`` and linked at ``pictures/swapped.png``."""
    regular = staging / "regular.png"
    regular.write_bytes(INSIDE)
    target = pictures / "swapped.png"
    os.link(regular, target)
    return regular, target


async def edit_while_racing(client: Client, image: str, watchdog: Watchdog) -> list[str]:
    """Edit ``image`` again and again (each a new prompt, so none is deduplicated); the refusals."""
    refusals: list[str] = []
    for call in range(RACE_MAX_CALLS):
        # Both outcomes must be seen: on a loaded machine the swap can land on every one of a run of calls.
        succeeded = call - len(refusals)
        if call >= RACE_CALLS and len(refusals) >= RACE_REFUSALS_WANTED and succeeded > 0:
            break
        with anyio.fail_after(STALL_SECONDS):  # hang guard for a stuck await; the watchdog covers the rest
            result = await edit(client, image, prompt=f"make the sky purple, take {call}")
        watchdog.finished += 1
        if watchdog.hung:
            break
        if result.is_error:
            refusals.append(text_of(result))
    return refusals


def assert_only_inside_bytes_were_uploaded(
    simulator: PiAPISimulator, refusals: list[str], watchdog: Watchdog
) -> None:
    assert not watchdog.hung, (
        f"a call blocked the server for over {STALL_SECONDS:.0f} s on a path swapped while it was checked "
        "(a FIFO opened in blocking mode); the watchdog had to open the FIFO to free it"
    )
    uploaded = list(simulator.uploads.values())
    leaked = sum(1 for data in uploaded if data == OUTSIDE)
    assert leaked == 0, f"{leaked} of {len(uploaded)} uploads were the image from outside the allowed folders"
    assert all(data == INSIDE for data in uploaded), "an upload was neither image"
    assert uploaded, "no call succeeded, so the race proved nothing"
    assert refusals, "no call was refused, so the hostile swaps were never seen"
    for message in refusals:
        assert "\n" not in message and any(phrase in message for phrase in RACE_REFUSALS), message
    assert simulator.created_count == len(uploaded)


async def test_a_fifo_swapped_in_while_the_path_is_checked_never_blocks_the_server(
    client: Client, simulator: PiAPISimulator, pictures: Path, staging: Path
) -> None:
    """Swapping a FIFO in between the check and the open must not hang the server; nothing odd is sent."""
    fifo = staging / "pipe"
    os.mkfifo(fifo)
    regular, target = swapped_file(staging, pictures)

    with racing(Swapper("link", fifo, regular, target, staging), fifo) as guard:
        refusals = await edit_while_racing(client, str(target), guard)

    assert_only_inside_bytes_were_uploaded(simulator, refusals, guard)


async def test_a_symlink_swapped_in_while_the_path_is_checked_never_uploads_a_file_from_outside(
    client: Client, simulator: PiAPISimulator, pictures: Path, outside: Path, staging: Path
) -> None:
    """Swapping in a link to a file outside the allowed folders never gets that file uploaded."""
    regular, target = swapped_file(staging, pictures)

    with racing(Swapper("symlink", outside / "secret.png", regular, target, staging)) as guard:
        refusals = await edit_while_racing(client, str(target), guard)

    assert_only_inside_bytes_were_uploaded(simulator, refusals, guard)


async def test_a_folder_swapped_for_a_symlink_to_outside_never_uploads_a_file_from_outside(
    client: Client, simulator: PiAPISimulator, pictures: Path, outside: Path, staging: Path
) -> None:
    """A folder on the path replaced by a link out (not just the last name) is caught on the opened file."""
    album = pictures / "album"
    album.mkdir()
    (album / "secret.png").write_bytes(INSIDE)  # the outside file's name, the inside image's bytes
    link = staging / "album-link"
    link.symlink_to(outside, target_is_directory=True)

    with racing(Swapper("folder", album, staging / "album", link)) as guard:
        refusals = await edit_while_racing(client, str(album / "secret.png"), guard)

    assert_only_inside_bytes_were_uploaded(simulator, refusals, guard)


# --- one hostile file at a time -------------------------------------------------------------------


async def refused(client: Client, simulator: PiAPISimulator, image: str) -> str:
    """The one-sentence refusal for ``image``; fails if anything was uploaded or created."""
    with anyio.fail_after(STALL_SECONDS):  # hang guard only
        result = await edit(client, image)
    assert result.is_error
    message = text_of(result)
    assert "\n" not in message, message
    assert simulator.uploads == {} and simulator.created_count == 0
    return message


async def test_a_fifo_in_the_allowed_folder_is_refused_at_once(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """A FIFO named like an image is not a regular file; nobody needs to write to it for the answer."""
    os.mkfifo(pictures / "pipe.png")

    assert "not a regular file" in await refused(client, simulator, str(pictures / "pipe.png"))


async def test_a_symlink_to_a_fifo_in_the_allowed_folder_is_refused_at_once(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """Following an inside link to an inside FIFO does not block either."""
    os.mkfifo(pictures / "pipe")
    (pictures / "pipe.png").symlink_to(pictures / "pipe")

    assert "not a regular file" in await refused(client, simulator, str(pictures / "pipe.png"))


async def test_a_device_in_an_allowed_folder_is_refused_without_being_read(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path
) -> None:
    """Even with /dev allowed, /dev/zero is a device, not an image: refused, never read."""
    async with Client(server_for(simulator, clock, http, [pictures, Path("/dev")])) as session:
        message = await refused(session, simulator, "/dev/zero")

    assert "not a regular file" in message


async def test_a_symlink_to_a_device_is_refused_as_outside_the_allowed_folders(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """A link named like an image pointing at /dev/zero is judged by where it leads."""
    (pictures / "zero.png").symlink_to("/dev/zero")

    message = await refused(client, simulator, str(pictures / "zero.png"))

    assert "outside the folders" in message and str(pictures.resolve()) in message


async def test_a_symlink_to_a_file_outside_is_refused_naming_the_allowed_folders(
    client: Client, simulator: PiAPISimulator, pictures: Path, outside: Path
) -> None:
    """Absolute and relative links out, and a link to a folder outside, are all refused before reading."""
    (pictures / "absolute.png").symlink_to(outside / "secret.png")
    (pictures / "relative.png").symlink_to(Path("..") / "outside" / "secret.png")
    (pictures / "elsewhere").symlink_to(outside, target_is_directory=True)

    for image in ("absolute.png", "relative.png", "elsewhere/secret.png"):
        message = await refused(client, simulator, str(pictures / image))
        assert "outside the folders" in message and str(pictures.resolve()) in message, message


async def test_a_symlink_inside_the_allowed_folder_to_a_file_inside_still_works(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """Links that stay inside the allowed folders are followed: the file they name is uploaded."""
    (pictures / "sub").mkdir()
    (pictures / "sub" / "alias.png").symlink_to(Path("..") / "cat.png")
    (pictures / "shortcut").symlink_to(pictures / "sub", target_is_directory=True)

    for image in ("sub/alias.png", "shortcut/alias.png"):
        result = await edit(client, str(pictures / image), prompt=f"make {image} purple")
        assert not result.is_error, text_of(result)

    assert list(simulator.uploads.values()) == [INSIDE, INSIDE]


async def test_an_allowed_folder_reached_through_a_symlink_still_works(
    simulator: PiAPISimulator, clock: ManualClock, http: httpx2.AsyncClient, pictures: Path, tmp_path: Path
) -> None:
    """PIAPI_ALLOWED_DIRS may name a link to the real folder; files are judged by their real place."""
    (tmp_path / "pics-link").symlink_to(pictures, target_is_directory=True)
    async with Client(server_for(simulator, clock, http, [tmp_path / "pics-link"])) as session:
        result = await edit(session, str(tmp_path / "pics-link" / "cat.png"))

    assert not result.is_error, text_of(result)
    assert list(simulator.uploads.values()) == [INSIDE]


async def test_an_unreadable_file_is_refused_in_one_sentence(
    client: Client, simulator: PiAPISimulator, pictures: Path
) -> None:
    """A file the server may not open says so instead of failing with a traceback."""
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    locked = pictures / "locked.png"
    locked.write_bytes(INSIDE)
    locked.chmod(0)

    message = await refused(client, simulator, str(locked))

    assert "cannot be opened" in message
