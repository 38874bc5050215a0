"""Field types shared by the protocol models: strict where upstream is strict.

The models validate with `strict=True`, as upstream does: `"true"` or `1` is not a boolean,
`true` or `"5"` is not an integer, `"0.5"` is not a number (each answered `invalid_type`).
One leniency is kept: an integer field takes a float with no fractional part (`1.0`),
which Python and JavaScript clients produce from arithmetic on milliseconds.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

from .json_limits import JsonLimitError, check

#: Nesting allowed inside one client-data field (tool parameters, tracing metadata, ...).
MAX_VALUE_DEPTH = 32


def _integer(value: Any) -> Any:
    if isinstance(value, float) and not isinstance(value, bool) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: An integer (JSON integer, or a float equal to one); never a boolean or a string.
Int = Annotated[int, BeforeValidator(_integer), Field(strict=False)]


def _json_value(value: Any) -> Any:
    try:
        check(value, max_depth=MAX_VALUE_DEPTH)
    except JsonLimitError as err:
        raise PydanticCustomError("json_value", "{reason}", {"reason": err.reason}) from None
    return value


#: Client data the server keeps and echoes (metadata, schemas): always JSON that encodes again.
JsonValue = Annotated[Any, AfterValidator(_json_value)]
