"""Validation of parsed input against the schema, and safe JSON parsing.

The lowest layer of input reading: it knows the schema and the error type, nothing else, so
both :mod:`placer.loading` (files) and :mod:`placer.hf` (Hugging Face configs) build on it
without importing each other. Every problem becomes an :class:`InputError` naming the field.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import types
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Tag, ValidationError

from placer.errors import InputError

M = TypeVar("M", bound=BaseModel)


#: Branch labels pydantic puts in an error location for ``str | Model`` fields and tagged unions.
#: Only used where the schema walk below loses track of the type (it should not, for our schema).
_BRANCH_LABELS = {"str", "ModelSpec", "HardwareProfile", "synthetic", "loads", "file"}

#: Labels pydantic inserts for validators and union machinery (``function-after[...]``): never fields.
_INTERNAL_LABEL = re.compile(r"^(function-|(tagged-union|union|nullable|lax-or-strict|json-or-python)(\[|$))")


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """Strip ``Annotated`` layers: the bare type and the metadata found on the way."""
    metadata: list[Any] = []
    while get_origin(tp) is Annotated:
        tp, *extra = get_args(tp)
        metadata.extend(extra)
    return tp, metadata


def _union_members(tp: Any) -> list[Any] | None:
    """The non-``None`` members of a union with at least two of them, else ``None``."""
    bare, _ = _unwrap(tp)
    if get_origin(bare) not in (Union, types.UnionType):
        return None
    members = [arg for arg in get_args(bare) if arg is not type(None)]
    return members if len(members) >= 2 else None


def _branch_labels(member: Any) -> set[str]:
    """Every label pydantic may use for one union member: its ``Tag``, its class name, its literal tags."""
    bare, metadata = _unwrap(member)
    labels = {str(m.tag) for m in metadata if isinstance(m, Tag)}
    labels.add(getattr(bare, "__name__", str(bare)))
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        for info in bare.model_fields.values():
            literal, _ = _unwrap(info.annotation)
            if get_origin(literal) is Literal:
                labels.update(str(value) for value in get_args(literal))
    return labels


def _strip_optional(tp: Any) -> Any:
    """``Optional[X]`` (or ``Annotated[X, ...]``) -> bare ``X``; a real union stays as it is."""
    bare, _ = _unwrap(tp)
    if get_origin(bare) in (Union, types.UnionType):
        members = [arg for arg in get_args(bare) if arg is not type(None)]
        if len(members) == 1:
            bare, _ = _unwrap(members[0])
    return bare


def _element_type(tp: Any) -> Any:
    """The type of ``tp``'s items for list-like and dict types (``None`` when unknown)."""
    bare = _strip_optional(tp)
    origin, args = get_origin(bare), get_args(bare)
    if origin in (list, set, frozenset, tuple) and args:
        return args[0]  # tuple[X, ...]; fixed-length tuples are not in the schema
    if origin is dict and len(args) == 2:
        return args[1]
    return None


def _model_class(tp: Any) -> type[BaseModel] | None:
    """``tp`` as a pydantic model class (through ``Annotated`` and ``Optional``), or ``None``."""
    bare = _strip_optional(tp)
    return bare if isinstance(bare, type) and issubclass(bare, BaseModel) else None


def _walk(loc: tuple[Any, ...], root: Any = None) -> tuple[str, Any]:
    """The readable field path of an error location, and the schema type found at its end.

    ``('workload', 'batch_size')`` -> ``workload.batch_size``; list indices as ``[i]``. Pydantic
    also puts union branch labels in a location (``('routing', 'loads', 'loads', 0, 3)``: the
    second ``loads`` is the field, the first the ``kind`` tag of the branch). Walking the schema
    alongside tells them apart: a label is skipped only right after a union-typed field.
    """
    text = ""
    current = root  # schema type at this point of the location; None once unknown
    skipped_last = False
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            current = _element_type(current) if current is not None else None
            skipped_last = False
            continue
        part = str(part)
        if _INTERNAL_LABEL.match(part):
            continue  # validator / union machinery: not a field, the type is unchanged
        members = _union_members(current) if current is not None else None
        if members is not None:
            # Right after a union field pydantic always names the branch: skip it, follow it.
            current = next((m for m in members if part in _branch_labels(m)), None)
            skipped_last = True
            continue
        if current is None and part in _BRANCH_LABELS and not skipped_last:
            skipped_last = True  # schema unknown here: guess, but never skip two parts in a row
            continue
        model = _model_class(current) if current is not None else None
        if model is not None:
            info = model.model_fields.get(part)
            current = info.annotation if info is not None else None
        elif current is not None:
            current = _element_type(current)  # a dict key; anything else: lost track
        text += f".{part}" if text else part
        skipped_last = False
    return text, current


def _field_path(loc: tuple[Any, ...], root: Any = None) -> str:
    """``('workload', 'batch_size')`` -> ``workload.batch_size``; list indices as ``[i]``."""
    return _walk(loc, root)[0]


def _field_names(loc: tuple[Any, ...], root: Any) -> list[str]:
    """The field names known at a location of ``root``'s schema (empty when unknown)."""
    if root is None:
        return []
    _, tp = _walk(loc, root)
    model = _model_class(tp) if tp is not None else None
    if model is None:
        return []
    names = list(model.model_fields)
    names += [info.alias for info in model.model_fields.values() if info.alias]
    return names


_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.*)$", re.DOTALL)

_REASONS = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field (check the spelling)",
}


def _reason(error: dict[str, Any], root: Any = None) -> tuple[str, str]:
    """Field path and readable reason of one pydantic error (``root``: the validated model class)."""
    loc = tuple(error["loc"])
    field = _field_path(loc, root)
    kind = error["type"]
    message = error["msg"]
    if kind == "value_error":
        # Our validators write "field: reason", the field relative to the model that raised it.
        message = message.removeprefix("Value error, ")
        match = _FIELD_PREFIX.match(message)
        if match:
            field = f"{field}.{match.group(1)}" if field else match.group(1)
            message = match.group(2)
        return field, message
    if kind == "union_tag_invalid":
        # a tagged union's tag is wrong: name the tag field itself (``routing.kind``)
        tag = str(error.get("ctx", {}).get("discriminator", "")).strip("'")
        if tag.isidentifier():
            field = f"{field}.{tag}" if field else tag
        return field, message[:1].lower() + message[1:]
    if kind == "extra_forbidden":
        # The value of a misspelt key is the user's own data: say what the key should be instead.
        name = str(loc[-1]) if loc else ""
        close = difflib.get_close_matches(name, _field_names(loc[:-1], root), n=1) if name else []
        return field, f"unknown field; did you mean {close[0]!r}?" if close else _REASONS[kind]
    reason = _REASONS.get(kind, message[:1].lower() + message[1:])
    if kind not in ("missing",) and "input" in error:
        reason += f", got {json.dumps(error['input'], default=str)[:80]}"
    return field, reason


def validation_problems(exc: ValidationError, model_cls: type[BaseModel] | None = None) -> list[tuple[str, str]]:
    """Turn a pydantic error into ``(field, reason)`` pairs, one per distinct field.

    ``model_cls`` (the class that was validated) lets the field paths follow the schema; without
    it they are guessed from the location alone.
    """
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for error in exc.errors():
        field, reason = _reason(error, model_cls)
        if field in seen:
            continue  # a union reports every branch; the first is the useful one
        seen.add(field)
        problems.append((field, reason))
    return problems


def validate(model_cls: type[M], data: Any, source: str | None = None, prefix: str = "") -> M:
    """Validate ``data`` against ``model_cls`` or raise :class:`InputError`."""
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = [
            (f"{prefix}{field}" if field else prefix.rstrip("."), reason)
            for field, reason in validation_problems(exc, model_cls)
        ]
        raise InputError(problems, source) from None


#: Deepest nesting of arrays and objects a JSON input may have. Placer's documents are at most
#: about six levels deep (instance -> model -> moe -> field; routing.loads is two arrays); 64
#: leaves room for any hand-written extra while refusing inputs that would exhaust the parser's
#: or the validator's recursion (a 1,500-deep file raised ``RecursionError`` before this limit).
MAX_JSON_DEPTH = 64

#: Largest JSON input file read, in bytes. The biggest legitimate input is a ``loads`` routing
#: table (61 layers x 384 experts of numbers, well under 1 MB) or a plan's expert map (a few MB
#: at 1,024 GPUs); 256 MB is far above both and keeps a mistaken multi-GB file from exhausting memory.
MAX_JSON_BYTES = 256 * 1024 * 1024


class _JSONObject(dict):  # type: ignore[type-arg]
    """A parsed JSON object that remembers which of its keys the text gave more than once."""

    duplicates: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _JSONObject:
    obj = _JSONObject()
    duplicates: list[str] = []
    for key, value in pairs:
        if key in obj and key not in duplicates:
            duplicates.append(key)
        obj[key] = value
    if duplicates:
        obj.duplicates = tuple(duplicates)
    return obj


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def check_json_tree(data: Any, source: str | None = None, prefix: str = "") -> None:
    """Refuse what JSON allows but no placer input means: duplicate keys (the last one would win
    silently), ``NaN`` / ``Infinity`` (and numbers too large for a float), nesting deeper than
    :data:`MAX_JSON_DEPTH`. Iterative, so depth cannot exhaust the stack; each problem names its path."""
    problems: list[tuple[str, str]] = []
    stack: list[tuple[Any, str, int]] = [(data, prefix, 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((path, f"must be a finite number, got {value}"))
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                problems.append((path, f"nested deeper than {MAX_JSON_DEPTH} levels (MAX_JSON_DEPTH)"))
                continue
            if isinstance(value, dict):
                for key in getattr(value, "duplicates", ()):
                    problems.append((_join(path, key), "duplicate key: the object gives it more than once"))
                items = list(value.items())
            else:
                items = list(enumerate(value))
            stack.extend((item, _join(path, key), depth + 1) for key, item in reversed(items))
        if len(problems) >= 20:
            break
    if problems:
        raise InputError(problems, source)


def parse_json(text: str, source: str | None = None) -> Any:
    """Parse JSON text strictly (see :func:`check_json_tree`), or raise :class:`InputError`."""
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as exc:
        raise InputError.single(
            "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", source
        ) from None
    except RecursionError:
        raise InputError.single("", f"not accepted: nested deeper than {MAX_JSON_DEPTH} levels", source) from None
    check_json_tree(data, source)
    return data


def read_json(path: str | Path, field: str = "") -> Any:
    """Parse a JSON file, or raise :class:`InputError` saying why not (``field``: what named the file)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise InputError.single(field, f"{path}: {size} bytes, above MAX_JSON_BYTES = {MAX_JSON_BYTES}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.single(field, f"file not found: {path}") from None
    except UnicodeDecodeError:
        raise InputError.single(field, f"cannot read {path}: not UTF-8 text (is it a JSON file?)") from None
    except OSError as exc:
        raise InputError.single(field, f"cannot read {path}: {exc.strerror or exc}") from None
    return parse_json(text, str(path))
