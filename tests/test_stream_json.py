"""The per-token JSON shortcut gives json.loads' answers and errors, whatever the text."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bedrock_chat._streaming import _loads_object

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _outcome(parse: Any, text: str) -> tuple[str, Any]:
    try:
        return "value", parse(text)
    except ValueError as exc:
        return "error", str(exc)


@given(JSON_VALUES, st.sampled_from(["", " ", "\n", " \t"]), st.sampled_from(["", " ", "\n", "x", "}", "{}"]))
def test_a_value_with_anything_around_it_reads_as_json_loads_reads_it(value: Any, before: str, after: str) -> None:
    text = before + json.dumps(value, separators=(",", ":")) + after
    assert _outcome(_loads_object, text) == _outcome(json.loads, text)


@given(st.text(alphabet='{}[]":,0123456789.eE+-tfrueanlsNIy \\x', max_size=30))
def test_any_text_reads_or_fails_as_json_loads(text: str) -> None:
    ours, theirs = _outcome(_loads_object, text), _outcome(json.loads, text)
    if ours[0] == "value" and isinstance(ours[1], float) and math.isnan(ours[1]):
        assert theirs[0] == "value"
        assert math.isnan(theirs[1])
    else:
        assert ours == theirs
