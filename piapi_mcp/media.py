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
import io
import os
import re
import stat
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import unquote, urlparse

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
    """The folders local images may be read from."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = list(dict.fromkeys(folder.expanduser().resolve() for folder in folders))

    def with_roots(self, roots: Sequence[Path]) -> Confinement:
        """These folders plus the client's roots."""
        return Confinement([*self.folders, *roots])

    def open_file(self, raw: str, path: Path) -> bytes:
        """Read ``path`` if, symlinks resolved, it is a regular file inside an allowed folder.

        Raises:
            ImageInputError: outside every allowed folder, not a regular file, missing or too large.
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
        if not any(real.is_relative_to(folder) for folder in self.folders):
            allowed = ", ".join(str(folder) for folder in self.folders)
            raise ImageInputError(
                f"{raw!r} is outside the folders images may be read from ({allowed}); move the file there "
                "or add its folder to PIAPI_ALLOWED_DIRS."
            )
        try:
            info = real.stat()
        except OSError:
            raise ImageInputError(f"There is no file at {raw!r}.") from None
        if not stat.S_ISREG(info.st_mode):
            raise ImageInputError(f"{raw!r} is not a regular file.")
        if info.st_size > MAX_UPLOAD_BYTES:
            raise _too_large(repr(raw), info.st_size)
        with real.open("rb") as handle:
            return handle.read(MAX_UPLOAD_BYTES + 1)


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
        data = self.confinement.with_roots(roots).open_file(text, path)
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
