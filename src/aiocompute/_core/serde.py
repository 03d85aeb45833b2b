"""cattrs converter factory shared by every API package.

This module knows no API's names. Each API package builds its two converters (lenient and
strict) once, with :class:`Converters`, and keeps its wire names *there*, never in the
models (:func:`make_converter` builds one converter from the same arguments):

* ``naming`` sets how attribute names become wire keys for the whole converter
  (``"snake"``: unchanged; ``"camel"``: ``working_directory`` -> ``workingDirectory``).
* ``class_naming`` overrides that per class (``{Job: "camel"}``); it is looked up along the
  class's MRO, so a subclass inherits its parent's naming.
* ``renames`` gives per-class, per-attribute wire keys for the oddballs
  (``{ResourceLimit: {"value_type": "valueType"}}``); it wins over the naming rule and is
  inherited along the MRO too.
* ``aliases`` lists other wire keys accepted when *reading* (never written), for fields that
  different servers or documents spell differently
  (``{ResourceLimit: {"max_value": ("maxValue",)}}``).

Every model class may declare a ``raw: Mapping[str, Any]`` attribute
(``attrs.field(factory=dict, repr=False, eq=False)``). It is not part of the wire: when a
model is read, ``raw`` receives the whole JSON object as it came (unknown keys included), so
fields this SDK does not know yet stay reachable. Treat it as read-only.

Modes:

* lenient (default, for production): unknown keys are ignored (and kept in ``raw``),
  numbers and numeric strings are coerced where the type asks for it, missing optional
  fields take their defaults, unknown values of ``SomeEnum | str`` fields stay plain strings.
* strict (for tests against recorded examples, so schema drift is caught): unknown keys and
  wrong JSON types raise.

Either way, :func:`structure` turns every failure into
:class:`aiocompute.ProtocolError` naming the wire path, the class and the reason.

Writing (unstructuring) a model drops ``None`` values and ``raw`` so that optional request
parameters are not sent as ``null``; datetimes are written as ISO-8601 UTC strings with a
``Z`` and microseconds, enums as their values, tuples as lists.

Timestamps: a field typed ``datetime`` (alias :data:`Timestamp`) accepts epoch
*milliseconds* (int or float) or an ISO-8601 string (with or without ``Z`` or an offset,
with any number of fractional digits); the result is always timezone-aware (UTC when the
input says nothing).
"""

from __future__ import annotations

import enum
import math
import re
import types
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    is_sequence,
    list_structure_factory,
    mapping_structure_factory,
)
from cattrs.errors import (
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .._exceptions import ProtocolError

__all__ = [
    "Converters",
    "Naming",
    "Timestamp",
    "WireConverter",
    "format_timestamp",
    "make_converter",
    "parse_timestamp",
    "structure",
    "to_camel",
    "unstructure",
]

T = TypeVar("T")

#: How attribute names become wire keys.
Naming = Literal["snake", "camel"]

#: A timestamp field: read from epoch milliseconds or ISO-8601, always timezone-aware.
Timestamp = datetime

_UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=_UTC)

# How many error lines a ProtocolError message lists before summarising the rest.
_MAX_ERRORS = 5


def to_camel(name: str) -> str:
    """``working_directory`` -> ``workingDirectory``; names without ``_`` are unchanged."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# --------------------------------------------------------------------------- timestamps

_ISO_RE = re.compile(
    r"""^(?P<date>\d{4}-\d{2}-\d{2})
        (?:[Tt\ ](?P<time>\d{2}:\d{2}(?::\d{2})?)
           (?:[.,](?P<frac>\d+))?
        )?
        (?P<tz>[Zz]|[+-]\d{2}(?::?\d{2})?)?$""",
    re.VERBOSE,
)


def parse_timestamp(value: Any) -> datetime:
    """Read a timestamp: epoch milliseconds (int/float), an ISO-8601 string, or a datetime.

    Naive values are taken as UTC. Raises :class:`TypeError` for other JSON types and
    :class:`ValueError` for unreadable strings or out-of-range numbers.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    if isinstance(value, bool):  # bool is an int subclass; a flag is never a time
        raise TypeError("expected a timestamp (epoch ms or ISO-8601 string), got bool")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"invalid epoch-ms timestamp {value!r}")
        try:
            return _EPOCH + timedelta(milliseconds=value)
        except OverflowError:
            raise ValueError(f"epoch-ms timestamp out of range: {value!r}") from None
    if isinstance(value, str):
        match = _ISO_RE.match(value.strip())
        if match is None:
            raise ValueError(f"invalid ISO-8601 timestamp {value!r}")
        # Python 3.10's fromisoformat wants exactly 6 fractional digits and no "Z".
        text = match["date"]
        if match["time"]:
            text += "T" + match["time"]
            if match["frac"]:
                text += "." + match["frac"][:6].ljust(6, "0")
        tz = match["tz"]
        if tz:
            if tz in ("Z", "z"):
                tz = "+00:00"
            elif len(tz) == 3:
                tz += ":00"
            elif ":" not in tz:
                tz = tz[:3] + ":" + tz[3:]
            if not match["time"]:
                text += "T00:00"
            text += tz
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"invalid ISO-8601 timestamp {value!r}") from None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=_UTC)
    raise TypeError(f"expected a timestamp (epoch ms or ISO-8601 string), got {_json_type(value)}")


def format_timestamp(value: datetime) -> str:
    """ISO-8601 in UTC with microseconds and ``Z``: ``2025-07-23T00:00:00.000000Z``.

    A naive datetime is taken as UTC.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    utc = value.astimezone(_UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


# --------------------------------------------------------------------------- primitives


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _strict_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {_json_type(value)}")


def _strict_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, got {_json_type(value)}")


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise TypeError(f"expected a number, got {_json_type(value)}")


def _strict_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise TypeError(f"expected a boolean, got {_json_type(value)}")


def _lenient_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    # Servers sometimes send numbers where the docs say string ("value": 4).
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {_json_type(value)}")


def _lenient_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
    raise TypeError(f"expected an integer, got {_json_type(value)}")


def _lenient_float(value: Any, _: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    raise TypeError(f"expected a number, got {_json_type(value)}")


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _lenient_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    # Never bool("false"): that would be True.
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError(f"expected a boolean, got {_json_type(value)} {value!r}")


def _enum_aware(base: type, hook: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Let a primitive hook also serve enums derived from that primitive.

    cattrs dispatches ``class Color(str, Enum)`` to the ``str`` hook (``str`` comes first in
    its MRO), so the hook checks the JSON type as for ``str`` and then asks the enum.
    """

    def structure_primitive(value: Any, tp: Any) -> Any:
        if tp is base or not _is_enum(tp):
            return hook(value, tp)
        try:
            return tp(hook(value, base))
        except ValueError:
            raise ValueError(f"unknown {tp.__name__} value {value!r}") from None

    return structure_primitive


def _plain_str(value: str) -> str:
    return value.value if isinstance(value, enum.Enum) else value


def _structure_timestamp(value: Any, _: Any) -> datetime:
    return parse_timestamp(value)


# --------------------------------------------------------------------------- unions


def _union_args(tp: Any) -> tuple[Any, ...] | None:
    """The members of a ``Union`` / ``X | Y`` type, or None if ``tp`` is not a union."""
    if get_origin(tp) in (Union, types.UnionType):
        return get_args(tp)
    return None


def _is_enum(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _is_multi_union(tp: Any) -> bool:
    """Unions with two or more non-None members (plain ``X | None``: :func:`_is_optional`)."""
    args = _union_args(tp)
    return args is not None and len([a for a in args if a is not type(None)]) >= 2


def _is_optional(tp: Any) -> bool:
    """``X | None`` with exactly one other member."""
    args = _union_args(tp)
    return args is not None and len(args) == 2 and type(None) in args


class WireConverter(cattrs.Converter):
    """A :class:`cattrs.Converter` that also knows each class's wire names.

    Build it with :func:`make_converter`; ``wire_name(cls, attr)`` answers the wire key of
    an attribute (used in error paths).
    """

    __slots__ = ("_aliases", "_class_naming", "_renames", "naming", "strict")

    def __init__(
        self,
        *,
        naming: Naming,
        strict: bool,
        class_naming: Mapping[type, Naming],
        renames: Mapping[type, Mapping[str, str]],
        aliases: Mapping[type, Mapping[str, Iterable[str]]],
    ) -> None:
        # Tuples (and other sequences) are written as JSON arrays.
        super().__init__(
            forbid_extra_keys=strict,
            detailed_validation=True,
            unstruct_collection_overrides={tuple: list},
        )
        self.naming: Naming = naming
        self.strict = strict
        self._class_naming = dict(class_naming)
        self._renames = {cls: dict(m) for cls, m in renames.items()}
        self._aliases = {cls: {a: tuple(ws) for a, ws in m.items()} for cls, m in aliases.items()}

    def naming_for(self, cls: type) -> Naming:
        """The naming rule of ``cls``: its own, an ancestor's, or the converter's."""
        for klass in getattr(cls, "__mro__", (cls,)):
            if klass in self._class_naming:
                return self._class_naming[klass]
        return self.naming

    def wire_name(self, cls: type, attr: str) -> str:
        """The wire key of attribute ``attr`` of ``cls``."""
        for klass in getattr(cls, "__mro__", (cls,)):
            renamed = self._renames.get(klass, {}).get(attr)
            if renamed is not None:
                return renamed
        return to_camel(attr) if self.naming_for(cls) == "camel" else attr

    def aliases_for(self, cls: type) -> dict[str, str]:
        """``{alternative wire key: primary wire key}`` accepted when reading ``cls``."""
        out: dict[str, str] = {}
        for klass in reversed(getattr(cls, "__mro__", (cls,))):
            for attr, alts in self._aliases.get(klass, {}).items():
                for alt in alts:
                    out[alt] = self.wire_name(cls, attr)
        return out


def make_converter(
    *,
    naming: Naming,
    strict: bool = False,
    class_naming: Mapping[type, Naming] | None = None,
    renames: Mapping[type, Mapping[str, str]] | None = None,
    aliases: Mapping[type, Mapping[str, Iterable[str]]] | None = None,
) -> WireConverter:
    """Build the converter of one API (see the module docstring for the rules).

    ``naming`` is the converter-wide rule, ``class_naming`` the per-class exceptions,
    ``renames`` per-class per-attribute wire keys, ``aliases`` extra keys accepted on read.
    ``strict`` forbids unknown keys and wrong JSON types.
    """
    conv = WireConverter(
        naming=naming,
        strict=strict,
        class_naming=class_naming or {},
        renames=renames or {},
        aliases=aliases or {},
    )

    primitives: dict[type, Callable[[Any, Any], Any]] = (
        {str: _strict_str, int: _strict_int, float: _strict_float, bool: _strict_bool}
        if strict
        else {str: _lenient_str, int: _lenient_int, float: _lenient_float, bool: _lenient_bool}
    )
    for tp, hook in primitives.items():
        conv.register_structure_hook(tp, _enum_aware(tp, hook))
    # str-valued enums would otherwise be written as themselves (see _enum_aware).
    conv.register_unstructure_hook(str, _plain_str)
    conv.register_structure_hook(datetime, _structure_timestamp)
    conv.register_unstructure_hook(datetime, format_timestamp)

    conv.register_structure_hook_factory(is_sequence, lambda tp: _sequence_hook(conv, tp))
    conv.register_structure_hook_factory(is_mapping, lambda tp: _mapping_hook(conv, tp))
    conv.register_structure_hook_factory(_is_multi_union, lambda tp: _union_hook(conv, tp))
    conv.register_structure_hook_factory(_is_optional, lambda tp: _optional_hook(conv, tp))
    # After the union hooks, so it wins for ``datetime | str | None`` fields.
    conv.register_structure_hook_func(_is_time_or_text, _time_or_text_hook(strict))
    conv.register_structure_hook_factory(attrs.has, lambda cls: _attrs_structure_hook(conv, cls))
    conv.register_unstructure_hook_factory(
        attrs.has, lambda cls: _attrs_unstructure_hook(conv, cls)
    )
    return conv


class Converters:
    """The two converters of one API, made once from its wire-name configuration.

    ``converters()`` (or ``.lenient``) is the lenient converter, for production;
    ``converters(strict=True)`` (or ``.strict``) the strict one, for tests against recorded
    examples. The arguments are :func:`make_converter`'s, without ``strict``.
    """

    __slots__ = ("lenient", "strict")

    def __init__(
        self,
        *,
        naming: Naming,
        class_naming: Mapping[type, Naming] | None = None,
        renames: Mapping[type, Mapping[str, str]] | None = None,
        aliases: Mapping[type, Mapping[str, Iterable[str]]] | None = None,
    ) -> None:
        self.lenient, self.strict = (
            make_converter(
                naming=naming,
                strict=strict,
                class_naming=class_naming,
                renames=renames,
                aliases=aliases,
            )
            for strict in (False, True)
        )

    def __call__(self, strict: bool = False) -> WireConverter:
        """The strict converter if ``strict``, else the lenient one."""
        return self.strict if strict else self.lenient


def _is_time_or_text(tp: Any) -> bool:
    """A field typed ``datetime | str | None``: see :func:`_time_or_text_hook`."""
    args = getattr(tp, "__args__", None)
    return args is not None and set(args) == {datetime, str, type(None)}


def _time_or_text_hook(strict: bool) -> Callable[[Any, Any], Any]:
    """For APIs that document timestamps only as "string" (their examples hold words such
    as ``"example"``): a readable timestamp becomes a datetime, any other text is kept as
    sent, ``null`` and ``""`` are None. Epoch numbers are read in lenient mode only."""

    def read(value: Any, _: Any) -> datetime | str | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                return parse_timestamp(value)
            except ValueError:
                return value
        if strict:
            raise TypeError(f"expected a timestamp string, got {_json_type(value)}")
        return parse_timestamp(value)

    return read


def _sequence_hook(conv: WireConverter, tp: Any) -> Callable[[Any, Any], Any]:
    """JSON arrays only: cattrs alone would happily turn ``"abc"`` into ``('a','b','c')``."""
    is_tuple = (get_origin(tp) or tp) is tuple
    inner = (
        homogenous_tuple_structure_factory(tp, conv)
        if is_tuple
        else list_structure_factory(tp, conv)
    )
    lenient = not conv.strict

    def structure_sequence(value: Any, t: Any) -> Any:
        if value is None and lenient:  # "tags": null reads as no tags
            return () if is_tuple else []
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"expected an array, got {_json_type(value)}")
        return inner(value, t)

    return structure_sequence


def _mapping_hook(conv: WireConverter, tp: Any) -> Callable[[Any, Any], Any]:
    """JSON objects only; in lenient mode ``null`` reads as an empty one."""
    inner = mapping_structure_factory(tp, conv)
    lenient = not conv.strict

    def structure_mapping(value: Any, t: Any) -> Any:
        if value is None and lenient:
            return {}
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {_json_type(value)}")
        return inner(value, t)

    return structure_mapping


def _optional_hook(conv: WireConverter, tp: Any) -> Callable[[Any, Any], Any]:
    """``X | None``: None, or what X's hook makes of the value."""
    (member,) = [a for a in get_args(tp) if a is not type(None)]
    try:
        inner = conv.get_structure_hook(member)
    except RecursionError:
        # A class that contains itself (cattrs is still building its hook): look the hook
        # up when a value comes, as cattrs' own generated functions do.
        def structure_late(value: Any, _: Any) -> Any:
            return None if value is None else conv.structure(value, member)

        return structure_late

    def structure_optional(value: Any, _: Any) -> Any:
        return None if value is None else inner(value, member)

    return structure_optional


def _union_hook(conv: WireConverter, tp: Any) -> Callable[[Any, Any], Any]:
    """Pick the union member by the JSON type of the value.

    Supported members: at most one attrs class (for objects), at most one Enum (for
    strings, tried before plain ``str``), ``str``, ``int``, ``float``, ``bool``,
    ``datetime``, ``None``. ``SomeEnum | str`` keeps unknown enum values as strings.
    """
    args = _union_args(tp) or ()
    members = [a for a in args if a is not type(None)]
    allows_none = len(members) != len(args)
    classes = [a for a in members if attrs.has(a)]
    enums = [a for a in members if _is_enum(a)]
    if len(classes) > 1 or len(enums) > 1:
        raise TypeError(f"unsupported union {tp!r}: more than one class or enum member")
    cls = classes[0] if classes else None
    enum_cls = enums[0] if enums else None
    has = set(members)
    expected = " or ".join(getattr(m, "__name__", repr(m)) for m in members)

    def structure_union(value: Any, _: Any) -> Any:
        if value is None and allows_none:
            return None
        if cls is not None and isinstance(value, Mapping):
            return conv.structure(value, cls)
        if isinstance(value, str):
            if enum_cls is not None:
                try:
                    return enum_cls(value)
                except ValueError:
                    if str not in has:
                        raise ValueError(f"unknown {enum_cls.__name__} value {value!r}") from None
            if str in has:
                return value
            if datetime in has:
                return parse_timestamp(value)
        elif isinstance(value, bool):
            if bool in has:
                return value
        elif isinstance(value, (int, float)):
            if isinstance(value, int) and int in has:
                return value
            if float in has:
                return float(value)
            if datetime in has:
                return parse_timestamp(value)
            if str in has and not conv.strict:
                return str(value)
        raise TypeError(f"expected {expected}, got {_json_type(value)}")

    return structure_union


# --------------------------------------------------------------------------- attrs classes


def _attrs_structure_hook(conv: WireConverter, cls: type) -> Callable[[Any, Any], Any]:
    fields = attrs.fields(cls)
    overrides: dict[str, Any] = {}
    has_raw = False
    for a in fields:
        if a.name == "raw":
            has_raw = True
            overrides["raw"] = override(omit=True)
            continue
        wire = conv.wire_name(cls, a.name)
        if wire != a.name:
            overrides[a.name] = override(rename=wire)
    fn: Callable[[Any, Any], Any] = make_dict_structure_fn(
        cls, conv, _cattrs_forbid_extra_keys=conv.strict, **overrides
    )
    alias_map = conv.aliases_for(cls)
    name = cls.__name__

    def structure_model(data: Any, _: Any) -> Any:
        if not isinstance(data, Mapping):
            raise TypeError(f"expected an object for {name}, got {_json_type(data)}")
        src = data
        if alias_map and any(alt in data for alt in alias_map):
            src = dict(data)
            for alt, primary in alias_map.items():
                if alt in src:
                    alt_value = src.pop(alt)
                    src.setdefault(primary, alt_value)
        obj = fn(src, cls)
        if has_raw:
            # The model is frozen; raw is filled once, right after construction (the way
            # attrs documents for frozen classes).
            object.__setattr__(obj, "raw", data)
        return obj

    return structure_model


def _attrs_unstructure_hook(conv: WireConverter, cls: type) -> Callable[[Any], dict[str, Any]]:
    overrides: dict[str, Any] = {}
    for a in attrs.fields(cls):
        if a.name == "raw":
            overrides["raw"] = override(omit=True)
            continue
        wire = conv.wire_name(cls, a.name)
        if wire != a.name:
            overrides[a.name] = override(rename=wire)
    fn: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, conv, **overrides)

    def unstructure_model(obj: Any) -> dict[str, Any]:
        return {k: v for k, v in fn(obj).items() if v is not None}

    return unstructure_model


# --------------------------------------------------------------------------- entry points


def unstructure(converter: cattrs.Converter, obj: Any) -> Any:
    """Write ``obj`` as plain JSON-ready data (``None`` fields and ``raw`` dropped)."""
    return converter.unstructure(obj)


def structure(
    converter: cattrs.Converter, data: Any, cls: type[T] | Any, *, what: str, path: str = "$"
) -> Any:
    """Read ``data`` as ``cls``; any failure becomes :class:`aiocompute.ProtocolError`.

    The message reads ``could not read {what}: {path}: {reason}``, where ``path`` uses
    wire keys (``$.sessions[0].activity_state``) and the reason names the model class.
    ``path`` is where ``data`` sits in the whole response (``$.result.job``).
    """
    try:
        return converter.structure(data, cls)
    except (BaseValidationError, ForbiddenExtraKeysError) as exc:
        lines = _describe(converter, exc, path, None)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        lines = [f"{path}: {_reason(exc, None)}"]
    shown = lines[:_MAX_ERRORS]
    if len(lines) > _MAX_ERRORS:
        shown.append(f"and {len(lines) - _MAX_ERRORS} more")
    raise ProtocolError(f"could not read {what}: " + "; ".join(shown)) from None


def _describe(
    conv: cattrs.Converter, exc: BaseException, path: str, where: str | None
) -> list[str]:
    """Flatten a cattrs validation error into ``"<path>: <reason>"`` lines (wire keys)."""
    lines: list[str] = []
    if isinstance(exc, IterableValidationError):
        items, rest = exc.group_exceptions()
        for sub, item in items:
            lines += _describe(conv, sub, f"{path}[{item.index!r}]", where)
        for sub in rest:
            lines += _describe(conv, sub, path, where)
        return lines
    if isinstance(exc, ClassValidationError):
        attributes, others = exc.group_exceptions()
        cls_name = getattr(exc.cl, "__name__", repr(exc.cl))
        for sub, attr in attributes:
            key = conv.wire_name(exc.cl, attr.name) if isinstance(conv, WireConverter) else None
            key = key or attr.name
            lines += _describe(conv, sub, f"{path}.{key}", f"{cls_name}.{attr.name}")
        for sub in others:
            lines += _describe(conv, sub, path, cls_name)
        return lines
    return [f"{path}: {_reason(exc, where)}"]


def _reason(exc: BaseException, where: str | None) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        keys = ", ".join(repr(k) for k in sorted(exc.extra_fields))
        return f"unknown key(s) {keys} ({exc.cl.__name__})"
    text = "required key missing" if isinstance(exc, KeyError) else (str(exc) or type(exc).__name__)
    return f"{text} ({where})" if where else text
