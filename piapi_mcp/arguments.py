"""Tool arguments: a pydantic model's fields as a tool's top-level arguments, and refusals in words.

The SDK builds a tool's ``inputSchema`` from its function signature; :func:`model_arguments`
gives that signature the fields of the model that builds the PiAPI request, so the schema is the
model's own. Validation failures and unknown arguments become one sentence naming the field.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Final

from pydantic import BaseModel, ValidationError

from piapi_mcp.errors import shown
from piapi_mcp.models import TASK_ID_PATTERN
from piapi_mcp.wording import clause, description

_PATTERN_MEANINGS: Final = {
    r"\S": "must not be blank",
    TASK_ID_PATTERN: "must be a PiAPI task id (letters, digits, '-', '_' or '.')",
}


#: Errors pydantic itself raises about a whole object (its type), as opposed to a model validator's rule.
_BUILT_IN_MODEL_ERRORS: Final = frozenset({"dict_type", "model_type", "model_attributes_type"})


def describe_invalid_arguments(tool: str, error: ValidationError, *, within: str | None = None) -> str:
    """One sentence naming each bad argument of ``tool`` and what it must be.

    ``within`` names the argument the validated object came in (``run_task``'s ``input``), so
    fields read ``input.prompt``.
    """
    problems = "; ".join(clause(_describe_problem(tool, err, within)) for err in error.errors())
    return f"Invalid arguments for {tool}: {problems}. Fix and call {tool} again."


def describe_unknown_arguments(tool: str, unknown: Sequence[str], known: Sequence[str]) -> str:
    """One sentence refusing arguments ``tool`` does not have, naming the ones it has."""
    names = ", ".join(shown(name, 40) for name in unknown[:8])
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    plural = "is not an argument" if len(unknown) == 1 else "are not arguments"
    return (
        f"{names}{more} {plural} of {tool}, so nothing was sent; its arguments are "
        f"{', '.join(known) or 'none'}. Call {tool} again without {'it' if len(unknown) == 1 else 'them'}."
    )


def _describe_problem(tool: str, err: Any, within: str | None = None) -> str:
    loc = [str(part) for part in err.get("loc", ())]
    kind = err.get("type", "")
    if not loc and kind not in _BUILT_IN_MODEL_ERRORS:
        # A rule across fields (a model validator): its message names the fields in backticks.
        said = str(err.get("msg", "invalid arguments"))
        return re.sub(r"`(\w+)`", rf"`{within}.\1`", said) if within else said
    name = ".".join([within, *loc] if within else loc) or "arguments"
    ctx = err.get("ctx") or {}
    got = shown(err.get("input"), 60)
    if kind == "missing":
        return f"`{name}` is required"
    if kind == "string_too_short":
        return f"`{name}` must not be empty"
    if kind == "string_too_long":
        return f"`{name}` must be at most {ctx.get('max_length')} characters"
    if kind == "string_pattern_mismatch":
        meaning = _PATTERN_MEANINGS.get(ctx.get("pattern", ""), "is not in an accepted form")
        return f"`{name}` {meaning} (got {got})"
    if kind in ("greater_than_equal", "greater_than"):
        return f"`{name}` must be at least {ctx.get('ge', ctx.get('gt'))} (got {got})"
    if kind in ("less_than_equal", "less_than"):
        return f"`{name}` must be at most {ctx.get('le', ctx.get('lt'))} (got {got})"
    if kind.startswith("int_"):
        return f"`{name}` must be a whole number (got {got})"
    if kind.startswith("float_"):
        return f"`{name}` must be a number (got {got})"
    if kind.startswith("string_"):
        return f"`{name}` must be a string (got {got})"
    if kind == "extra_forbidden":
        if within is not None:
            return f"`{name}` is not a field this task takes"
        return f"`{name}` is not an argument of {tool}"
    if kind in ("dict_type", "model_type"):
        return f"`{name}` must be a JSON object (got {got})"
    return f"`{name}`: {err.get('msg', 'invalid value')}"


def model_arguments(
    model: type[BaseModel],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Expose ``model``'s fields as the tool's top-level arguments.

    The decorated function takes the validated model as its first parameter; its other
    parameters (controls such as ``wait_seconds``, and the MCP ``Context``) stay as they are.
    The SDK builds the tool's ``inputSchema`` from the resulting signature, so the schema is the
    model's, constraints and descriptions included, with nothing copied by hand.
    """

    def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        hints = typing.get_type_hints(fn, include_extras=True)
        own = list(inspect.signature(fn).parameters.values())[1:]
        fields = [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[info.annotation, info],
                default=inspect.Parameter.empty if info.is_required() else info.default,
            )
            for name, info in model.model_fields.items()
        ]
        controls = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints[p.name]) for p in own]
        control_names = {p.name for p in controls}

        async def wrapper(**kwargs: Any) -> Any:
            extra = {name: kwargs.pop(name) for name in list(kwargs) if name in control_names}
            return await fn(model.model_validate(kwargs), **extra)

        signature = inspect.Signature(fields + controls, return_annotation=hints["return"])
        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        wrapper.__signature__ = signature  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
            "return": signature.return_annotation
        }
        return wrapper

    return decorate


#: Keywords whose value is a schema, or a list of them; values of others (defaults, enums) are data.
_SUBSCHEMA_KEYWORDS: Final = frozenset(
    {"items", "prefixItems", "anyOf", "oneOf", "allOf", "not", "additionalProperties", "if", "then", "else"}
)
#: Keywords whose value maps names to schemas.
_SCHEMA_MAP_KEYWORDS: Final = frozenset({"properties", "$defs", "patternProperties"})


def lean_schema(schema: Any) -> Any:
    """``schema`` without what pydantic adds for code readers: titles and the models' docstrings.

    pydantic titles every property and model (its name again, in words) and describes every model
    object with its class docstring. Hosts load every tool's schemas into the model's context, so
    bytes that say nothing to it cost. Property descriptions stay; names (keys of ``properties``
    and ``$defs``) and data (defaults, enums) are kept as they are; descriptions lose any docstring
    indentation and trailing spaces.
    """
    if isinstance(schema, list):
        return [lean_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    lean: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" or (key == "description" and "properties" in schema):
            continue
        if key == "description" and isinstance(value, str):
            lean[key] = description(value)
            continue
        if key in _SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            lean[key] = {name: lean_schema(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_KEYWORDS:
            lean[key] = lean_schema(value)
        else:
            lean[key] = value
    return _merge_nullable(lean)


def _merge_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf [S, {"type": "null"}]`` as ``S`` with ``type: [T, "null"]``: the same rule, shorter.

    Keywords of one JSON type (``maxLength``, ``properties``…) apply only to values of that type,
    so ``null`` passes them either way.
    """
    branches = schema.get("anyOf")
    if not (isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches):
        return schema
    (other,) = [branch for branch in branches if branch != {"type": "null"}]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or "anyOf" in other:
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**other, **merged, "type": [other["type"], "null"]}


#: What an output schema keeps: its shape. Words (descriptions, titles), defaults and formats go; the
#: result's own text says what each field means, in every result, so the model need not pay for it
#: again in every tool of every ``tools/list``.
_SHAPE_DROPPED: Final = frozenset({"title", "description", "default", "format", "examples"})


def output_shape(schema: Any, *, keep: Sequence[str] | None = None) -> Any:
    """``schema`` reduced to its shape: types, properties, enums; nullable as ``[T, "null"]``.

    Definitions are written in place (each is used once), ``required`` keeps only the fields that
    always carry a value. With ``keep``, only those top-level properties are described, each by its
    type alone (the others are still allowed: objects take extra properties by default). Every
    document the full schema accepts, this one accepts too, so hosts that check
    ``structuredContent`` against it see no difference.
    """
    if isinstance(schema, dict) and isinstance(schema.get("$defs"), dict):
        definitions = schema["$defs"]
        schema = _inline(
            {key: value for key, value in schema.items() if key != "$defs"}, definitions, depth=0
        )
    shaped = _shape(schema)
    if keep is None or not isinstance(shaped, dict) or not isinstance(shaped.get("properties"), dict):
        return shaped
    properties = shaped["properties"]
    core = {name: {"type": properties[name]["type"]} for name in keep if "type" in properties.get(name, {})}
    required = [name for name in shaped.get("required", []) if name in core]
    return {"type": "object", "properties": core, **({"required": required} if required else {})}


def _inline(schema: Any, definitions: dict[str, Any], *, depth: int) -> Any:
    """``schema`` with every ``{"$ref": "#/$defs/X"}`` replaced by X itself."""
    if isinstance(schema, list):
        return [_inline(item, definitions, depth=depth) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and depth < 16:
        target = definitions.get(ref.removeprefix("#/$defs/"))
        if isinstance(target, dict):
            rest = {key: value for key, value in schema.items() if key != "$ref"}
            return {**_inline(target, definitions, depth=depth + 1), **rest}
    return {key: _inline(value, definitions, depth=depth) for key, value in schema.items()}


def _shape(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    shaped: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SHAPE_DROPPED:
            continue
        if key in _SCHEMA_MAP_KEYWORDS and isinstance(value, dict):
            shaped[key] = {name: _shape(sub) for name, sub in value.items()}
        elif key in _SUBSCHEMA_KEYWORDS:
            shaped[key] = _shape(value)
        else:
            shaped[key] = value
    if shaped.get("additionalProperties") is True:
        del shaped["additionalProperties"]  # JSON Schema's default
    shaped = _merge_nullable(shaped)
    properties = shaped.get("properties")
    if isinstance(properties, dict) and isinstance(shaped.get("required"), list):
        # A field that may be null says nothing by being required: keep only those that carry a value.
        shaped["required"] = [name for name in shaped["required"] if not _nullable(properties.get(name))]
        if not shaped["required"]:
            del shaped["required"]
    return shaped


def _nullable(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    kinds = schema.get("type")
    if kinds == "null" or (isinstance(kinds, list) and "null" in kinds):
        return True
    return any(branch == {"type": "null"} for branch in schema.get("anyOf", ()))
