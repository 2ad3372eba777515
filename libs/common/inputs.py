"""What every request may carry as text: one rule for every body, query and path.

Text fields refuse control characters (C0, DEL, C1) and lone surrogates, with a 422 naming
the field: a NUL cannot be stored by PostgreSQL, and the others have no place in a name, a
code or a reference. Multi-line free text (a reason, a note, a justification) may carry
tab, line feed and carriage return, and nothing else of the kind.

`Input` is the base of every request body model: its rule covers every string of every
field, nested lists and dicts included, without a word in the field's declaration; a field
marked `MultiLine` gets the multi-line rule. Its JSON schema says the same with a `pattern`,
so that the published OpenAPI document and the server agree. Query and path parameters are
checked by `libs.common.app.RequestContextMiddleware` with `control_character_in`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from libs.common import places

# Never in any text: C0 controls, DEL, C1 controls, UTF-16 surrogates (not characters).
_SINGLE_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# Multi-line free text may also hold tab, line feed and carriage return.
_MULTI_LINE_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")

# The same rules as JSON Schema patterns (ECMA 262 and Python `re` read them alike). Text
# is stripped of surrounding white space before its length is checked, so text that must
# not be empty must hold something other than white space: the `_FILLED` forms.
_ANY = r"[^\x00-\x1f\x7f-\x9f]"
_ANY_MULTI = r"[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
SINGLE_LINE_PATTERN = rf"^{_ANY}*$"
MULTI_LINE_PATTERN = rf"^{_ANY_MULTI}*$"
SINGLE_LINE_FILLED = rf"^{_ANY}*[^\s\x00-\x1f\x7f-\x9f]{_ANY}*$"
MULTI_LINE_FILLED = rf"^{_ANY_MULTI}*[^\s\x00-\x1f\x7f-\x9f]{_ANY_MULTI}*$"

CONTROL_MESSAGE = "control characters are not allowed"
MULTI_LINE_MESSAGE = "control characters other than tab and line breaks are not allowed"


class _MultiLine:
    """Marks a text field (in `Annotated`) as multi-line free text."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        if schema.get("type") == "string":
            filled = schema.get("minLength", 0) > 0
            schema.setdefault("pattern", MULTI_LINE_FILLED if filled else MULTI_LINE_PATTERN)
        return schema

    def __repr__(self) -> str:
        return "MultiLine"


MULTI_LINE = _MultiLine()
MultiLine = Annotated[str, MULTI_LINE]


def control_character_in(value: str, *, multi_line: bool = False) -> bool:
    """Whether `value` holds a character no text field accepts."""
    return (_MULTI_LINE_BAD if multi_line else _SINGLE_LINE_BAD).search(value) is not None


def _holds_bad_text(value: Any, bad: re.Pattern[str], *, mappings: bool) -> bool:
    """Whether a field's input holds bad text; `mappings` False leaves objects to the
    nested model they are input for (it applies its own rule, field by field)."""
    if isinstance(value, str):
        return bad.search(value) is not None
    if isinstance(value, Mapping):
        return mappings and any(
            _holds_bad_text(k, bad, mappings=True) or _holds_bad_text(v, bad, mappings=True)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_holds_bad_text(v, bad, mappings=mappings) for v in value)
    return False


def _marked_multi_line(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        return any(e is MULTI_LINE for e in extras) or _marked_multi_line(base)
    return any(_marked_multi_line(a) for a in get_args(annotation))


def _scalar(annotation: Any) -> str | None:
    """'bool' or 'number' for a field of that JSON type (optional or not), else None."""
    if get_origin(annotation) is Annotated:
        return _scalar(get_args(annotation)[0])
    if annotation is bool:
        return "bool"
    if annotation in (int, float):
        return "number"
    kinds = {_scalar(a) for a in get_args(annotation) if a is not type(None)}
    return kinds.pop() if len(kinds) == 1 and get_origin(annotation) is not Literal else None


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(a) for a in get_args(annotation))


def text_patterns(schema: Any) -> None:
    """Give every plain string of a schema (not a `$ref`) the single-line pattern."""
    if not isinstance(schema, dict) or "$ref" in schema:
        return
    if schema.get("type") == "string" and not {"pattern", "enum", "const", "format"} & set(schema):
        schema["pattern"] = (
            SINGLE_LINE_FILLED if schema.get("minLength", 0) > 0 else SINGLE_LINE_PATTERN
        )
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or ():
            text_patterns(sub)
    for key in ("items", "additionalProperties"):
        text_patterns(schema.get(key))
    if schema.get("type") == "object" and schema.get("additionalProperties") not in (None, False):
        schema.setdefault("propertyNames", {"pattern": SINGLE_LINE_PATTERN})


def _model_schema(schema: dict[str, Any]) -> None:
    for prop in (schema.get("properties") or {}).values():
        text_patterns(prop)


class Input(BaseModel):
    """Base of request bodies: unknown fields refused, text stripped, no control characters."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra=_model_schema
    )

    # Fields declared `MultiLine` (anywhere in their type), and fields whose objects are
    # nested models, filled in for each subclass.
    multi_line_fields: ClassVar[frozenset[str]] = frozenset()
    model_fields_: ClassVar[frozenset[str]] = frozenset()
    # Booleans and numbers as their JSON types only: no "true", "1" or 1 for a boolean, no
    # "5" or true for a number (what the published schema says).
    scalar_fields: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls.multi_line_fields = frozenset(
            name
            for name, field in cls.model_fields.items()
            if _marked_multi_line(field.annotation) or any(m is MULTI_LINE for m in field.metadata)
        )
        cls.model_fields_ = frozenset(
            name for name, field in cls.model_fields.items() if _holds_model(field.annotation)
        )
        cls.scalar_fields = {
            name: kind
            for name, field in cls.model_fields.items()
            if (kind := _scalar(field.annotation)) is not None
        }

    # Before any other rule, so that stripping cannot hide a control character at an end,
    # and lax parsing cannot turn "true" into a boolean.
    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        kind = cls.scalar_fields.get(info.field_name or "")
        if kind == "bool" and value is not None and not isinstance(value, bool):
            raise PydanticCustomError("bool_type", "Input should be true or false")
        if kind == "number" and isinstance(value, str | bool):
            raise PydanticCustomError("number_type", "Input should be a number")
        multi = info.field_name in cls.multi_line_fields
        bad = _MULTI_LINE_BAD if multi else _SINGLE_LINE_BAD
        if _holds_bad_text(value, bad, mappings=info.field_name not in cls.model_fields_):
            raise PydanticCustomError(
                "control_character", MULTI_LINE_MESSAGE if multi else CONTROL_MESSAGE
            )
        return value


def check_merge_patch(patch: BaseModel, not_nullable: Iterable[str]) -> None:
    """The rules of every JSON merge patch body, for its `model_validator`: a field it may
    not clear is not null, and it changes something."""
    nulled = [f for f in not_nullable if f in patch.model_fields_set and getattr(patch, f) is None]
    if nulled:
        raise ValueError(f"cannot be null: {', '.join(nulled)}")
    if not patch.model_fields_set:
        raise ValueError("the patch changes nothing")


# ---------------------------------------------------------------- gazetteer codes and enums

# Gazetteer codes by level (their length), and KH for the whole country.
PROVINCE_PATTERN = r"^[0-9]{2}$"
DISTRICT_PATTERN = r"^[0-9]{4}$"
COMMUNE_PATTERN = r"^[0-9]{6}$"
VILLAGE_PATTERN = r"^[0-9]{8}$"
# A fund's place: a province, district or commune.
FUND_PLACE_PATTERN = r"^[0-9]{2}(?:[0-9]{2}){0,2}$"
# Where indicators are counted: KH, a province, district or commune.
COUNTED_PLACE_PATTERN = r"^KH$|^[0-9]{2}([0-9]{2}){0,2}$"
# Any place: KH or a code of any level.
PLACE_PATTERN = r"^KH$|^[0-9]{2}([0-9]{2}){0,3}$"

# A code of one level, by its pattern only (`PlaceCode` also asks the gazetteer).
CommuneCode = Annotated[str, StringConstraints(pattern=COMMUNE_PATTERN)]
VillageCode = Annotated[str, StringConstraints(pattern=VILLAGE_PATTERN)]


def _in_gazetteer(code: str) -> str:
    if not places.exists(code):
        raise PydanticCustomError("gazetteer", "not a place in the gazetteer (nor KH)")
    return code


# KH or a code of the gazetteer, of any level.
PlaceCode = Annotated[str, StringConstraints(pattern=PLACE_PATTERN), AfterValidator(_in_gazetteer)]


def one_of(values: Iterable[str]) -> Any:
    """A string type that is one of `values` (an enum in the schema), for lists that live
    in a domain module as data: `Scope = one_of(SCOPES)`."""
    return Literal[tuple(sorted(values))]
