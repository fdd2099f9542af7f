"""Client-side validation rules and wire serialisation of form and query values."""

from __future__ import annotations

import uuid

import pytest

from adcreative_async import InvalidRequestError, RenderKind
from adcreative_async._fields import FieldKind, FieldSpec, canonical_guid, utf16_length, validate, wire_text
from adcreative_async._models import AD_CREATIVE_RENDER_KINDS
from adcreative_async.resources.creatives import EDIT_FIELDS, GENERATE_FIELDS

GUID = "2581c740-8e9d-4d63-96bc-5665bb9a646b"

TEXT = FieldSpec("mainHeadline", "main_headline", FieldKind.TEXT, required=True, max_length=255)
COLOUR = FieldSpec("color1Hex", "color1_hex", FieldKind.COLOUR, required=True)
KIND = FieldSpec(
    "renderKind", "render_kind", FieldKind.CHOICE, required=True, choices=AD_CREATIVE_RENDER_KINDS
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "true"),
        (False, "false"),
        (uuid.UUID(GUID), GUID),
        (RenderKind.SOCIAL, "31"),
        (31, "31"),
        (0.5, "0.5"),
        (2.0, "2"),
        ("text", "text"),
    ],
)
def test_values_serialise_as_the_server_expects(value: object, expected: str) -> None:
    assert wire_text(value) == expected


@pytest.mark.parametrize(
    "value",
    [GUID, GUID.upper(), f"{{{GUID}}}", f"urn:uuid:{GUID}", GUID.replace("-", ""), uuid.UUID(GUID)],
)
def test_guids_are_canonicalised(value: object) -> None:
    assert canonical_guid(value, "user_id") == GUID


@pytest.mark.parametrize("value", ["e6c59f37-a794-234f-56yu-c9ef79dc042c", "", "taskId1", 12, None])
def test_invalid_guids_name_the_parameter(value: object) -> None:
    # the first value is the seed's own example task id, which the server rejects
    with pytest.raises(InvalidRequestError, match=r"^task_id \(taskId\): must be a GUID") as info:
        canonical_guid(value, "task_id", "taskId")
    assert info.value.field == "task_id"


@pytest.mark.parametrize(("text", "units"), [("abc", 3), ("é", 1), ("😀", 2), ("a😀b", 4), ("日本", 2)])
def test_length_counts_utf16_code_units(text: str, units: int) -> None:
    assert utf16_length(text) == units


def test_max_length_counts_like_dotnet() -> None:
    assert validate([TEXT], {"main_headline": "x" * 255}) == {"mainHeadline": "x" * 255}
    with pytest.raises(InvalidRequestError, match=r"main_headline \(mainHeadline\): must be at most 255"):
        validate([TEXT], {"main_headline": "😀" * 128})  # 128 characters, 256 UTF-16 units


@pytest.mark.parametrize("value", [None, "", "   "])
def test_required_fields_must_be_present_and_not_blank(value: object) -> None:
    with pytest.raises(InvalidRequestError, match=r"main_headline \(mainHeadline\): is required"):
        validate([TEXT], {"main_headline": value})


@pytest.mark.parametrize("value", ["#FFFFFF", "#fc2c2c", "#abc"])
def test_hex_colours_accepted(value: str) -> None:
    assert validate([COLOUR], {"color1_hex": value}) == {"color1Hex": value}


@pytest.mark.parametrize("value", ["FFFFFF", "#GGGGGG", "red", "#12345", "#1234567", "#FFFFFF "])
def test_bad_hex_colours_refused(value: str) -> None:
    with pytest.raises(InvalidRequestError, match="must be a hex colour"):
        validate([COLOUR], {"color1_hex": value})


def test_render_kind_accepts_only_the_listed_values() -> None:
    assert validate([KIND], {"render_kind": RenderKind.SOCIAL}) == {"renderKind": 31}
    for value in (3, 1024, RenderKind.FULL_HD, RenderKind.POST | RenderKind.MEDIUM_BANNER):
        with pytest.raises(InvalidRequestError, match=r"render_kind \(renderKind\): must be one of 0, 1, 2"):
            validate([KIND], {"render_kind": value})


@pytest.mark.parametrize("value", ["1", 1.0, True])
def test_choice_must_be_an_integer(value: object) -> None:
    with pytest.raises(InvalidRequestError, match="must be an integer"):
        validate([KIND], {"render_kind": value})


def test_relaxed_mode_skips_value_rules_but_not_presence_or_guids() -> None:
    specs = [TEXT, COLOUR, KIND, FieldSpec("userId", "user_id", FieldKind.GUID, required=True)]
    values = {"main_headline": "x" * 300, "color1_hex": "red", "render_kind": 4096, "user_id": GUID}
    assert validate(specs, values, strict=False) == {
        "mainHeadline": "x" * 300,
        "color1Hex": "red",
        "renderKind": 4096,
        "userId": GUID,
    }
    with pytest.raises(InvalidRequestError, match="is required"):
        validate(specs, {**values, "main_headline": ""}, strict=False)
    with pytest.raises(InvalidRequestError, match="must be a GUID"):
        validate(specs, {**values, "user_id": "nope"}, strict=False)


def test_guid_lists_are_canonical_deduplicated_and_non_empty() -> None:
    spec = FieldSpec("taskIds", "task_ids", FieldKind.GUID_LIST, required=True)
    other = str(uuid.uuid4())
    assert validate([spec], {"task_ids": [GUID, GUID.upper(), other]}) == {"taskIds": [GUID, other]}
    with pytest.raises(InvalidRequestError, match="at least one GUID"):
        validate([spec], {"task_ids": []})
    with pytest.raises(InvalidRequestError, match="must be a list of GUIDs"):
        validate([spec], {"task_ids": 5})


def test_unset_optional_fields_are_omitted() -> None:
    optional = FieldSpec("color3Hex", "color3_hex", FieldKind.COLOUR)
    assert validate([optional], {"color3_hex": None}) == {}


def test_field_tables_use_the_seed_wire_names() -> None:
    assert [f.wire for f in GENERATE_FIELDS] == [
        "actionText",
        "applicationId",
        "backgroundImage",
        "brandImage",
        "color1Hex",
        "color2Hex",
        "mainHeadline",
        "punchline",
        "renderKind",
        "renderType",
        "userId",
        "description",
        "buttonIconClass",
        "fontIdentifier",
        "color3Hex",
    ]
    required = {f.wire for f in EDIT_FIELDS if f.required}
    assert required == {"applicationId", "userId", "taskIds"}
    limits = {f.wire: f.max_length for f in GENERATE_FIELDS if f.max_length}
    assert limits == {"actionText": 100, "mainHeadline": 255, "punchline": 255, "description": 1000}
