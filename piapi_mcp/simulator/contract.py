"""What the simulator checks in a create and what a completed task's ``output`` looks like, per catalog spec.

A create is judged as PiAPI would: the pair must be in the catalog, its ``input`` must validate
against the spec's input model, and then against the documented limits of that pair that the
simulator checks on its own (:data:`CONTRACT_EXTRAS`), so a tool whose schema drifted from PiAPI's
contract is still caught. A completed task answers with the spec's documented ``output`` shape
(:attr:`TaskSpec.output_example`), every URL in it replaced by a file the simulator serves with
bytes of the right kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from piapi_mcp.catalog import CATALOG, OutputKind, TaskSpec
from piapi_mcp.models import USD_PER_CREDIT_UNIT

#: The extension the simulator serves each kind of file under (text has no file).
SERVED_EXTENSIONS: Final[dict[OutputKind, str]] = {
    "image": "png",
    "video": "mp4",
    "audio": "wav",
    "model3d": "glb",
    "file": "bin",
    "text": "txt",
}
_KIND_BY_EXTENSION: Final[dict[str, OutputKind]] = {
    **dict.fromkeys(("png", "jpg", "jpeg", "webp", "gif"), "image"),
    **dict.fromkeys(("mp4", "mov", "webm", "mkv"), "video"),
    **dict.fromkeys(("wav", "mp3", "m4a", "flac", "ogg"), "audio"),
    **dict.fromkeys(("glb", "gltf", "obj"), "model3d"),
}
#: Words in an output key that say what its URL is, checked in this order (``no_background_image``
#: is an image, ``combined_video`` a video, ``model_file`` a 3D model).
_KIND_BY_KEY: Final[tuple[tuple[str, OutputKind], ...]] = (
    ("video", "video"),
    ("audio", "audio"),
    ("song", "audio"),
    ("model", "model3d"),
    ("glb", "model3d"),
    ("mesh", "model3d"),
    ("image", "image"),
    ("cover", "image"),
    ("thumbnail", "image"),
    ("frame", "image"),
)
#: The shape answered for a spec that declares no ``output_example``: the field PiAPI's families use
#: most for that kind (``piapi-catalog.md`` §7.5).
_DEFAULT_OUTPUTS: Final[dict[OutputKind, dict[str, Any]]] = {
    "image": {"image_url": "https://img.theapi.app/temp/output.png", "image_base64": ""},
    "video": {"video_url": "https://img.theapi.app/temp/output.mp4"},
    "audio": {"audio_url": "https://img.theapi.app/temp/output.wav"},
    "model3d": {"model_file": "https://img.theapi.app/temp/output.glb"},
    "file": {"file_url": "https://img.theapi.app/temp/output.bin"},
    "text": {"text": ""},
}

Check = Callable[[dict[str, Any]], str | None]


@dataclass(frozen=True)
class Contract:
    """What the simulator knows of one pair beyond its input model: documented limits and usage."""

    #: A documented limit PiAPI enforces, checked on the validated input; a problem sentence or ``None``.
    check: Check | None = None
    #: ``meta.usage`` of a task of this pair: PiAPI's ``type`` and credit units (1 unit = US$1e-7).
    usage_type: str = "llm"
    consume: int = 0


def _kontext(task_input: dict[str, Any]) -> str | None:
    # PiAPI's Kontext page: steps at most 40 (the tool's own maximum could drift; this one cannot).
    steps = task_input.get("steps", 28)
    if not isinstance(steps, int) or not 1 <= steps <= 40:
        return "input.steps must be between 1 and 40"
    return None


_TEXT_TO_VIDEO: Final = ("t2v-",)
_IMAGE_TO_VIDEO: Final = ("i2v-", "s2v-")


def _hailuo(task_input: dict[str, Any]) -> str | None:
    # PiAPI's Hailuo page: t2v models take no image, i2v/s2v need one, s2v also a prompt.
    # n8n's nodes: no 1080p at 10 s.
    sub_model = str(task_input.get("model") or "")
    prompt, image = task_input.get("prompt"), task_input.get("image_url")
    if not sub_model:
        return "input.model is required"
    if sub_model.startswith(_TEXT_TO_VIDEO) and image:
        return f"input.image_url is not allowed with {sub_model}"
    if sub_model.startswith(_IMAGE_TO_VIDEO) and not image:
        return f"input.image_url is required with {sub_model}"
    if (sub_model.startswith(("t2v-", "s2v-")) or not image) and not prompt:
        return "input.prompt is required"
    if task_input.get("resolution") == 1080 and task_input.get("duration") == 10:
        return "10 s videos are not available at 1080p"
    return None


def _trellis(task_input: dict[str, Any]) -> str | None:
    if not task_input.get("image") and not task_input.get("images"):
        return "input.image or input.images is required"
    return None


#: Per-pair limits and usage, from PiAPI's documented examples (``piapi-catalog.md``, ``piapi-api.md`` §2.2).
CONTRACT_EXTRAS: Final[dict[tuple[str, str], Contract]] = {
    ("Qubico/flux1-dev-advanced", "kontext"): Contract(_kontext, "llm", 200_000),
    ("hailuo", "video_generation"): Contract(_hailuo, "point", 2_000_000),
    ("Qubico/tts", "zero-shot"): Contract(None, "llm", 0),
    ("Qubico/joycaption", "joycaption-beta-one"): Contract(None, "llm", 100_000),
    ("Qubico/trellis", "image-to-3d"): Contract(_trellis, "llm", 400_000),
}
_NO_CONTRACT: Final = Contract()


def contract_of(spec: TaskSpec) -> Contract:
    """The simulator's extra knowledge of ``spec``'s pair; without any, the spec's price as usage."""
    if spec.key in CONTRACT_EXTRAS:
        return CONTRACT_EXTRAS[spec.key]
    if spec.price_usd is None:
        return _NO_CONTRACT
    return Contract(consume=round(spec.price_usd / USD_PER_CREDIT_UNIT))


def validate_create(body: Any) -> tuple[TaskSpec, dict[str, Any]] | str:
    """The spec and the input PiAPI would echo for a create ``body``, or a sentence saying why not."""
    if not isinstance(body, dict):
        return "body must be a JSON object"
    model, task_type = body.get("model"), body.get("task_type")
    spec = CATALOG.find(model, task_type) if isinstance(model, str) and isinstance(task_type, str) else None
    if spec is None:
        return f"unsupported model/task_type {model!r}/{task_type!r}"
    task_input = body.get("input")
    if not isinstance(task_input, dict):
        return "input is required"
    try:
        validated = spec.input.model_validate(task_input)
    except ValidationError as err:
        return _problem(err)
    echoed = _echo(validated)
    check = contract_of(spec).check
    problem = check(echoed) if check is not None else None
    return problem if problem is not None else (spec, echoed)


def _echo(validated: BaseModel) -> dict[str, Any]:
    """The input as PiAPI echoes it: every field, defaults filled in, extra keys kept, keys sorted."""
    return dict(sorted(validated.model_dump(mode="json", exclude_none=True).items()))


def _problem(err: ValidationError) -> str:
    """PiAPI-style words for the first few problems: ``input.steps: Input should be ...``."""
    parts = []
    for item in err.errors()[:3]:
        where = ".".join(str(part) for part in ("input", *item["loc"]))
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


@dataclass(frozen=True)
class ServedOutput:
    """A file a completed task's ``output`` points at, served under ``/temp/{name}``."""

    task_id: str
    kind: OutputKind


def shape_output(
    spec: TaskSpec, task_id: str, base_url: str, caption: str
) -> tuple[dict[str, Any], dict[str, ServedOutput]]:
    """``spec``'s documented output with its URLs replaced by files the simulator serves, and those files.

    The first file is ``{task_id}.{ext}``, the next ``{task_id}-2.{ext}``… Each URL's kind comes from
    its extension, then its key, then the spec's output kind. Text fields are kept, except in a
    text-output spec, where they carry ``caption``.
    """
    served: dict[str, ServedOutput] = {}

    def visit(value: Any, keys: tuple[str, ...]) -> Any:
        if isinstance(value, Mapping):
            return {key: visit(item, (*keys, str(key))) for key, item in value.items()}
        if isinstance(value, list):
            return [visit(item, keys) for item in value]
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            kind = _kind_of(value, keys, spec.output)
            name = f"{task_id}{'' if not served else f'-{len(served) + 1}'}.{SERVED_EXTENSIONS[kind]}"
            served[name] = ServedOutput(task_id, kind)
            return f"{base_url}/temp/{name}"
        if isinstance(value, str) and value and spec.output == "text":
            return caption
        return value

    example = spec.output_example or _DEFAULT_OUTPUTS[spec.output]
    shaped = visit(example, ())
    if spec.output == "text" and not any(isinstance(v, str) and v for v in shaped.values()):
        shaped = {**shaped, "text": caption}
    return shaped, served


def _kind_of(url: str, keys: tuple[str, ...], fallback: OutputKind) -> OutputKind:
    path = urlsplit(url).path
    extension = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if extension in _KIND_BY_EXTENSION:
        return _KIND_BY_EXTENSION[extension]
    for key in reversed(keys):
        for word, kind in _KIND_BY_KEY:
            if word in key.lower():
                return kind
    return fallback
