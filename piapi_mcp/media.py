"""Images in and out: turning what the user gave into a URL PiAPI can fetch, saving and previewing outputs.

Inputs (every image field of every tool goes through :class:`ImageResolver`):

- an ``http(s)://`` URL passes through unchanged;
- a local path (absolute, ``~``, or a ``file://`` URI) is read only inside the allowed folders,
  after resolving symlinks, then uploaded to PiAPI's file-upload endpoint;
- a ``data:`` URI is decoded and uploaded the same way;
- ``piapi://tasks/{id}`` (first output) or ``piapi://tasks/{id}#n`` reuses an earlier output.

Bytes are checked before any upload: at most 10 MB (PiAPI's limit) and an image by content
(PNG, JPEG or WebP magic bytes), whatever the file is called.

Outputs: :class:`OutputSaver` downloads a finished task's images (only the URLs PiAPI returned for
it) into the output folder, and :func:`make_preview` makes the small thumbnail the model sees.
"""

from __future__ import annotations

import base64
import binascii
import errno
import io
import os
import re
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

import anyio.to_thread
import httpx2

from piapi_mcp.errors import shown
from piapi_mcp.models import Task

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
MAX_OUTPUT_BYTES: Final = 50 * 1024 * 1024
PREVIEW_MAX_SIDE: Final = 768
#: The preview's base64 text stays under this, so results stay far below hosts' size limits.
PREVIEW_MAX_BASE64: Final = 150 * 1024
IMAGE_FORMS: Final = (
    "an http(s) URL, a local file path or file:// URI inside the allowed folders, a data: URI, "
    "or piapi://tasks/{task_id} (optionally #n) for an earlier output"
)
_TASK_REF: Final = re.compile(r"^piapi://tasks/([A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:#(\d{1,3}))?$")
_DATA_URI: Final = re.compile(r"^data:([\w.+/-]*)(;[\w=.+-]+)*?(;base64)?,", re.IGNORECASE)


class ImageInputError(Exception):
    """An image argument that cannot be used; the message says why and what to do instead."""


@dataclass(frozen=True)
class ImageKind:
    """An image format PiAPI accepts, by its magic bytes."""

    extension: str
    mime_type: str


PNG: Final = ImageKind("png", "image/png")
JPEG: Final = ImageKind("jpg", "image/jpeg")
WEBP: Final = ImageKind("webp", "image/webp")


def sniff_image(data: bytes) -> ImageKind | None:
    """The image format of ``data`` judged by its content, or ``None`` if it is not PNG/JPEG/WebP."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def _too_large(what: str, size: int) -> ImageInputError:
    return ImageInputError(
        f"{what} is {size / (1024 * 1024):.1f} MB, over PiAPI's 10 MB upload limit; use a smaller image "
        "or give a public http(s) URL."
    )


def check_image_bytes(data: bytes, what: str) -> ImageKind:
    """Check size and content of bytes about to be uploaded.

    Raises:
        ImageInputError: too large, or not a PNG, JPEG or WebP image.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_large(what, len(data))
    kind = sniff_image(data)
    if kind is None:
        raise ImageInputError(
            f"{what} is not a PNG, JPEG or WebP image (judged by its content, not its name)."
        )
    return kind


class Confinement:
    """The folders local images may be read from.

    A file is opened first and judged afterwards, on the opened descriptor, so swapping the path
    between the check and the read cannot slip anything past it: the resolved path is opened
    with ``O_NOFOLLOW | O_NONBLOCK`` (a link swapped in afterwards fails, a FIFO or device opens at
    once without waiting), then ``fstat`` must say "regular file" within the size limit and the
    descriptor's real path (``/proc/self/fd``, ``F_GETPATH`` or ``GetFinalPathNameByHandleW``) must
    lie inside an allowed folder. Blocking: call it from a worker thread.
    """

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(dict.fromkeys(folder.expanduser().resolve() for folder in folders))

    def with_roots(self, roots: Sequence[Path]) -> Confinement:
        """These folders plus the client's roots."""
        return Confinement([*self.folders, *roots])

    def _inside(self, path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in self.folders)

    def _outside_error(self, raw: str) -> ImageInputError:
        allowed = ", ".join(str(folder) for folder in self.folders)
        return ImageInputError(
            f"{raw!r} is outside the folders images may be read from ({allowed}); move the file there "
            "or add its folder to PIAPI_ALLOWED_DIRS."
        )

    def open_file(self, raw: str, path: Path) -> bytes:
        """Read ``path`` (at most the limit + 1 bytes) if it is a regular file inside an allowed folder.

        Symlinks that stay inside the allowed folders are followed; everything is judged again on
        the opened file, so a path swapped meanwhile is refused, never read and never waited on.

        Raises:
            ImageInputError: outside every allowed folder, not a regular file, missing, unreadable,
                changed while being opened, or too large.
        """
        if not self.folders:
            raise ImageInputError(
                f"Local files cannot be read here ({raw!r}): no folder is allowed. Set PIAPI_ALLOWED_DIRS "
                "to the folders images may come from, or give an http(s) URL."
            )
        try:
            # Not strict: confinement is judged before existence, so nothing outside can be probed.
            real = path.expanduser().resolve()
        except (RuntimeError, OSError):
            raise ImageInputError(f"{raw!r} cannot be resolved to a file.") from None
        if not self._inside(real):
            raise self._outside_error(raw)
        try:
            # A cheap first look, so a device or FIFO that is plainly there is not even opened.
            if not stat.S_ISREG(os.lstat(real).st_mode):
                raise ImageInputError(f"{raw!r} is not a regular file.")
            fd = os.open(real, _OPEN_FLAGS)
        except OSError as err:
            raise _open_error(raw, err) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ImageInputError(f"{raw!r} is not a regular file.")
            if not self._opened_inside(fd, real, info):
                raise self._outside_error(raw)
            if info.st_size > MAX_UPLOAD_BYTES:
                raise _too_large(repr(raw), info.st_size)
            return _read_at_most(fd, MAX_UPLOAD_BYTES + 1)
        except OSError as err:
            raise ImageInputError(f"{raw!r} could not be read ({err.strerror or err}).") from None
        finally:
            os.close(fd)

    def _opened_inside(self, fd: int, real: Path, info: os.stat_result) -> bool:
        """Whether the file open on ``fd`` (opened by the path ``real``) lies inside an allowed folder.

        Where the platform cannot name an open file, the path is resolved again and must still be
        inside and name this very file (same device and inode): narrower than naming the
        descriptor, since a folder on the path swapped twice in between would pass.
        """
        opened = _descriptor_path(fd)
        if opened is not None:
            return self._inside(opened)
        try:
            again = real.resolve(strict=True)
            return self._inside(again) and os.path.samestat(info, os.stat(again))
        except (RuntimeError, OSError):
            return False


#: No following of the last link (the path is already resolved: a link there now was swapped in),
#: no waiting for a FIFO's writer or a device, no controlling terminal, binary on Windows.
_OPEN_FLAGS: Final = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _open_error(raw: str, err: OSError) -> ImageInputError:
    """One sentence for a local file that could not be opened."""
    if err.errno in (errno.ENOENT, errno.ENOTDIR):
        return ImageInputError(f"There is no file at {raw!r}.")
    if err.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: what FreeBSD says for O_NOFOLLOW on a link
        return ImageInputError(
            f"{raw!r} changed while it was being opened (it became a symbolic link), so it was not read; "
            "try again once it stays put."
        )
    return ImageInputError(f"{raw!r} cannot be opened ({err.strerror or err}).")


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from ``fd``, never more, however large the file has grown."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(limit - size, 1024 * 1024))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _descriptor_path(fd: int) -> Path | None:
    """The real path of the file open on ``fd``, or ``None`` where this platform cannot say."""
    if sys.platform == "win32":
        return _windows_handle_path(fd)
    if sys.platform == "darwin":
        try:
            import fcntl

            # F_GETPATH fills a MAXPATHLEN (1024) buffer with the path the descriptor refers to.
            named = fcntl.fcntl(fd, getattr(fcntl, "F_GETPATH", 50), bytes(1024))
        except OSError:
            return None
        return Path(os.fsdecode(named.split(b"\0", 1)[0]))
    try:
        link = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc (some BSDs, some containers)
        return None
    return Path(link.removesuffix(" (deleted)")) if link.startswith("/") else None


def _windows_handle_path(fd: int) -> Path | None:
    """``GetFinalPathNameByHandleW`` for ``fd`` on Windows, without its ``\\\\?\\`` prefix."""
    if sys.platform != "win32":
        return None
    import ctypes
    import msvcrt
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    final_path = kernel32.GetFinalPathNameByHandleW
    final_path.argtypes = [wintypes.HANDLE, wintypes.LPWSTR, wintypes.DWORD, wintypes.DWORD]
    final_path.restype = wintypes.DWORD
    buffer = ctypes.create_unicode_buffer(32768)
    length = final_path(msvcrt.get_osfhandle(fd), buffer, len(buffer), 0)
    if length == 0 or length >= len(buffer):
        return None
    name = buffer.value
    if name.startswith("\\\\?\\UNC\\"):
        return Path("\\\\" + name[8:])
    return Path(name.removeprefix("\\\\?\\"))


def parse_allowed_dirs(value: str) -> list[Path]:
    """``PIAPI_ALLOWED_DIRS``: folders separated by the platform's path separator (``:`` or ``;``)."""
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def paths_from_roots(uris: Sequence[str]) -> list[Path]:
    """The local folders among an MCP client's ``file://`` roots."""
    return [Path(unquote(urlparse(uri).path)) for uri in uris if uri.startswith("file://")]


Uploader = Callable[[str, bytes], Awaitable[str]]
TaskLookup = Callable[[str], Awaitable[Task]]


@dataclass(frozen=True)
class ResolvedImage:
    """What PiAPI will be given for one image argument."""

    url: str
    #: "url", "file", "data" or "task": what the caller gave.
    source: str
    uploaded: bool


class ImageResolver:
    """Turns an image argument into an http(s) URL PiAPI can fetch."""

    def __init__(self, *, upload: Uploader, look_up_task: TaskLookup, confinement: Confinement) -> None:
        self._upload = upload
        self._look_up_task = look_up_task
        self.confinement = confinement

    async def resolve(self, value: str, *, roots: Sequence[Path] = ()) -> ResolvedImage:
        """Resolve one image argument; nothing is uploaded unless every check passed.

        Raises:
            ImageInputError: the value is in no accepted form, or fails a check.
            PiAPIError: the upload or the task look-up failed.
        """
        text = value.strip()
        lowered = text.lower()
        if lowered.startswith(("http://", "https://")):
            return ResolvedImage(url=text, source="url", uploaded=False)
        if lowered.startswith("piapi://"):
            return await self._from_task(text)
        if lowered.startswith("data:"):
            data = _decode_data_uri(text)
            kind = check_image_bytes(data, "The data: URI")
            return ResolvedImage(await self._upload(f"image.{kind.extension}", data), "data", True)
        if lowered.startswith("file://"):
            path = Path(unquote(urlparse(text).path))
        elif text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", text):
            path = Path(text)
        else:
            raise ImageInputError(f"The image {shown(text)} is not in an accepted form: give {IMAGE_FORMS}.")
        # Opening and reading touch the disk (or a FIFO, a device, a slow mount): off the event loop.
        data = await anyio.to_thread.run_sync(self.confinement.with_roots(roots).open_file, text, path)
        kind = check_image_bytes(data, shown(text))
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:100] or "image"
        return ResolvedImage(await self._upload(f"{stem}.{kind.extension}", data), "file", True)

    async def _from_task(self, text: str) -> ResolvedImage:
        match = _TASK_REF.match(text)
        if match is None:
            raise ImageInputError(
                f"{shown(text)} is not a task reference; write piapi://tasks/<task_id> or piapi://tasks/<task_id>#2."
            )
        task_id, index_text = match.group(1), match.group(2)
        index = int(index_text) if index_text else 1
        task = await self._look_up_task(task_id)
        if not task.images:
            raise ImageInputError(f"Task {task_id} has no output image yet (status {task.status}).")
        if not 1 <= index <= len(task.images):
            raise ImageInputError(
                f"Task {task_id} has {len(task.images)} output image(s); #{index} does not exist."
            )
        return ResolvedImage(url=task.images[index - 1], source="task", uploaded=False)


def _decode_data_uri(text: str) -> bytes:
    match = _DATA_URI.match(text)
    if match is None or not match.group(3):
        raise ImageInputError("A data: URI image must be base64-encoded (data:image/png;base64,...).")
    payload = text[match.end() :]
    if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES + 3:
        raise ImageInputError("The data: URI image is over PiAPI's 10 MB upload limit; use a smaller image.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("The data: URI is not valid base64.") from None


# --- outputs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SavedImage:
    """One output image: where PiAPI serves it, and where it was saved (or why not)."""

    url: str
    path: Path | None
    error: str | None
    data: bytes | None


class OutputSaver:
    """Downloads a task's outputs into one folder, named ``<task_id>-<n>.<ext>``, never overwriting.

    With ``folder=None`` it only downloads (for previews) and writes nothing.
    """

    def __init__(self, http: httpx2.AsyncClient, folder: Path | None, *, timeout: float = 60.0) -> None:
        self._http = http
        self.folder = folder.expanduser() if folder is not None else None
        self._timeout = timeout

    def existing(self, task_id: str, index: int) -> Path | None:
        """The file an earlier save of this output wrote, if any."""
        if self.folder is None:
            return None
        for candidate in sorted(self.folder.glob(f"{task_id}-{index}.*")):
            if candidate.is_file():
                return candidate
        return None

    async def save(self, task: Task) -> list[SavedImage]:
        """Save every output of a completed ``task``; a failure is reported per image, never raised."""
        return [await self._save_one(task.task_id, index, url) for index, url in enumerate(task.images, 1)]

    async def _save_one(self, task_id: str, index: int, url: str) -> SavedImage:
        if (done := self.existing(task_id, index)) is not None:
            return SavedImage(url=url, path=done, error=None, data=done.read_bytes())
        try:
            data = await self.download(url)
        except ImageInputError as err:
            return SavedImage(url=url, path=None, error=str(err), data=None)
        if self.folder is None:
            return SavedImage(url=url, path=None, error=None, data=data)
        kind = sniff_image(data)
        extension = kind.extension if kind else (Path(urlparse(url).path).suffix.lstrip(".")[:5] or "bin")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self._free_name(f"{task_id}-{index}", extension)
            with path.open("xb") as handle:  # "x": never overwrite a file that appeared meanwhile
                handle.write(data)
        except OSError as err:
            return SavedImage(
                url=url, path=None, error=f"could not save it ({err.strerror or err})", data=data
            )
        return SavedImage(url=url, path=path, error=None, data=data)

    def _free_name(self, stem: str, extension: str) -> Path:
        assert self.folder is not None
        path = self.folder / f"{stem}.{extension}"
        counter = 1
        while path.exists():
            path = self.folder / f"{stem}.{counter}.{extension}"
            counter += 1
        return path

    async def download(self, url: str) -> bytes:
        """The bytes at ``url`` (at most 50 MB).

        Raises:
            ImageInputError: the download failed or was too large; the message says which.
        """
        try:
            async with self._http.stream(
                "GET", url, timeout=self._timeout, follow_redirects=True
            ) as response:
                if response.status_code != 200:
                    raise ImageInputError(f"downloading it failed (HTTP {response.status_code})")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_OUTPUT_BYTES:
                        raise ImageInputError("it is larger than 50 MB, so it was not downloaded")
                    chunks.append(chunk)
        except httpx2.HTTPError as err:
            raise ImageInputError(f"downloading it failed ({type(err).__name__})") from err
        return b"".join(chunks)


def make_preview(data: bytes) -> tuple[bytes, str] | None:
    """A JPEG thumbnail (≤ 768 px, base64 ≤ 150 KB) of image ``data``, or ``None`` if it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None
    side = PREVIEW_MAX_SIDE
    while side >= 64:
        thumb = image.copy()
        # Bilinear and no encoder optimisation: about half the CPU, no visible loss at this size.
        thumb.thumbnail((side, side), resample=Image.Resampling.BILINEAR)
        for quality in (80, 65, 50, 35):
            out = io.BytesIO()
            thumb.save(out, format="JPEG", quality=quality)
            encoded = out.getvalue()
            if len(base64.b64encode(encoded)) <= PREVIEW_MAX_BASE64:
                return encoded, "image/jpeg"
        side //= 2
    return None
