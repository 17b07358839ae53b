"""What the simulator checks in a create and what a completed task's ``output`` looks like, per catalog spec.

A create is judged as PiAPI would: the pair must be in the catalog, its ``input`` must validate
against the spec's input model, and then against the documented limits of that pair that the
simulator checks on its own (:data:`CONTRACT_EXTRAS`), so a tool whose schema drifted from PiAPI's
contract is still caught. A completed task answers with the spec's documented ``output`` shape
(:attr:`TaskSpec.output_example`), every URL in it replaced by a file the simulator serves with
bytes of the right kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from piapi_mcp.catalog import CATALOG, OutputKind, TaskSpec
from piapi_mcp.catalog.kling import EFFECTS_WITH_PROMPT
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


# --- video families (piapi-catalog.md §5.3 to §5.8, §5.16) ---------------------------------------

_KLING_LEGACY: Final = frozenset({"1.0", "1.5", "1.6", "2.0", "2.1", "2.1-master"})
_KLING_VERSIONS: Final = _KLING_LEGACY | {"2.5", "2.6", "3.0"}


def _kling_video(task_input: dict[str, Any]) -> str | None:
    # Kling's pages: 3.0 needs a version and a prompt; legacy versions make 5 or 10 s and need a first
    # frame before a last one; elements need 1.6.
    version = task_input.get("version")
    if version not in _KLING_VERSIONS:
        return f"input.version must be one of {', '.join(sorted(_KLING_VERSIONS))}"
    if version == "3.0" and not task_input.get("prompt") and not task_input.get("multi_shots"):
        return "input.prompt is required"
    if version in _KLING_LEGACY and task_input.get("duration", 5) not in (5, 10):
        return f"input.duration must be 5 or 10 with version {version}"
    if task_input.get("image_tail_url") and not task_input.get("image_url"):
        return "input.image_tail_url needs input.image_url"
    if task_input.get("elements") and version != "1.6":
        return "input.elements needs version 1.6"
    return None


def _kling_lip_sync(task_input: dict[str, Any]) -> str | None:
    if not task_input.get("tts_text") and not task_input.get("local_dubbing_url"):
        return "input.tts_text or input.local_dubbing_url is required"
    return None


def _kling_effects(task_input: dict[str, Any]) -> str | None:
    effect = task_input.get("effect")
    if effect in EFFECTS_WITH_PROMPT and not task_input.get("prompt"):
        return f"input.prompt is required with the {effect} effect"
    return None


def _kling_try_on(task_input: dict[str, Any]) -> str | None:
    if (
        not task_input.get("dress_input")
        and not task_input.get("upper_input")
        and not task_input.get("lower_input")
    ):
        return "input.dress_input, or input.upper_input and/or input.lower_input, is required"
    return None


def _kling_motion(task_input: dict[str, Any]) -> str | None:
    if not task_input.get("video_url") and not task_input.get("preset_motion"):
        return "input.video_url or input.preset_motion is required"
    return None


def _seedance_fast(task_input: dict[str, Any]) -> str | None:
    return "input.resolution: fast tiers cap at 720p" if task_input.get("resolution") == "1080p" else None


def _priced(model: str, task_type: str, check: Check | None, usage_type: str) -> Contract:
    """A contract whose usage is the spec's documented price (0 where PiAPI publishes none)."""
    spec = CATALOG.find(model, task_type)
    price = spec.price_usd if spec is not None and spec.price_usd is not None else 0.0
    return Contract(check, usage_type, round(price / USD_PER_CREDIT_UNIT))


def _no_longer_run(spec: TaskSpec) -> Check:
    """A discontinued or stopped pair's check: every create is refused (PiAPI's words are not documented)."""

    def refuse(task_input: dict[str, Any]) -> str | None:
        return f"{spec.model} {spec.task_type} is {spec.status}: PiAPI no longer runs it"

    return refuse


# --- tools families ---------------------------------------------------------------------------------


def _udio_music(task_input: dict[str, Any]) -> str | None:
    # PiAPI's Udio examples: lyrics_type decides what else is needed; an extension names its song.
    kind = task_input.get("lyrics_type")
    if kind not in ("generate", "user", "instrumental"):
        return "input.lyrics_type must be generate, user or instrumental"
    if kind == "user" and not (task_input.get("lyrics") or task_input.get("prompt")):
        return "input.lyrics is required with lyrics_type user"
    if kind != "user" and not task_input.get("gpt_description_prompt"):
        return f"input.gpt_description_prompt is required with lyrics_type {kind}"
    return None


#: PiAPI's Faceswap pages: faces are numbered from 0, given as "0" or "1,0".
_FACES_INDEX: Final = re.compile(r"\d+(,\d+)*")


def _faces_index(task_input: dict[str, Any]) -> str | None:
    for name in ("swap_faces_index", "target_faces_index"):
        value = task_input.get(name)
        if value is not None and not (isinstance(value, str) and _FACES_INDEX.fullmatch(value)):
            return f"input.{name} must be face numbers separated by commas, like '0,1'"
    return None


def _image_face_swap(task_input: dict[str, Any]) -> str | None:
    # PiAPI's Faceswap page: both pictures are URLs ending in jpg/jpeg/png/webp, or base64.
    for name in ("target_image", "swap_image"):
        value = str(task_input.get(name) or "")
        if value.startswith(("http://", "https://")) and not _IMAGE_URL.search(urlsplit(value).path):
            return f"input.{name} must be a URL ending in jpg, jpeg, png or webp"
    return _faces_index(task_input)


def _video_face_swap(task_input: dict[str, Any]) -> str | None:
    if not task_input.get("swap_image") or not task_input.get("target_video"):
        return "input.swap_image and input.target_video are required"
    return _faces_index(task_input)


_IMAGE_URL: Final = re.compile(r"\.(jpe?g|png|webp)$", re.IGNORECASE)


#: Per-pair limits and usage, from PiAPI's documented examples (``piapi-catalog.md``, ``piapi-api.md`` §2.2).
CONTRACT_EXTRAS: Final[dict[tuple[str, str], Contract]] = {
    ("Qubico/flux1-dev-advanced", "kontext"): _priced(
        "Qubico/flux1-dev-advanced", "kontext", _kontext, "llm"
    ),
    ("hailuo", "video_generation"): Contract(_hailuo, "point", 2_000_000),
    ("Qubico/tts", "zero-shot"): Contract(None, "llm", 0),
    ("Qubico/joycaption", "joycaption-beta-one"): Contract(None, "llm", 100_000),
    ("Qubico/trellis", "image-to-3d"): Contract(_trellis, "llm", 400_000),
    # video families
    ("kling", "video_generation"): _priced("kling", "video_generation", _kling_video, "point"),
    ("kling", "lip_sync"): _priced("kling", "lip_sync", _kling_lip_sync, "point"),
    ("kling", "effects"): _priced("kling", "effects", _kling_effects, "point"),
    ("kling", "ai_try_on"): _priced("kling", "ai_try_on", _kling_try_on, "point"),
    ("kling", "motion_control"): _priced("kling", "motion_control", _kling_motion, "point"),
    ("seedance", "seedance-2-fast"): _priced("seedance", "seedance-2-fast", _seedance_fast, "llm"),
    ("seedance", "seedance-2-fast-less-restriction"): _priced(
        "seedance", "seedance-2-fast-less-restriction", _seedance_fast, "llm"
    ),
    # --- image, audio and 3D families ---
    # PiAPI's completed Pixal3D example: usage type point, its price (2,500,000 units).
    ("Qubico/pixal3d", "image-to-3d"): _priced("Qubico/pixal3d", "image-to-3d", None, "point"),
    # Midjourney (discontinued) and Suno (stopped): refused, as run_task refuses them before sending.
    **{spec.key: Contract(_no_longer_run(spec)) for spec in CATALOG.all() if spec.status != "active"},
    # --- tools families: Udio, Faceswap, the image and video toolkits ---
    ("music-u", "generate_music"): _priced("music-u", "generate_music", _udio_music, "point"),
    ("Qubico/image-toolkit", "face-swap"): Contract(_image_face_swap),
    ("Qubico/image-toolkit", "multi-face-swap"): _priced(
        "Qubico/image-toolkit", "multi-face-swap", _image_face_swap, "llm"
    ),
    ("Qubico/video-toolkit", "face-swap"): Contract(_video_face_swap),
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
    if spec.output == "text" and not _has_text(shaped):
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


def _has_text(value: Any) -> bool:
    """Whether a non-empty string is anywhere in ``value`` (Udio's lyrics are in ``lyrics_pairs[].text``)."""
    if isinstance(value, Mapping):
        return any(_has_text(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_text(item) for item in value)
    return isinstance(value, str) and bool(value)
