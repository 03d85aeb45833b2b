"""The API-agnostic converter factory: naming, raw, lenient/strict, unions, timestamps."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from attrs import field, frozen
from hypothesis import given
from hypothesis import strategies as st

from aiocompute import ProtocolError
from aiocompute._core.serde import (
    format_timestamp,
    make_converter,
    parse_timestamp,
    structure,
    to_camel,
    unstructure,
)

UTC = timezone.utc


class Color(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


@frozen
class Box:
    image: str
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Thing:
    thing_id: str
    color: Color | str | None = None
    box: Box | str | None = None
    seen_at: datetime | None = None
    tags: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    by_name: Mapping[str, Box] = field(factory=dict)
    count: int | None = None
    ratio: float | None = None
    enabled: bool | None = None
    max_value: str | None = None
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class SubThing(Thing):
    """Inherits Thing's naming and renames."""


@frozen
class OnlyEnum:
    color: Color | None = None


def conv(strict: bool = False, **kwargs: Any) -> Any:
    return make_converter(
        naming="snake",
        strict=strict,
        class_naming={Thing: "camel"},
        aliases={Thing: {"max_value": ("max_value", "maxVal")}},
        **kwargs,
    )


def read(data: Any, cls: Any = Thing, *, strict: bool = False) -> Any:
    return structure(conv(strict), data, cls, what="thing")


# --------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("name", "camel"),
    [
        ("working_directory", "workingDirectory"),
        ("is_super_admin", "isSuperAdmin"),
        ("id", "id"),
        ("exit_code", "exitCode"),
    ],
)
def test_to_camel(name: str, camel: str) -> None:
    assert to_camel(name) == camel


def test_converter_wide_camel_naming() -> None:
    c = make_converter(naming="camel")
    assert c.unstructure(Box("x")) == {"image": "x"}
    assert structure(c, {"thingId": "a", "seenAt": 0}, Thing, what="t").thing_id == "a"
    assert c.wire_name(Thing, "seen_at") == "seenAt"


def test_class_naming_overrides_converter_and_is_inherited() -> None:
    c = conv()
    assert c.wire_name(Thing, "thing_id") == "thingId"
    assert c.wire_name(SubThing, "thing_id") == "thingId"
    assert c.wire_name(Box, "image") == "image"
    sub = structure(c, {"thingId": "s"}, SubThing, what="sub")
    assert type(sub) is SubThing
    assert sub.thing_id == "s"


def test_renames_win_over_naming_and_are_inherited() -> None:
    c = make_converter(
        naming="snake", class_naming={Thing: "camel"}, renames={Thing: {"thing_id": "ID"}}
    )
    assert c.wire_name(SubThing, "thing_id") == "ID"
    assert c.wire_name(SubThing, "seen_at") == "seenAt"
    t = structure(c, {"ID": "x"}, SubThing, what="t")
    assert t.thing_id == "x"
    assert c.unstructure(t) == {"ID": "x", "tags": [], "boxes": [], "byName": {}}


def test_aliases_are_read_but_never_written() -> None:
    for key in ("maxValue", "max_value", "maxVal"):
        t = read({"thingId": "a", key: "8"}, strict=True)
        assert t.max_value == "8"
        assert conv().unstructure(t)["maxValue"] == "8"
    # The primary key wins when both are present.
    assert read({"thingId": "a", "maxValue": "1", "max_value": "2"}).max_value == "1"


# --------------------------------------------------------------------------- raw


def test_raw_holds_the_whole_object_and_is_not_compared_or_shown() -> None:
    data = {"thingId": "a", "box": {"image": "i", "extra": 1}, "future": [1, 2]}
    t = read(data)
    assert t.raw == data
    assert t.raw["future"] == [1, 2]
    assert isinstance(t.box, Box)
    assert t.box.raw == {"image": "i", "extra": 1}
    assert "future" not in repr(t)
    assert "raw" not in repr(t)
    assert t == Thing("a", box=Box("i"))


def test_raw_is_never_written() -> None:
    t = read({"thingId": "a", "unknown": 1})
    assert "raw" not in conv().unstructure(t)
    assert "unknown" not in conv().unstructure(t)


# --------------------------------------------------------------------------- lenient mode


def test_lenient_missing_optional_fields_take_defaults() -> None:
    t = read({"thingId": "a"})
    assert t == Thing("a")
    assert t.tags == ()
    assert t.by_name == {}


def test_lenient_coerces_what_servers_get_wrong() -> None:
    t = read({"thingId": 7, "count": "12", "ratio": "0.5", "enabled": "false", "tags": None})
    assert t.thing_id == "7"
    assert t.count == 12
    assert t.ratio == 0.5
    assert t.enabled is False
    assert t.tags == ()
    assert read({"thingId": "a", "count": 3.0, "enabled": 1}).count == 3
    assert read({"thingId": "a", "byName": None}).by_name == {}


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"thingId": "a", "enabled": "maybe"}, "$.enabled: expected a boolean"),
        ({"thingId": "a", "count": "many"}, "$.count: expected an integer, got 'many'"),
        ({"thingId": "a", "ratio": "lots"}, "$.ratio: expected a number"),
        ({"thingId": {"x": 1}}, "$.thingId: expected a string, got object"),
        ({"thingId": "a", "tags": "abc"}, "$.tags: expected an array, got string"),
        ({}, "$.thingId: required key missing (Thing.thing_id)"),
    ],
)
def test_lenient_still_rejects_nonsense(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        read(data)
    assert "could not read thing: " in str(info.value)
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- strict mode


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"thingId": "a", "zz": 1}, "$: unknown key(s) 'zz' (Thing)"),
        ({"thingId": 1}, "$.thingId: expected a string, got number (Thing.thing_id)"),
        ({"thingId": "a", "count": True}, "$.count: expected an integer, got boolean"),
        ({"thingId": "a", "count": "12"}, "$.count: expected an integer, got string"),
        ({"thingId": "a", "enabled": "true"}, "$.enabled: expected a boolean, got string"),
        ({"thingId": "a", "ratio": "0.5"}, "$.ratio: expected a number, got string"),
        ({"thingId": "a", "tags": None}, "$.tags: expected an array, got null"),
        ({"thingId": "a", "tags": ["x", 2]}, "$.tags[1]: expected a string, got number"),
        (
            {"thingId": "a", "boxes": [{"image": "i"}, {"image": "j", "q": 0}]},
            "$.boxes[1]: unknown key(s) 'q' (Box)",
        ),
        (
            {"thingId": "a", "byName": {"k": {"image": 5}}},
            "$.byName['k'].image: expected a string, got number (Box.image)",
        ),
        ({"thingId": "a", "box": 5}, "$.box: expected Box or str, got number (Thing.box)"),
        ({"thingId": "a", "seenAt": True}, "$.seenAt: expected a timestamp"),
        (["not", "an", "object"], "$: expected an object for Thing, got array"),
    ],
)
def test_strict_raises_with_wire_path_and_class(data: Any, fragment: str) -> None:
    with pytest.raises(ProtocolError) as info:
        read(data, strict=True)
    message = str(info.value)
    assert message.startswith("could not read thing: ")
    assert fragment in message


def test_strict_reports_every_problem_and_summarises_many() -> None:
    data = {"thingId": 1, "count": "x", "ratio": "y", "enabled": "z", "tags": 3, "b": 1, "c": 2}
    with pytest.raises(ProtocolError) as info:
        read(data, strict=True)
    message = str(info.value)
    assert "$.thingId:" in message
    assert "and 1 more" in message  # 6 problems, 5 shown


def test_same_input_passes_lenient_but_not_strict() -> None:
    data = {"thingId": "a", "newField": {"x": 1}}
    assert read(data).raw["newField"] == {"x": 1}
    with pytest.raises(ProtocolError, match="unknown key"):
        read(data, strict=True)


def test_no_cattrs_error_escapes_structure() -> None:
    with pytest.raises(ProtocolError) as info:
        structure(conv(True), [{"thingId": "a"}, {"thingId": 2}], list[Thing], what="things")
    assert "$[1].thingId" in str(info.value)
    assert info.value.__cause__ is None


def test_path_prefix_is_used() -> None:
    with pytest.raises(ProtocolError, match=r"\$\.result\.job\.thingId"):
        structure(conv(True), {"thingId": 1}, Thing, what="job", path="$.result.job")


# --------------------------------------------------------------------------- unions, enums


@pytest.mark.parametrize("strict", [False, True])
def test_enum_or_str_keeps_unknown_values(strict: bool) -> None:
    known = read({"thingId": "a", "color": "red"}, strict=strict)
    assert known.color is Color.RED
    unknown = read({"thingId": "a", "color": "ultraviolet"}, strict=strict)
    assert unknown.color == "ultraviolet"
    assert not isinstance(unknown.color, Color)


def test_enum_without_str_rejects_unknown_values() -> None:
    assert read({"color": "blue"}, OnlyEnum).color is Color.BLUE
    with pytest.raises(ProtocolError, match=r"\$\.color"):
        read({"color": "ultraviolet"}, OnlyEnum)


def test_class_or_str_union() -> None:
    assert read({"thingId": "a", "box": {"image": "i"}}, strict=True).box == Box("i")
    assert read({"thingId": "a", "box": ""}, strict=True).box == ""
    assert read({"thingId": "a", "box": None}, strict=True).box is None


# --------------------------------------------------------------------------- unstructure


def test_unstructure_drops_none_and_writes_json_types() -> None:
    t = Thing(
        "a",
        color=Color.BLUE,
        box=Box("i"),
        seen_at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        tags=("x",),
    )
    out = unstructure(conv(), t)
    assert out == {
        "thingId": "a",
        "color": "blue",
        "box": {"image": "i"},
        "seenAt": "2024-01-02T03:04:05.000000Z",
        "tags": ["x"],
        "boxes": [],
        "byName": {},
    }
    assert type(out["color"]) is str
    assert type(out["tags"]) is list


def test_structure_unstructure_round_trip_in_strict_mode() -> None:
    t = Thing(
        "a",
        color="new-color",
        box="",
        seen_at=datetime(2024, 1, 2, tzinfo=UTC),
        boxes=(Box("b"),),
        by_name={"k": Box("c")},
        count=3,
        ratio=1.5,
        enabled=False,
        max_value="2",
    )
    assert read(conv().unstructure(t), strict=True) == t


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1721684073175, datetime(2024, 7, 22, 21, 34, 33, 175000, tzinfo=UTC)),
        (1721684073175.5, datetime(2024, 7, 22, 21, 34, 33, 175500, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("2025-07-26T05:30:21.424300", datetime(2025, 7, 26, 5, 30, 21, 424300, tzinfo=UTC)),
        ("2024-10-01T20:49:32.294130Z", datetime(2024, 10, 1, 20, 49, 32, 294130, tzinfo=UTC)),
        ("2025-07-26T05:42:56", datetime(2025, 7, 26, 5, 42, 56, tzinfo=UTC)),
        ("2025-07-26T05:42:56.1Z", datetime(2025, 7, 26, 5, 42, 56, 100000, tzinfo=UTC)),
        ("2025-07-26T05:42:56.123456789Z", datetime(2025, 7, 26, 5, 42, 56, 123456, tzinfo=UTC)),
        ("2025-07-26 05:42", datetime(2025, 7, 26, 5, 42, tzinfo=UTC)),
        ("2025-07-26", datetime(2025, 7, 26, tzinfo=UTC)),
        ("2025-07-26T07:42:56+02:00", datetime(2025, 7, 26, 5, 42, 56, tzinfo=UTC)),
        ("2025-07-26T07:42:56+0200", datetime(2025, 7, 26, 5, 42, 56, tzinfo=UTC)),
        ("2025-07-26T03:42:56-02", datetime(2025, 7, 26, 5, 42, 56, tzinfo=UTC)),
        (datetime(2025, 1, 1), datetime(2025, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_timestamp(value: Any, expected: datetime) -> None:
    parsed = parse_timestamp(value)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (True, TypeError),
        (None, TypeError),
        ([1], TypeError),
        ("yesterday", ValueError),
        ("2025-13-40T00:00:00", ValueError),
        (float("inf"), ValueError),
        (10**20, ValueError),
    ],
)
def test_parse_timestamp_rejects(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_timestamp(value)


def test_epoch_ms_and_iso_give_equal_aware_datetimes() -> None:
    a = read({"thingId": "a", "seenAt": 1721684073175}, strict=True).seen_at
    b = read({"thingId": "a", "seenAt": "2024-07-22T21:34:33.175Z"}, strict=True).seen_at
    c = read({"thingId": "a", "seenAt": "2024-07-22T21:34:33.175000"}, strict=True).seen_at
    assert a == b == c
    assert type(a) is type(b) is type(c) is datetime
    assert a.utcoffset() == b.utcoffset() == c.utcoffset() == timedelta(0)


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2025, 7, 23, tzinfo=UTC)) == "2025-07-23T00:00:00.000000Z"
    assert format_timestamp(datetime(2025, 7, 23)) == "2025-07-23T00:00:00.000000Z"
    plus2 = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2025, 7, 23, 1, tzinfo=plus2)) == "2025-07-22T23:00:00.000000Z"


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-7)), timezone(timedelta(0))]),
    )
)
def test_timestamp_text_round_trip(dt: datetime) -> None:
    assert parse_timestamp(format_timestamp(dt)) == dt


@given(st.integers(min_value=-(10**13), max_value=10**14))
def test_epoch_ms_round_trip(ms: int) -> None:
    dt = parse_timestamp(ms)
    back = (dt - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert back == ms


def test_models_are_plain_attrs() -> None:
    # Wire names live in the converter: the classes themselves know none.
    assert [a.name for a in attrs.fields(Box)] == ["image", "raw"]


# --------------------------------------------------------------------------- typical models
# What the API models hold: optional primitives, enums that keep unknown text, timestamps,
# nested models, arrays and mappings, with factories and keyword-only attributes.


@frozen
class Flat:
    """Every kind of attribute the API models have, with plain and factory defaults."""

    name: str
    color: Color | str | None = None
    seen_at: datetime | None = None
    when: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    count: int | None = None
    ratio: float | None = None
    enabled: bool | None = None
    tags: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    box: Box | None = None
    names: list[str] = attrs.Factory(list)
    extra: Mapping[str, Any] = attrs.Factory(dict)
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class Painted:
    """A required enum: cattrs gives it str's hook, which must still make members."""

    shade: Color
    count: int = 0
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class KeywordOnly:
    first: str | None = None
    second: int = field(default=0, kw_only=True)
    third: str = "x"


def outcome(converter: Any, data: Any, cls: Any) -> tuple[str, Any]:
    try:
        value = structure(converter, data, cls, what="thing")
    except ProtocolError as exc:
        return "error", str(exc)
    return "ok", value


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**16), max_value=10**16)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "red", "blue", "x", "12", "true", "2024-05-01T10:00:00Z", "0.5"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["image", "q"]), inner, max_size=2)
    ),
    max_leaves=6,
)
FLAT_KEYS = [
    "name",
    "color",
    "seen_at",
    "when",
    "count",
    "ratio",
    "enabled",
    "tags",
    "boxes",
    "box",
    "names",
    "extra",
]
THING_KEYS = [
    "thingId",
    "color",
    "box",
    "seenAt",
    "tags",
    "boxes",
    "byName",
    "count",
    "ratio",
    "enabled",
    "maxValue",
    "max_value",
    "maxVal",
]


def check_read(got: tuple[str, Any], data: Any, cls: Any) -> None:
    """A read gives the model (its raw the very object read, at every level) or a
    ProtocolError naming a wire path; never another exception."""
    if got[0] == "error":
        assert got[1].startswith("could not read thing: $")
        return
    check_raw(got[1], data)
    assert type(got[1]) is cls


def check_raw(obj: Any, data: Any) -> None:
    if isinstance(obj, (list, tuple)) and isinstance(data, list):
        for item, value in zip(obj, data, strict=True):
            check_raw(item, value)
    elif attrs.has(type(obj)) and "raw" in attrs.fields_dict(type(obj)):
        assert obj.raw is data


@given(st.dictionaries(st.sampled_from(FLAT_KEYS), JSON_VALUES, max_size=8))
def test_any_input_reads_as_the_model_or_a_protocol_error(data: dict[str, Any]) -> None:
    got = outcome(make_converter(naming="snake"), data, Flat)
    check_read(got, data, Flat)
    # Each element of an array reads as it reads alone; its errors name its index.
    both = outcome(make_converter(naming="snake"), [data, data], list[Flat])
    assert both[0] == got[0]
    if got[0] == "ok":
        assert both[1] == [got[1], got[1]]
    else:
        assert "$[0]" in both[1]


@given(st.dictionaries(st.sampled_from(THING_KEYS), JSON_VALUES, max_size=8))
def test_any_input_with_aliases_and_factories_reads_or_fails_cleanly(
    data: dict[str, Any],
) -> None:
    check_read(outcome(conv(), data, Thing), data, Thing)
    check_read(outcome(conv(), data, SubThing), data, SubThing)


def test_typical_input() -> None:
    data = {
        "name": "n",
        "color": "red",
        "seen_at": 1_700_000_000_123,
        "when": "2024-05-01T10:00:00Z",
        "count": 3,
        "ratio": 2,
        "enabled": True,
        "tags": [],
        "boxes": [{"image": "a"}, {"image": "b", "q": 1}],
        "box": None,
        "names": ["x"],
    }
    flat = read(data, Flat)
    assert flat == Flat(
        name="n",
        color=Color.RED,
        seen_at=datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC),
        when=datetime(2024, 5, 1, 10, tzinfo=UTC),
        count=3,
        ratio=2.0,
        enabled=True,
        boxes=(Box("a"), Box("b")),
        names=["x"],
    )
    assert flat.raw is data
    assert flat.boxes[1].raw == {"image": "b", "q": 1}
    assert isinstance(flat.ratio, float)
    assert type(flat.tags) is tuple
    assert read({"name": "n", "color": "green"}, Flat).color == "green"
    # A nested model gets its own raw; a Mapping[str, Any] is a copy.
    nested = {**data, "box": {"image": "c"}, "extra": {"a": [1], "b": None}}
    got = read(nested, Flat)
    assert got.box == Box("c")
    assert got.box is not None
    assert got.box.raw is nested["box"]
    assert got.extra == {"a": [1], "b": None}
    assert got.extra is not nested["extra"]  # a copy
    assert read({**data, "extra": {1: "a"}}, Flat).extra == {"1": "a"}
    with pytest.raises(ProtocolError, match=r"\$\.box: expected an object for Box, got string"):
        read({**data, "box": "c"}, Flat)
    with pytest.raises(ProtocolError, match=r"\$\.box\.image: required key missing"):
        read({**data, "box": {"q": 1}}, Flat)


def test_errors_name_the_wire_path_and_the_attribute() -> None:
    with pytest.raises(ProtocolError) as info:
        read({"name": "n", "boxes": [{"image": "a"}, {"image": []}], "count": "many"}, Flat)
    message = str(info.value)
    assert "$.boxes[1].image: expected a string, got array (Box.image)" in message
    assert "$.count: expected an integer, got 'many'" in message
    with pytest.raises(ProtocolError, match=r"\$\.name: required key missing \(Flat\.name\)"):
        read({}, Flat)
    with pytest.raises(ProtocolError, match="epoch-ms timestamp out of range"):
        read({"name": "n", "seen_at": 10**20}, Flat)


@given(
    st.fixed_dictionaries(
        {"shade": JSON_VALUES}, optional={"count": JSON_VALUES, "other": JSON_VALUES}
    )
)
def test_a_required_enum_is_a_member_or_an_error(data: dict[str, Any]) -> None:
    got = outcome(make_converter(naming="snake"), data, Painted)
    if got[0] == "ok":
        assert type(got[1].shade) is Color
    else:
        assert "$" in got[1]


def test_a_required_enum_is_an_enum_member() -> None:
    got = read({"shade": "red"}, Painted)
    assert got.shade is Color.RED
    with pytest.raises(ProtocolError, match="unknown Color value 'green'"):
        read({"shade": "green"}, Painted)


def test_keyword_only_attributes_are_passed_by_name() -> None:
    assert read({"first": "a", "second": 2, "third": "c"}, KeywordOnly) == KeywordOnly(
        "a", second=2, third="c"
    )
    assert read({}, KeywordOnly) == KeywordOnly()


def test_a_class_with_its_own_init_gets_omitted_arguments_omitted() -> None:
    @attrs.define(init=False)
    class Custom:
        a: str = "wire default"
        b: int = 0

        def __init__(self, a: str = "own default", b: int = 7) -> None:
            self.a, self.b = a, b

    got = read({"b": "3"}, Custom)
    assert (got.a, got.b) == ("own default", 3)  # as cattrs would: a is not passed at all


def test_hooks_registered_after_make_converter_are_honoured() -> None:
    # Other API packages register hooks on their converter after make_converter: optional
    # attributes of that type must use them, not the primitive shortcut.
    c = make_converter(naming="snake")
    c.register_structure_hook(str, lambda v, _: f"<{v}>")
    got = structure(c, {"name": "n", "color": "zz", "tags": ["t"]}, Flat, what="flat")
    assert got.name == "<n>"
    assert got.tags == ("<t>",)


@frozen
class Node:
    name: str
    children: tuple[Node, ...] = ()
    parent: Node | None = None


def test_recursive_classes() -> None:
    data = {"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}], "parent": {}}
    with pytest.raises(ProtocolError, match=r"\$\.parent\.name: required key missing"):
        structure(conv(), data, Node, what="thing")
    data["parent"] = {"name": "p"}
    got = outcome(conv(), data, Node)
    assert got[0] == "ok"
    assert got[1].children[0].children[0] == Node(name="3")
    assert got[1].parent == Node(name="p")


@attrs.frozen
class _Stamped:
    at: datetime | str | None = None


@pytest.mark.parametrize("strict", [False, True])
def test_timestamp_or_text_fields_keep_unreadable_text(strict: bool) -> None:
    conv = make_converter(naming="snake", strict=strict)
    read = conv.structure({"at": "2025-07-26T05:30:21Z"}, _Stamped).at
    assert read == datetime(2025, 7, 26, 5, 30, 21, tzinfo=timezone.utc)
    assert conv.structure({"at": "example"}, _Stamped).at == "example"
    assert conv.structure({"at": ""}, _Stamped).at is None
    assert conv.structure({"at": None}, _Stamped).at is None
    if strict:
        with pytest.raises(ProtocolError, match="timestamp"):
            structure(conv, {"at": 1721684073175}, _Stamped, what="a stamp")
    else:
        assert conv.structure({"at": 1721684073175}, _Stamped).at == datetime(
            2024, 7, 22, 21, 34, 33, 175000, tzinfo=timezone.utc
        )


# --------------------------------------------------------------------------- text, enums, dicts


class Phase(str, enum.Enum):
    """An enum whose _missing_ matches any case, as ET Engine's JobStatus does."""

    RUN = "run"
    DONE = "done"

    @classmethod
    def _missing_(cls, value: object) -> Phase | None:
        if isinstance(value, str):
            for member in cls:
                if member.value == value.strip().lower():
                    return member
        return None


@frozen
class Record:
    phase: Phase | str | None = None
    at: datetime | str | None = None
    args: Mapping[str, Any] = field(factory=dict)
    extra: dict[str, Any] = field(factory=dict)
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


RECORD_VALUES = (
    JSON_VALUES
    | st.sampled_from(["RUN", "Done", " run ", "DONE", "ruN", "other"])
    | st.integers(min_value=-(10**17), max_value=10**17)
    | st.dictionaries(st.text(max_size=3), JSON_VALUES, max_size=3)
)


@given(st.dictionaries(st.sampled_from(["phase", "at", "args", "extra"]), RECORD_VALUES))
def test_time_text_case_enums_and_dicts(data: dict[str, Any]) -> None:
    got = outcome(make_converter(naming="snake"), data, Record)
    check_read(got, data, Record)
    if got[0] == "ok":
        record = got[1]
        assert record.phase is None or isinstance(record.phase, (Phase, str))
        if isinstance(record.at, datetime):
            assert record.at.tzinfo == UTC
        for name in ("args", "extra"):
            value = getattr(record, name)
            assert type(value) is dict
            assert value is not data.get(name)  # a copy


def test_epoch_times_upper_case_statuses_and_dicts() -> None:
    c = make_converter(naming="snake")
    data = {"phase": "RUN", "at": 1_700_000_000_123, "args": {"a": 1, "b": [2]}, "extra": {}}
    got = structure(c, data, Record, what="record")
    assert got.phase is Phase.RUN
    assert got.at == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert got.args == {"a": 1, "b": [2]}
    assert got.args is not data["args"]
    assert structure(c, {"phase": "rUn"}, Record, what="record").phase is Phase.RUN
    # Unknown text stays text.
    assert structure(c, {"phase": "Paused"}, Record, what="record").phase == "Paused"


def test_mappings_honour_the_converters_hooks() -> None:
    c = make_converter(naming="snake")
    assert structure(c, {"1": 2}, dict[str, Any], what="m") == {"1": 2}
    assert structure(c, {"1": 2}, dict[int, Any], what="m") == {1: 2}  # keys converted
    with pytest.raises(ProtocolError, match="expected an integer"):
        structure(c, {"k": "x"}, dict[str, int], what="m")  # values checked
    # A str hook registered later is honoured for keys.
    c.register_structure_hook(str, lambda v, _: f"<{v}>")
    assert structure(c, {"k": 1}, dict[str, Any], what="m") == {"<k>": 1}


@frozen
class WithFactories:
    name: str
    tags: Mapping[str, Any] = field(factory=dict)
    labels: tuple[str, ...] = ()
    echo: str = field(default=attrs.Factory(lambda self: self.name, takes_self=True))
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@frozen
class WithPlainFactory:
    name: str
    tags: Mapping[str, Any] = field(factory=dict)
    raw: Mapping[str, Any] = field(factory=dict, repr=False, eq=False)


@pytest.mark.parametrize("cls", [WithPlainFactory, WithFactories])
def test_absent_keys_with_factory_defaults_get_a_fresh_value_each(cls: Any) -> None:
    c = conv()
    first, second = c.structure({"name": "a"}, cls), c.structure({"name": "b"}, cls)
    assert first.tags == {}
    assert second.tags == {}
    assert first.tags is not second.tags  # a factory's value, never one shared default
    assert first.raw == {"name": "a"}
    if cls is WithFactories:
        assert (first.echo, second.echo) == ("a", "b")  # takes_self: computed per object
    given_tags = c.structure({"name": "c", "tags": {"k": 1}}, cls)
    assert given_tags.tags == {"k": 1}


def test_a_default_factory_runs_once_per_read() -> None:
    calls: list[int] = []

    def counted() -> dict[str, Any]:
        calls.append(1)
        return {}

    @frozen
    class Counted:
        name: str
        tags: Mapping[str, Any] = field(factory=counted)
        count: int = 0

    c = conv()
    assert c.structure({"name": "a", "count": "3"}, Counted).count == 3
    assert len(calls) == 1
    with pytest.raises(ProtocolError):
        structure(c, {"name": "a", "count": "many"}, Counted, what="counted")
    assert len(calls) == 1  # a read that fails builds nothing


@frozen
class Checked:
    """A validator: it runs on every read."""

    count: int = field(validator=attrs.validators.ge(0))


@frozen
class PostInit:
    name: str
    seen: list[str] = field(factory=list)

    def __attrs_post_init__(self) -> None:
        self.seen.append("post-init")


def test_read_objects_are_the_frozen_class_itself() -> None:
    import copy
    import pickle

    data = {"name": "n", "color": "red", "box": {"image": "a"}, "tags": ["x"], "extra": {"k": 1}}
    got = read(data, Flat)
    assert type(got) is Flat
    assert type(got.box) is Box
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        got.name = "other"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        del got.name  # type: ignore[misc]
    made = Flat(name="n", color=Color.RED, box=Box("a"), tags=("x",), extra={"k": 1}, raw=data)
    assert got == made
    assert hash(Box("a")) == hash(got.box)
    not_raw = attrs.filters.exclude(attrs.fields(Flat).raw, attrs.fields(Box).raw)
    assert attrs.asdict(got, filter=not_raw) == attrs.asdict(made, filter=not_raw)
    assert pickle.loads(pickle.dumps(got)) == got
    assert copy.copy(got) == got
    assert attrs.evolve(got, name="m") == attrs.evolve(made, name="m")


def test_validators_and_post_init_hooks_run() -> None:
    with pytest.raises(ProtocolError, match="count"):
        read({"count": -1}, Checked)  # the validator ran
    assert read({"count": 2}, Checked) == Checked(2)
    assert read({"name": "n"}, PostInit).seen == ["post-init"]
