"""Tool-call arguments checked against the JSON Schema Home Assistant's tools convert to."""

from __future__ import annotations

import pytest

from hearth.wire.arguments import check_arguments

# HassTurnOn / HassLightSet as voluptuous_openapi converts them (HA 2025.4.4).
TURN_ON = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "area": {"type": "string"},
        "domain": {"type": "array", "items": {"type": "string"}},
        "device_class": {"type": "array", "items": {"type": "string", "enum": ["tv", "garage", "window"]}},
    },
    "required": [],
}
LIGHT_SET = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100},
        "temperature": {"type": "integer", "minimum": 0},
    },
    "required": ["name"],
}


@pytest.mark.parametrize(
    ("schema", "arguments"),
    [
        (TURN_ON, {}),
        (TURN_ON, {"name": "Kitchen light", "domain": ["light"]}),
        (TURN_ON, {"device_class": ["garage"]}),
        (LIGHT_SET, {"name": "Lamp", "brightness": 50}),
        (LIGHT_SET, {"name": "Lamp", "brightness": 50.0}),
        ({"type": "object", "properties": {}, "additionalProperties": True}, {"anything": 1}),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 3),
        (None, {}),
    ],
)
def test_valid_arguments(schema, arguments):
    assert check_arguments(schema, arguments) == []


@pytest.mark.parametrize(
    ("schema", "arguments", "needle"),
    [
        (TURN_ON, {"name": 5}, "'name' must be a string"),
        (TURN_ON, {"nmae": "Kitchen"}, "'nmae' is not a known argument (known: area, device_class, domain, name)"),
        (TURN_ON, {"domain": "light"}, "'domain' must be a list"),
        (TURN_ON, {"device_class": ["toaster"]}, "'device_class[0]' must be one of 'tv', 'garage', 'window'"),
        (TURN_ON, [], "the arguments must be an object"),
        (LIGHT_SET, {}, "'name' is required"),
        (LIGHT_SET, {"name": "Lamp", "brightness": 150}, "'brightness' must be at most 100"),
        (LIGHT_SET, {"name": "Lamp", "brightness": -1}, "'brightness' must be at least 0"),
        (LIGHT_SET, {"name": "Lamp", "brightness": True}, "'brightness' must be an integer"),
        (LIGHT_SET, {"name": "Lamp", "brightness": 5.5}, "'brightness' must be an integer"),
        ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, [], "does not match any allowed form"),
        ({"type": "object", "properties": {"x": False}}, {"x": 1}, "'x' is not allowed"),
        ({"type": "string", "maxLength": 2}, "abc", "at most 2 characters"),
        ({"type": "array", "maxItems": 1}, [1, 2], "at most 1 items"),
    ],
)
def test_invalid_arguments_are_explained(schema, arguments, needle):
    problems = check_arguments(schema, arguments)
    assert any(needle in problem for problem in problems), problems
