"""Media in and out: turning what the user gave into a URL PiAPI can fetch, saving and previewing outputs.

Inputs (every media field of every task, image, video or audio, goes through :class:`ImageResolver`):

- an ``http(s)://`` URL passes through unchanged;
- a local path (absolute, ``~``, or a ``file://`` URI) is read only inside the allowed folders,
  after resolving symlinks, then uploaded to PiAPI's file-upload endpoint;
- a ``data:`` URI is decoded and uploaded the same way;
- ``piapi://tasks/{id}`` (its first output of the field's kind) or ``piapi://tasks/{id}#n`` reuses an
  earlier output.

Bytes are checked before any upload: at most 10 MB (PiAPI's limit) and, by content whatever the file
is called, a format PiAPI's upload takes for the field's kind: PNG, JPEG or WebP for images, MP4 for
videos, WAV or MP3 for audio.

Outputs: :class:`OutputSaver` downloads a finished task's file outputs of every kind (only the URLs
PiAPI returned for it, each kind under its own size cap) into the output folder, and
:func:`make_preview` makes the small thumbnail of an image the model sees. Both
treat what upstream sent as hostile: :class:`OutputGuard` lets downloads reach public addresses only
(every redirect hop judged, the judged address pinned), a download streams to disk under a size and
a time limit, the saved extension comes from the sniffed content over an allow-list
(:data:`OUTPUT_KINDS`), and only PNG, JPEG, WebP and GIF within a pixel budget reach Pillow.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import io
import ipaddress
import os
import re
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from typing import IO, TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread
import httpx2

from piapi_mcp import wording
from piapi_mcp.errors import shown
from piapi_mcp.models import MEDIA_TYPES, TASK_ID_PATTERN, OutputKind, OutputRef, Task
from piapi_mcp.timing import Clock

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

MAX_UPLOAD_BYTES: Final = 10 * 1024 * 1024
#: Download caps per kind of output. Images keep issue 7's 50 MB (a 16-megapixel PNG is ~30 MB).
#: PiAPI's videos run 5-15 s (a few to ~40 MB at 1080p); 500 MB leaves room for long 4K outputs while
#: bounding what one task can write. Audio: a 9-minute 48 kHz stereo WAV is ~100 MB (Udio's MP3s
#: are ~5 MB). 3D: Trellis's GLBs are 5-30 MB; 200 MB admits dense meshes with textures.
MAX_OUTPUT_BYTES_BY_KIND: Final[dict[str, int]] = {
    "image": 50 * 1024 * 1024,
    "video": 500 * 1024 * 1024,
    "audio": 100 * 1024 * 1024,
    "model3d": 200 * 1024 * 1024,
}
#: An output whose kind is not known (``file``) may be any allowed format: the largest cap, until
#: its content says what it is.
MAX_OUTPUT_BYTES: Final = max(MAX_OUTPUT_BYTES_BY_KIND.values())
#: The largest output served through ``piapi://tasks/{id}/outputs/{n}`` (a resource read is one
#: base64 message held in memory on both sides); larger ones are read from their saved file or URL.
MAX_RESOURCE_BYTES: Final = 50 * 1024 * 1024
#: A preview's long side: enough for the model to see what was made; the full image is a resource away.
PREVIEW_MAX_SIDE: Final = 512
#: The preview's base64 text stays under this (a photograph's 512 px JPEG at quality 70 is about
#: 50 KB), so one result with a photographic output stays under 64 KB.
PREVIEW_MAX_BASE64: Final = 60 * 1024
#: Previews made at once, over all calls: each decodes an image, so 100 completions at once must
#: not decode 100 images at once.
PREVIEW_WORKERS: Final = 2
#: Encoder qualities tried in turn until the preview fits :data:`PREVIEW_MAX_BASE64`.
_PREVIEW_QUALITIES: Final = (70, 60, 50, 40)
IMAGE_FORMS: Final = (
    "an http(s) URL, a local file path or file:// URI inside the allowed folders, a data: URI, "
    "or piapi://tasks/{task_id} (optionally #n) for an earlier output"
)
_TASK_REF: Final = re.compile(r"^piapi://tasks/([A-Za-z0-9][A-Za-z0-9._-]{0,127})(?:#(\d{1,3}))?$")
_DATA_URI: Final = re.compile(r"^data:([\w.+/-]*)(;[\w=.+-]+)*?(;base64)?,", re.IGNORECASE)


class ImageInputError(Exception):
    """A media argument (or output) that cannot be used; the message says why and what to do instead."""


@dataclass(frozen=True)
class ImageKind:
    """An image format PiAPI accepts, by its magic bytes."""

    extension: str
    mime_type: str


PNG: Final = ImageKind("png", MEDIA_TYPES["png"][1])
JPEG: Final = ImageKind("jpg", MEDIA_TYPES["jpg"][1])
WEBP: Final = ImageKind("webp", MEDIA_TYPES["webp"][1])


def sniff_image(data: bytes) -> ImageKind | None:
    """The image format of ``data`` judged by its content, or ``None`` if it is not PNG/JPEG/WebP."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return None


def _too_large(what: str, nbytes: int) -> ImageInputError:
    return ImageInputError(
        f"{what} is {wording.size(nbytes)}, over PiAPI's {wording.size(MAX_UPLOAD_BYTES)} upload limit; use "
        "a smaller file or give a public http(s) URL."
    )


#: What PiAPI's upload takes (jpg, jpeg, png, webp, mp4, wav, mp3), by the field's kind: the
#: extensions judged by content, and how a refusal names them.
UPLOAD_FORMATS: Final[dict[str, tuple[frozenset[str], str]]] = {
    "image": (frozenset({"png", "jpg", "webp"}), "a PNG, JPEG or WebP image"),
    "video": (frozenset({"mp4"}), "an MP4 video"),
    "audio": (frozenset({"wav", "mp3"}), "a WAV or MP3 audio file"),
}


def check_image_bytes(data: bytes, what: str, kind: str = "image") -> ImageKind:
    """Check size and content of bytes about to be uploaded for a field of ``kind`` (image, video, audio).

    Raises:
        ImageInputError: too large, or not a format PiAPI's upload takes for that kind.
    """
    if len(data) > MAX_UPLOAD_BYTES:
        raise _too_large(what, len(data))
    allowed, named = UPLOAD_FORMATS.get(kind, UPLOAD_FORMATS["image"])
    if kind == "image":
        image = sniff_image(data)
        if image is not None:
            return image
    else:
        found = sniff_output(data[:_SNIFF_BYTES])
        if found is not None and found.extension in allowed:
            return ImageKind(found.extension, found.mime_type)
    raise ImageInputError(f"{what} is not {named} (judged by its content, not its name).")


class Confinement:
    """The folders local images may be read from.

    A file is opened first and judged afterwards, on the opened descriptor, so swapping the path
    between the check and the read cannot slip anything past it: the resolved path is opened
    with ``O_NOFOLLOW | O_NONBLOCK`` (a link swapped in afterwards fails, a FIFO or device opens at
    once without waiting), then ``fstat`` must say "regular file" within the size limit and the
    descriptor's real path (``/proc/self/fd``, ``F_GETPATH`` or ``GetFinalPathNameByHandleW``) must
    lie inside an allowed folder. Blocking: call it from a worker thread.
    """

    def __init__(self, folders: Sequence[Path], *, no_roots: str | None = None) -> None:
        self.folders = list(dict.fromkeys(folder.expanduser().resolve() for folder in folders))
        #: Why the MCP host shared no roots, when it could not or did not: a refusal says so.
        self.no_roots = no_roots

    def with_roots(self, roots: Sequence[Path], no_roots: str | None = None) -> Confinement:
        """These folders plus the client's roots (``no_roots``: why the host shared none)."""
        return Confinement([*self.folders, *roots], no_roots=no_roots)

    def _inside(self, path: Path) -> bool:
        return any(path.is_relative_to(folder) for folder in self.folders)

    def _outside_error(self, raw: str) -> ImageInputError:
        allowed = ", ".join(str(folder) for folder in self.folders)
        if self.no_roots:
            return ImageInputError(
                f"{raw!r} is outside the folders images may be read from ({allowed}); {self.no_roots}, so "
                "set PIAPI_ALLOWED_DIRS to the folders to allow, or move the file into one of these."
            )
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
            because = f" and {self.no_roots}" if self.no_roots else ""
            raise ImageInputError(
                f"Local files cannot be read here ({raw!r}): no folder is allowed{because}. Set "
                "PIAPI_ALLOWED_DIRS to the folders images may come from, or give an http(s) URL."
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


#: The path flavour of this machine: file:// URIs are read as its paths.
LOCAL_FLAVOUR: Final[type[PurePosixPath] | type[PureWindowsPath]] = (
    PureWindowsPath if os.name == "nt" else PurePosixPath
)
_DRIVE: Final = re.compile(r"^/?([A-Za-z])[:|](?=/|$)")


def path_from_file_uri(
    uri: str, flavour: type[PurePosixPath] | type[PureWindowsPath] = LOCAL_FLAVOUR
) -> PurePath | None:
    """The absolute local path a ``file://`` URI names, as a ``flavour`` path; ``None`` if it names none.

    Windows: ``file:///C:/Users/a``, ``file:///C%3A/Users/a``, ``file://localhost/C:/...`` and the old
    ``C|`` form give ``C:\\Users\\a``; a host (``file://server/share/dir``) is a UNC path
    ``\\\\server\\share\\dir``. POSIX: only an empty host or ``localhost`` is this machine (another host
    gives ``None``). Percent-escapes (spaces, ``%3A``) are decoded; a query or fragment is ignored.
    """
    if uri[:7].lower() != "file://":
        return None
    parts = urlsplit(uri)
    host = unquote(parts.netloc)
    path = unquote(parts.path)
    if host.lower() == "localhost":
        host = ""
    if flavour is PureWindowsPath:
        if _DRIVE.match(host + "/"):
            # file://C:/Users/a: some writers put the drive where the host goes.
            path, host = f"/{host}{path}", ""
        if drive := _DRIVE.match(path):
            path = f"{drive.group(1)}:{path[drive.end() :] or '/'}"
        elif host:
            path = f"//{host}{path}"
        found: PurePath = PureWindowsPath(path)
    else:
        if host:
            return None
        found = PurePosixPath(path)
    # No drive on Windows (file:///Users/a), or a share without a folder: not one definite place.
    return found if found.is_absolute() else None


def paths_from_roots(
    uris: Sequence[str], flavour: type[PurePosixPath] | type[PureWindowsPath] = LOCAL_FLAVOUR
) -> list[PurePath]:
    """The local folders among an MCP client's ``file://`` roots (another host's are left out)."""
    found = (path_from_file_uri(uri, flavour) for uri in uris)
    return [path for path in found if path is not None]


def local_paths_from_roots(uris: Sequence[str]) -> list[Path]:
    """:func:`paths_from_roots` on this machine, as concrete paths."""
    return [Path(path) for path in paths_from_roots(uris)]


Uploader = Callable[[str, bytes], Awaitable[str]]
TaskLookup = Callable[[str], Awaitable[Task]]


@dataclass(frozen=True)
class ResolvedImage:
    """What PiAPI will be given for one image argument."""

    url: str
    #: "url", "file", "data" or "task": what the caller gave.
    source: str
    uploaded: bool
    #: The picture's (width, height) when its bytes were at hand (a file, a data: URI); else ``None``.
    size: tuple[int, int] | None = None


class ImageResolver:
    """Turns an image argument into an http(s) URL PiAPI can fetch."""

    def __init__(self, *, upload: Uploader, look_up_task: TaskLookup, confinement: Confinement) -> None:
        self._upload = upload
        self._look_up_task = look_up_task
        self.confinement = confinement

    async def resolve(
        self, value: str, *, roots: Sequence[Path] = (), kind: str = "image", no_roots: str | None = None
    ) -> ResolvedImage:
        """Resolve one media argument for a field of ``kind`` (image, video or audio).

        ``roots`` are the MCP host's folders; ``no_roots`` says why it shared none (a refusal repeats it).

        Nothing is uploaded unless every check passed.

        Raises:
            ImageInputError: the value is in no accepted form, or fails a check.
            PiAPIError: the upload or the task look-up failed.
        """
        text = value.strip()
        lowered = text.lower()
        if lowered.startswith(("http://", "https://")):
            return ResolvedImage(url=text, source="url", uploaded=False)
        if lowered.startswith("piapi://"):
            return await self._from_task(text, kind)
        if lowered.startswith("data:"):
            data = _decode_data_uri(text)
            found = check_image_bytes(data, "The data: URI", kind)
            url = await self._upload(f"{kind}.{found.extension}", data)
            return ResolvedImage(url, "data", True, picture_size(data, found))
        if lowered.startswith("file://"):
            local = path_from_file_uri(text)
            if local is None:
                raise ImageInputError(
                    f"{shown(text)} does not name a file on this machine (a file:// URI needs no host, or "
                    "localhost, and an absolute path); give a local path, or an http(s) URL."
                )
            path = Path(local)
        elif text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", text):
            path = Path(text)
        else:
            raise ImageInputError(f"The {kind} {shown(text)} is not in an accepted form: give {IMAGE_FORMS}.")
        # Opening and reading touch the disk (or a FIFO, a device, a slow mount): off the event loop.
        data = await anyio.to_thread.run_sync(
            self.confinement.with_roots(roots, no_roots).open_file, text, path
        )
        found = check_image_bytes(data, shown(text), kind)
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", path.stem)[:100] or kind
        url = await self._upload(f"{stem}.{found.extension}", data)
        return ResolvedImage(url, "file", True, picture_size(data, found))

    async def _from_task(self, text: str, kind: str = "image") -> ResolvedImage:
        match = _TASK_REF.match(text)
        if match is None:
            raise ImageInputError(
                f"{shown(text)} is not a task reference; write piapi://tasks/<task_id> or piapi://tasks/<task_id>#2."
            )
        task_id, index_text = match.group(1), match.group(2)
        task = await self._look_up_task(task_id)
        if index_text is None:
            output = next((item for item in task.outputs if item.url and item.kind == kind), None)
            if output is None or output.url is None:
                raise ImageInputError(f"Task {task_id} has no output {kind} yet (status {task.status}).")
            return ResolvedImage(url=output.url, source="task", uploaded=False)
        index = int(index_text)
        if not 1 <= index <= len(task.outputs):
            raise ImageInputError(
                f"Task {task_id} has {len(task.outputs)} output(s); #{index} does not exist."
            )
        chosen = task.outputs[index - 1]
        if chosen.url is None or chosen.kind not in (kind, "file"):
            raise ImageInputError(f"Output #{index} of task {task_id} is {_a(chosen.kind)}, not {_a(kind)}.")
        return ResolvedImage(url=chosen.url, source="task", uploaded=False)


#: Pillow's plugin for each image format the upload takes.
_PIL_FORMATS: Final = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def _unreadable_image_errors() -> tuple[type[BaseException], ...]:
    """What Pillow raises for bytes it cannot or will not read (imported with Pillow, on first use).

    ``DecompressionBombWarning`` is raised, not just shown, where warnings are errors.
    """
    from PIL import Image, UnidentifiedImageError

    return (
        UnidentifiedImageError,
        OSError,
        ValueError,
        SyntaxError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    )


def picture_size(data: bytes, found: ImageKind) -> tuple[int, int] | None:
    """An image's (width, height) from its header alone (no pixel is decoded), or ``None``.

    Only the format its content was judged to be is tried, so no other Pillow plugin sees the bytes.
    """
    pil_format = _PIL_FORMATS.get(found.extension)
    if pil_format is None:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[pil_format]) as opened:
            width, height = opened.size
    except _unreadable_image_errors():
        return None
    return (width, height) if width > 0 and height > 0 else None


def _a(kind: str) -> str:
    """``kind`` with its article, for a sentence ("an image", "a video", "a 3D model")."""
    return {"image": "an image", "audio": "an audio file", "model3d": "a 3D model"}.get(kind, f"a {kind}")


def _decode_data_uri(text: str) -> bytes:
    match = _DATA_URI.match(text)
    if match is None or not match.group(3):
        raise ImageInputError("A data: URI must be base64-encoded (data:image/png;base64,...).")
    payload = text[match.end() :]
    if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES + 3:
        raise ImageInputError("The data: URI is over PiAPI's 10 MB upload limit; use a smaller file.")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError("The data: URI is not valid base64.") from None


# --- outputs -------------------------------------------------------------------------------------
#
# Everything about an output comes from upstream and is untrusted: its task id (part of the file
# name), its URL (where the server connects) and its bytes (what is written to disk and decoded).

#: At most this many outputs of one task are downloaded; the rest are listed with their URL only.
MAX_OUTPUTS_PER_TASK: Final = 16
#: At most this many previews per result (each is up to PREVIEW_MAX_BASE64 of base64).
MAX_PREVIEWS: Final = 4
#: With saving off, a preview's download is held in memory, so it gets a smaller cap.
MAX_PREVIEW_DOWNLOAD_BYTES: Final = 15 * 1024 * 1024
#: Total seconds one download may take, however its bytes trickle in.
DOWNLOAD_SECONDS: Final = 120.0
#: Redirect hops followed (each judged like the first URL).
MAX_REDIRECTS: Final = 3
#: Previews decode at most this many pixels (after JPEG's draft scaling): 4K UHD. At about 9 bytes a pixel
#: at peak (RGBA decoded, then reduced), that keeps one preview under ~80 MB whatever the image claims.
PREVIEW_MAX_PIXELS: Final = 3840 * 2160
#: Bytes needed to judge a format by its content.
_SNIFF_BYTES: Final = 64
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class MediaKind:
    """An output format allowed on disk, judged by its content: the extension saved and its MIME type."""

    extension: str
    mime_type: str
    #: Pillow's plugin for the preview; ``None``: no preview is made (video, audio, 3D).
    pil_format: str | None = None
    #: What kind of output this format is (its size cap is that kind's).
    kind: OutputKind = "file"

    @classmethod
    def of(cls, extension: str, pil_format: str | None = None) -> MediaKind:
        """The format saved as ``extension``; its kind and MIME type come from ``models.MEDIA_TYPES``."""
        kind, mime_type = MEDIA_TYPES[extension]
        return cls(extension, mime_type, pil_format, kind)


OUTPUT_PNG: Final = MediaKind.of("png", "PNG")
OUTPUT_JPEG: Final = MediaKind.of("jpg", "JPEG")
OUTPUT_WEBP: Final = MediaKind.of("webp", "WEBP")
OUTPUT_GIF: Final = MediaKind.of("gif", "GIF")
OUTPUT_MP4: Final = MediaKind.of("mp4")
OUTPUT_MOV: Final = MediaKind.of("mov")
OUTPUT_WEBM: Final = MediaKind.of("webm")
OUTPUT_MKV: Final = MediaKind.of("mkv")
OUTPUT_WAV: Final = MediaKind.of("wav")
OUTPUT_MP3: Final = MediaKind.of("mp3")
OUTPUT_FLAC: Final = MediaKind.of("flac")
OUTPUT_OGG: Final = MediaKind.of("ogg")
OUTPUT_M4A: Final = MediaKind.of("m4a")
OUTPUT_GLB: Final = MediaKind.of("glb")
#: The allow-list: nothing else is ever written to the output folder or handed to Pillow.
OUTPUT_KINDS: Final = (
    OUTPUT_PNG,
    OUTPUT_JPEG,
    OUTPUT_WEBP,
    OUTPUT_GIF,
    OUTPUT_MP4,
    OUTPUT_MOV,
    OUTPUT_WEBM,
    OUTPUT_MKV,
    OUTPUT_WAV,
    OUTPUT_MP3,
    OUTPUT_FLAC,
    OUTPUT_OGG,
    OUTPUT_M4A,
    OUTPUT_GLB,
)
_KIND_BY_EXTENSION: Final = {kind.extension: kind for kind in OUTPUT_KINDS}
_AUDIO_BRANDS: Final = frozenset({b"M4A ", b"M4B ", b"M4P "})


def sniff_output(head: bytes) -> MediaKind | None:
    """The allowed format of an output whose first bytes are ``head`` (64 suffice), or ``None``."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return OUTPUT_PNG
    if head.startswith(b"\xff\xd8\xff"):
        return OUTPUT_JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return OUTPUT_GIF
    if len(head) >= 12 and head[:4] == b"RIFF":
        return {b"WEBP": OUTPUT_WEBP, b"WAVE": OUTPUT_WAV}.get(head[8:12])
    if len(head) >= 12 and head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AUDIO_BRANDS:
            return OUTPUT_M4A
        return OUTPUT_MOV if brand == b"qt  " else OUTPUT_MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: WebM says so in its DocType
        return OUTPUT_WEBM if b"webm" in head else OUTPUT_MKV
    if head.startswith(b"fLaC"):
        return OUTPUT_FLAC
    if head.startswith(b"OggS"):
        return OUTPUT_OGG
    if head.startswith(b"ID3") or _mpeg_audio_frame(head):
        return OUTPUT_MP3
    if len(head) >= 8 and head[:4] == b"glTF" and int.from_bytes(head[4:8], "little") == 2:
        return OUTPUT_GLB
    return None


def output_mime_type(data: bytes) -> str:
    """The MIME type of an output's bytes: its allowed format's, else UTF-8 text (a text output)."""
    kind = sniff_output(data[:_SNIFF_BYTES])
    return kind.mime_type if kind is not None else "text/plain; charset=utf-8"


def _mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, a defined version and a layer (not AAC's 00)."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    version, layer, bitrate = (head[1] >> 3) & 3, (head[1] >> 1) & 3, head[2] >> 4
    return version != 1 and layer != 0 and bitrate != 15


def _what_it_is(head: bytes) -> str:
    """A few words on refused content, for the person reading the result."""
    start = head.lstrip()[:64].lower()
    if start.startswith(b"%!ps") or head.startswith(b"\xc5\xd0\xd3\xc6"):
        return "PostScript/EPS"
    if start.startswith(b"%pdf"):
        return "a PDF"
    if b"<svg" in start or (start.startswith(b"<?xml") and b"svg" in head.lower()):
        return "SVG"
    if start.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<script")):
        return "HTML"
    if not head:
        return "empty"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "in an unknown format"
    return "text"


def _refused_format(head: bytes) -> ImageInputError:
    return ImageInputError(
        f"not saved: its content is {_what_it_is(head)}, not an allowed image (PNG, JPEG, WebP, GIF), "
        "video (MP4, MOV, WebM), audio (WAV, MP3, FLAC, OGG, M4A) or 3D (GLB) format"
    )


# --- where downloads may go ----------------------------------------------------------------------

#: Looks up a host name's addresses (as text); raises ``OSError`` when it cannot.
Resolver = Callable[[str], Awaitable[Sequence[str]]]
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


async def system_resolver(host: str) -> list[str]:
    """The host's addresses from the system's resolver (``getaddrinfo``)."""
    infos = await anyio.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _origin(url: httpx2.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host.lower(), url.port or default


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _embedded(ip: IPAddress) -> list[IPAddress]:
    """The address itself, or the IPv4 address it stands for (mapped, NAT64, 6to4, Teredo) as well."""
    if isinstance(ip, ipaddress.IPv4Address):
        return [ip]
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    found: list[IPAddress] = []
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.append(ip.teredo[1])
    return [*found, ip]  # what it stands for first: that is what the refusal names


@dataclass(frozen=True)
class PinnedURL:
    """A URL judged safe, rewritten to the address that was judged, with what the real host needs."""

    url: httpx2.URL
    host_header: str
    extensions: dict[str, Any]


class OutputGuard:
    """Judges where an output download may connect, before any connection is attempted.

    Public addresses only, except: loopback when the PiAPI base URL is itself loopback (the sandbox,
    tests); any address with ``allow_private`` (``PIAPI_ALLOW_PRIVATE_OUTPUTS=1``); and the very
    origins (scheme, host, port) of the configured base and upload URLs, which the server talks to
    anyway, so fetching from them reaches nothing new. Unspecified and multicast addresses never.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        base_url: str | None = None,
        upload_url: str | None = None,
        allow_private: bool = False,
    ) -> None:
        self._resolve: Resolver = resolver or system_resolver
        self._base = httpx2.URL(base_url) if base_url else None
        self._api_origins = {_origin(httpx2.URL(url)) for url in (base_url, upload_url) if url}
        self.allow_private = allow_private
        self._base_loopback: bool | None = None

    async def addresses(self, host: str) -> list[IPAddress]:
        """The addresses ``host`` stands for (itself, when it is an address).

        Raises:
            ImageInputError: the name cannot be resolved.
        """
        if (literal := _ip_literal(host)) is not None:
            return [literal]
        try:
            found = [ip for text in await self._resolve(host) if (ip := _ip_literal(text)) is not None]
        except (OSError, UnicodeError):
            found = []
        if not found:
            raise ImageInputError(
                f"its host {shown(host, 80)} could not be resolved, so it was not downloaded"
            )
        return found

    async def _base_is_loopback(self) -> bool:
        if self._base_loopback is None:
            try:
                found = await self.addresses(self._base.host) if self._base is not None else []
            except ImageInputError:
                found = []
            self._base_loopback = bool(found) and all(
                address.is_loopback for ip in found for address in _embedded(ip)
            )
        return self._base_loopback

    async def refusal(self, ip: IPAddress) -> str | None:
        """Why an output may not be fetched from ``ip`` (a few words), or ``None`` when it may."""
        for address in _embedded(ip):
            if address.is_unspecified or address.is_multicast:
                return f"{address}, an unspecified or multicast address"
            if address.is_global and not address.is_reserved:
                continue
            if self.allow_private or (address.is_loopback and await self._base_is_loopback()):
                continue
            if address.is_loopback:
                what = "a loopback address"
            elif address.is_link_local:
                what = "a link-local address (where cloud metadata lives)"
            elif isinstance(address, ipaddress.IPv4Address) and address in _SHARED:
                what = "a carrier-grade NAT address"
            elif address.is_private:
                what = "a private address"
            else:
                what = "a reserved address"
            return f"{address}, {what}"
        return None

    async def pin(self, url: httpx2.URL) -> PinnedURL:
        """``url`` rewritten to connect to the judged address (``Host`` and TLS name kept).

        Raises:
            ImageInputError: not http(s), no host, unresolvable, or an address outputs may not come from.
        """
        if url.scheme not in ("http", "https") or not url.host:
            raise ImageInputError("it is not an http(s) URL, so it was not downloaded")
        addresses = await self.addresses(url.host)
        if _origin(url) not in self._api_origins:
            for ip in addresses:
                if (why := await self.refusal(ip)) is not None:
                    raise ImageInputError(
                        f"its host {shown(url.host, 80)} is at {why}, so it was not downloaded (outputs come "
                        "only from public addresses; PIAPI_ALLOW_PRIVATE_OUTPUTS=1 allows private ones)"
                    )
        raw_host = url.raw_host.decode("ascii")
        extensions: dict[str, Any] = {}
        if url.scheme == "https" and _ip_literal(url.host) is None:
            extensions["sni_hostname"] = raw_host  # the certificate is checked against the name, not the IP
        host_header = url.netloc.decode("ascii").rsplit("@", 1)[-1]
        return PinnedURL(url.copy_with(host=str(addresses[0])), host_header, extensions)


_SHARED: Final = ipaddress.ip_network("100.64.0.0/10")


# --- downloading and saving ----------------------------------------------------------------------


@dataclass(frozen=True)
class SavedOutput:
    """One file output: where upstream serves it, where it was saved (or why not), and its format."""

    url: str
    path: Path | None
    error: str | None
    #: The bytes, only when saving is off and they were fetched for a preview.
    data: bytes | None = None
    #: The format its content was judged to be, once downloaded.
    kind: MediaKind | None = None


class OutputTooLarge(ImageInputError):
    """A saved output too large to hand over in memory (a resource read)."""


class _OutOfTime(Exception):
    """The download's total time, or the call's, ran out."""


class OutputSaver:
    """Downloads a task's outputs into one folder as ``<task_id>-<n>.<ext>``, never overwriting.

    Each download streams to a temporary file in the folder and is then linked into place under a
    free name; the extension comes from the sniffed content. With ``folder=None`` it only
    downloads (into memory, for previews) and writes nothing.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        folder: Path | None,
        *,
        timeout: float = 60.0,
        download_seconds: float = DOWNLOAD_SECONDS,
        max_outputs: int = MAX_OUTPUTS_PER_TASK,
    ) -> None:
        self._http = http
        self.folder = folder.expanduser() if folder is not None else None
        self._timeout = timeout
        self.download_seconds = download_seconds
        self.max_outputs = max_outputs

    def existing(self, task_id: str, index: int) -> Path | None:
        """The file an earlier save of this output wrote, if any (only allowed formats, never a link)."""
        if self.folder is None or re.fullmatch(TASK_ID_PATTERN, task_id) is None:
            return None
        try:
            folder = self.folder.resolve()
            candidates = sorted(folder.glob(f"{task_id}-{index}.*"))
        except OSError:
            return None
        for candidate in candidates:
            if candidate.suffix.lstrip(".").lower() not in _KIND_BY_EXTENSION:
                continue
            try:
                if stat.S_ISREG(candidate.lstat().st_mode) and candidate.resolve().parent == folder:
                    return candidate
            except OSError:
                continue
        return None

    @staticmethod
    def kind_of(path: Path) -> MediaKind | None:
        """The format of a file this saver wrote, by the extension it gave it."""
        return _KIND_BY_EXTENSION.get(path.suffix.lstrip(".").lower())

    def read_saved(self, path: Path) -> bytes:
        """The bytes of a saved output, opened without following links; at most :data:`MAX_RESOURCE_BYTES`.

        Raises:
            OutputTooLarge: too large to hand over in one piece.
            ImageInputError: it is not a regular file inside the output folder any more.
        """
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError:
            raise ImageInputError("its saved copy cannot be opened") from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageInputError("its saved copy is not a regular file")
            if info.st_size > MAX_RESOURCE_BYTES:
                raise OutputTooLarge(
                    f"it is larger than {wording.size(MAX_RESOURCE_BYTES)}, too large to serve here; "
                    f"open its saved copy ({path.name}) instead"
                )
            return handle.read(MAX_RESOURCE_BYTES + 1)

    async def save(
        self,
        task: Task,
        guard: OutputGuard,
        clock: Clock,
        *,
        deadline: float,
        previews: int = 0,
    ) -> dict[int, SavedOutput]:
        """Save the file outputs of a completed ``task``, by their number (from 1) in ``task.outputs``.

        Failures are reported per output, never raised. Text outputs are not files: nothing is
        downloaded for them. With saving off, only the first ``previews`` image outputs are fetched
        (into memory), nothing else. File outputs past :attr:`max_outputs` are not fetched, and say so.
        """
        results: dict[int, SavedOutput] = {}
        files = images = 0
        for index, output in enumerate(task.outputs, 1):
            if output.url is None or output.kind == "text":
                continue
            files += 1
            if files > self.max_outputs:
                results[index] = SavedOutput(
                    url=output.url,
                    path=None,
                    error=f"not saved: only the first {self.max_outputs} outputs of a task are "
                    "downloaded; fetch this one from its URL",
                )
            elif self.folder is None:
                wanted = output.kind in ("image", "file") and images < previews
                images += wanted
                results[index] = await self._fetch_for_preview(output, guard, clock, deadline, wanted)
            else:
                results[index] = await self._save_one(task.task_id, index, output, guard, clock, deadline)
        return results

    async def _fetch_for_preview(
        self, output: OutputRef, guard: OutputGuard, clock: Clock, deadline: float, wanted: bool
    ) -> SavedOutput:
        assert output.url is not None
        url = output.url
        if not wanted:
            return SavedOutput(url=url, path=None, error=None)
        try:
            data = await self.download(
                url, guard, clock, deadline=deadline, max_bytes=MAX_PREVIEW_DOWNLOAD_BYTES
            )
        except ImageInputError as err:
            return SavedOutput(url=url, path=None, error=str(err))
        kind = sniff_output(data[:_SNIFF_BYTES])
        return SavedOutput(url=url, path=None, error=None, data=data if kind else None, kind=kind)

    async def _save_one(
        self, task_id: str, index: int, output: OutputRef, guard: OutputGuard, clock: Clock, deadline: float
    ) -> SavedOutput:
        assert output.url is not None
        url = output.url
        if re.fullmatch(TASK_ID_PATTERN, task_id) is None:
            # parse_task refuses such ids; this is the second line, in case one gets through.
            return SavedOutput(url=url, path=None, error="not saved: its task id is not a PiAPI task id")
        if (done := self.existing(task_id, index)) is not None:
            return SavedOutput(url=url, path=done, error=None, kind=self.kind_of(done))
        assert self.folder is not None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            folder = self.folder.resolve()
            fd, temporary = tempfile.mkstemp(prefix=f".{task_id}-{index}.", suffix=".part", dir=folder)
        except OSError as err:
            return SavedOutput(url=url, path=None, error=f"could not save it ({err.strerror or err})")
        cap = MAX_OUTPUT_BYTES_BY_KIND.get(output.kind, MAX_OUTPUT_BYTES)
        try:
            with os.fdopen(fd, "wb") as handle:
                kind = await self._stream(url, guard, clock, deadline, cap, handle.write)
            path = _publish(Path(temporary), folder, f"{task_id}-{index}", kind.extension)
        except ImageInputError as err:
            return SavedOutput(url=url, path=None, error=str(err))
        except OSError as err:
            return SavedOutput(url=url, path=None, error=f"could not save it ({err.strerror or err})")
        finally:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
        return SavedOutput(url=url, path=path, error=None, kind=kind)

    async def download(
        self,
        url: str,
        guard: OutputGuard,
        clock: Clock,
        *,
        deadline: float,
        max_bytes: int = MAX_RESOURCE_BYTES,
    ) -> bytes:
        """The bytes at ``url``, if they are an allowed format, in memory (at most ``max_bytes``).

        Raises:
            ImageInputError: refused, failed, too large, too slow or not an allowed format (the
                message says which).
        """
        chunks: list[bytes] = []
        await self._stream(url, guard, clock, deadline, max_bytes, chunks.append)
        return b"".join(chunks)

    async def _stream(
        self,
        url: str,
        guard: OutputGuard,
        clock: Clock,
        deadline: float,
        max_bytes: int,
        write: Callable[[bytes], object],
    ) -> MediaKind:
        """Stream the body at ``url`` into ``write``; its format is judged before anything is written."""
        deadline = min(deadline, clock.monotonic() + self.download_seconds)
        try:
            async with self._response(url, guard, clock, deadline) as response:
                if response.status_code != 200:
                    raise ImageInputError(f"downloading it failed (HTTP {response.status_code})")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise _too_big(max_bytes)
                head = b""
                kind: MediaKind | None = None
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise _too_big(max_bytes)
                    if kind is None:
                        head += chunk
                        if len(head) < _SNIFF_BYTES:
                            continue
                        kind = sniff_output(head)
                        if kind is None:
                            raise _refused_format(head)
                        # What the content is caps it too: an "image" of 400 MB is refused at 50.
                        max_bytes = min(max_bytes, MAX_OUTPUT_BYTES_BY_KIND.get(kind.kind, max_bytes))
                        if size > max_bytes:
                            raise _too_big(max_bytes)
                        chunk, head = head, b""
                    write(chunk)
                    if clock.monotonic() > deadline:
                        raise _OutOfTime
                if kind is None:
                    kind = sniff_output(head)
                    if kind is None:
                        raise _refused_format(head)
                    if size > MAX_OUTPUT_BYTES_BY_KIND.get(kind.kind, max_bytes):
                        raise _too_big(MAX_OUTPUT_BYTES_BY_KIND[kind.kind])
                    write(head)
                return kind
        except _OutOfTime:
            raise ImageInputError(
                "not saved yet: downloading it did not finish within this call's time; call get_task "
                "again to save it"
            ) from None
        except httpx2.HTTPError as err:
            raise ImageInputError(f"downloading it failed ({type(err).__name__})") from err

    @contextlib.asynccontextmanager
    async def _response(
        self, url: str, guard: OutputGuard, clock: Clock, deadline: float
    ) -> AsyncIterator[httpx2.Response]:
        """The answer at ``url``, following at most a few redirects, each hop judged and pinned."""
        try:
            current = httpx2.URL(url)
        except httpx2.InvalidURL:
            raise ImageInputError("its URL is not valid, so it was not downloaded") from None
        for _ in range(MAX_REDIRECTS + 1):
            left = deadline - clock.monotonic()
            if left <= 0:
                raise _OutOfTime
            pinned = await guard.pin(current)
            request = self._http.build_request(
                "GET",
                pinned.url,
                headers={"Host": pinned.host_header},
                timeout=httpx2.Timeout(min(self._timeout, left)),
                extensions=pinned.extensions,
            )
            response = await self._http.send(request, stream=True, follow_redirects=False)
            location = response.headers.get("location")
            if response.status_code in _REDIRECT_STATUSES and location:
                await response.aclose()
                try:
                    current = current.join(location)
                except httpx2.InvalidURL:
                    raise ImageInputError(
                        "it redirected to an invalid URL, so it was not downloaded"
                    ) from None
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise ImageInputError(f"it redirected more than {MAX_REDIRECTS} times, so it was not downloaded")


def _too_big(max_bytes: int) -> ImageInputError:
    return ImageInputError(f"it is larger than {wording.size(max_bytes)}, so it was not downloaded")


def _publish(temporary: Path, folder: Path, stem: str, extension: str) -> Path:
    """Give the finished download its name: the first free ``stem[.n].extension``, never replacing a file."""
    for counter in range(1000):
        name = f"{stem}.{extension}" if counter == 0 else f"{stem}.{counter}.{extension}"
        path = folder / name
        if path.parent.resolve() != folder:  # the name came from upstream: it must not leave the folder
            raise ImageInputError("not saved: its name would leave the output folder")
        try:
            os.link(temporary, path)  # atomic, and fails if the name is taken
        except FileExistsError:
            continue
        except OSError:
            # No hard links here (some network or FAT volumes): claim the name, then move onto it.
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)))
            except FileExistsError:
                continue
            os.replace(temporary, path)
        return path
    raise ImageInputError("not saved: no free file name was found for it")


def _readable(source: Path | bytes) -> IO[bytes]:
    """A file object over ``source``; a path is opened without following links and must be a regular file."""
    if not isinstance(source, Path):
        return io.BytesIO(source)
    fd = os.open(source, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    handle = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        handle.close()
        raise OSError(f"{source.name} is not a regular file")
    return handle


def make_preview(source: Path | bytes, kind: MediaKind | None) -> tuple[bytes, str] | None:
    """A small preview of an image output (long side ≤ 512 px, base64 ≤ 60 KB), or ``None``.

    Opaque images become a JPEG; images with transparency a WebP that keeps it. JPEGs are decoded
    at reduced scale (``draft``), other formats reduced by whole factors before the last resize, so a
    preview costs a fraction of the full image's memory. Only PNG, JPEG, WebP and GIF reach Pillow,
    each through its own plugin alone; images over :data:`PREVIEW_MAX_PIXELS` (after JPEG's draft
    scaling) are refused before any pixel is decoded.
    """
    if kind is None or kind.pil_format is None:
        return None
    from PIL import Image

    try:
        with _readable(source) as handle, Image.open(handle, formats=[kind.pil_format]) as opened:
            if opened.format != kind.pil_format:
                return None
            # JPEG decodes at 1/2, 1/4 or 1/8 scale when asked first: a fraction of the memory.
            opened.draft("RGB", (PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
            width, height = opened.size
            if width * height > PREVIEW_MAX_PIXELS:
                return None
            image = _reduced(opened, PREVIEW_MAX_SIDE)
    except _unreadable_image_errors():
        return None
    # Bilinear after a whole-factor reduce: about half Lanczos's CPU, no visible loss at this size.
    bilinear = Image.Resampling.BILINEAR
    side = PREVIEW_MAX_SIDE
    while side >= 64:
        thumb = image if max(image.size) <= side else image.resize(_fit(image.size, side), bilinear)
        for quality in _PREVIEW_QUALITIES:
            encoded = _encode_preview(thumb, quality)
            if encoded is not None and len(base64.b64encode(encoded[0])) <= PREVIEW_MAX_BASE64:
                return encoded
        side //= 2
    return None


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so its long side is ``side``, aspect ratio kept (at least 1 px a side)."""
    width, height = size
    scale = side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _reduced(opened: PILImage, side: int) -> PILImage:
    """``opened`` decoded, in RGB or RGBA, with its long side at most ``side``.

    A whole-factor ``reduce`` (box filter, cheap) first brings it near ``side``, one bilinear resize
    finishes, and only then is the small image converted: a full-size copy is made only for modes
    ``reduce`` cannot take (palette, 1-bit, CMYK...). An alpha channel is kept only when something
    is actually transparent.
    """
    from PIL import Image

    keyed = "transparency" in opened.info  # a palette entry or colour key: only convert applies it
    has_alpha = opened.mode in ("RGBA", "LA", "PA") or keyed
    target = "RGBA" if has_alpha else "RGB"
    image = opened if opened.mode in ("RGB", "RGBA", "L") and not keyed else opened.convert(target)
    factor = max(image.size) // side
    if factor >= 2:
        image = image.reduce(factor)
    if max(image.size) > side:
        image = image.resize(_fit(image.size, side), Image.Resampling.BILINEAR)
    image = image.convert(target)  # always a new image: ``opened`` is closed after this
    if has_alpha and image.getchannel("A").getextrema()[0] == 255:
        image = image.convert("RGB")
    return image


def _encode_preview(image: PILImage, quality: int) -> tuple[bytes, str] | None:
    """``image`` as JPEG (opaque) or WebP (keeps transparency) at ``quality``; ``None`` if it cannot be."""
    out = io.BytesIO()
    try:
        if image.mode == "RGBA":
            image.save(out, format="WEBP", quality=quality, method=2)
            return out.getvalue(), "image/webp"
        image.save(out, format="JPEG", quality=quality)
    except (OSError, KeyError, ValueError):  # KeyError: this Pillow was built without WebP
        return None
    return out.getvalue(), "image/jpeg"
