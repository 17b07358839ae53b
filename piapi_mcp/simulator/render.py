"""What the simulator's tasks make: real, small files of every output kind."""

from __future__ import annotations

import hashlib
import io
import textwrap
from typing import Any

MAX_RENDER_SIDE = 1024


def render_image(task_input: dict[str, Any], source: bytes | None = None) -> bytes:
    """A PNG of the requested size (at most 1024 px a side) with the prompt drawn on it.

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
