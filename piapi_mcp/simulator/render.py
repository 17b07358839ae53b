"""What the simulator's tasks make: real, small files of every output kind."""

from __future__ import annotations

import array
import hashlib
import io
import json
import math
import struct
import sys
import textwrap
import wave
from importlib import resources
from typing import Any

#: PiAPI's largest output side (Flux and Kontext take 128 to 2048).
MAX_RENDER_SIDE = 2048


def render_image(task_input: dict[str, Any], source: bytes | None = None) -> bytes:
    """A PNG of the requested size (at most 2048 px a side) with the prompt drawn on it.

    The picture is the input image when the simulator has its bytes (``source``), tinted by the
    prompt so an edit visibly happened; otherwise a gradient.
    """
    from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

    width = max(16, min(int(task_input.get("width", 1024)), MAX_RENDER_SIDE))
    height = max(16, min(int(task_input.get("height", 1024)), MAX_RENDER_SIDE))
    prompt = str(task_input.get("prompt", ""))
    digest = hashlib.sha256(prompt.encode()).digest()
    top, bottom = digest[:3], digest[3:6]
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(
        Image.new("RGB", (width, height), tuple(bottom)),
        Image.new("RGB", (width, height), tuple(top)),
        gradient,
    )
    if source is not None:
        try:
            with Image.open(io.BytesIO(source)) as opened:
                picture = opened.convert("RGB").resize((width, height))
            image = Image.blend(picture, image, 0.35)
        except (UnidentifiedImageError, OSError, ValueError):
            pass
    draw = ImageDraw.Draw(image)
    size = max(12, width // 24)
    font = ImageFont.load_default(size=size)
    text = "\n".join(textwrap.wrap(f"PiAPI simulator: {prompt}", width=max(10, width // (size // 2 + 1))))
    draw.multiline_text(
        (size, size), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0)
    )
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


#: MIME type of each output kind the simulator serves, by the extension it serves it under.
CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "mp4": "video/mp4",
    "wav": "audio/wav",
    "glb": "model/gltf-binary",
}


def tiny_video() -> bytes:
    """A valid one-second 64x64 H.264 MP4 (about 2 KB), made once with ffmpeg and shipped as package data.

    Made with ``ffmpeg -f lavfi -i testsrc=size=64x64:rate=4:duration=1 -c:v libx264 -preset veryslow
    -crf 40 -pix_fmt yuv420p -movflags +faststart -bitexact -map_metadata -1 -an tiny.mp4``.
    """
    return (resources.files("piapi_mcp.simulator") / "data" / "tiny.mp4").read_bytes()


def photo() -> bytes:
    """A 1024x1024 JPEG photograph (about 200 KB) shipped as package data; its sources and licences
    (public domain and CC0) are in ``data/photo.md``."""
    return (resources.files("piapi_mcp.simulator") / "data" / "photo.jpg").read_bytes()


def tiny_audio(text: str, seconds: float = 0.25, rate: int = 8000) -> bytes:
    """A mono 16-bit WAV: a short tone whose pitch follows ``text``, so different tasks sound different."""
    pitch = 220 + hashlib.sha256(text.encode()).digest()[0] * 2
    frames = array.array(
        "h", (int(8000 * math.sin(2 * math.pi * pitch * n / rate)) for n in range(int(seconds * rate)))
    )
    if sys.byteorder == "big":
        frames.byteswap()
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames.tobytes())
    return out.getvalue()


def tiny_glb() -> bytes:
    """A valid glTF 2.0 binary (GLB) holding one triangle: header, a JSON chunk, a BIN chunk."""
    positions = struct.pack("<9f", 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    gltf = {
        "asset": {"version": "2.0", "generator": "piapi-mcp simulator"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 3,
                "type": "VEC3",
                "min": [0.0, 0.0, 0.0],
                "max": [1.0, 1.0, 0.0],
            }
        ],
    }
    text = json.dumps(gltf, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned; JSON pads with spaces
    chunks = struct.pack("<I4s", len(text), b"JSON") + text + struct.pack("<I4s", len(positions), b"BIN\0")
    chunks += positions
    return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks
