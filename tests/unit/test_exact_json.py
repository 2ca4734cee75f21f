"""JSON read and written with every number exact: what orjson reads exactly is read as orjson reads it; a number
a double or a 64-bit integer cannot hold becomes a Decimal and is written back digit for digit."""

import json
from decimal import Decimal

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl_assets.transform import exact_json

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_what_orjson_reads_exactly_is_read_as_orjson_reads_it(value):
    text = orjson.dumps(value)
    read = exact_json.loads(text)
    assert read == orjson.loads(text)
    assert exact_json.dumps(read) == text


@given(st.integers(min_value=2**64, max_value=10**300), st.sampled_from([1, -1]))
def test_an_integer_past_64_bits_keeps_its_digits(magnitude, sign):
    number = sign * magnitude
    text = f'{{"n": {number}}}'
    read = exact_json.loads(text)
    assert read == {"n": Decimal(number)}
    assert exact_json.dumps(read) == text.replace(" ", "").encode()


@pytest.mark.parametrize(
    "number", ["0.12345678901234567890123", "12345678.123456789", "-98765432109876543.5", "1.0000000000000001"]
)
def test_a_decimal_past_a_doubles_precision_keeps_its_digits(number):
    read = exact_json.loads(f"[{number}, 1.5, 0.30000000000000004]")
    assert read == [Decimal(number), 1.5, 0.30000000000000004]
    assert [type(item) for item in read] == [Decimal, float, float]
    assert json.loads(exact_json.dumps(read), parse_float=Decimal)[0] == Decimal(number)


def test_sorted_keys_and_what_orjson_refuses_is_refused_alike():
    assert exact_json.dumps({"b": Decimal("1E+400"), "a": 1}, sort_keys=True) == b'{"a":1,"b":1E+400}'
    for refused in ('{"n": NaN, "long": 12345678901234567890}', '["\\ud800", 12345678901234567890]'):
        with pytest.raises(orjson.JSONDecodeError):
            exact_json.loads(refused)
    with pytest.raises(TypeError):
        exact_json.dumps({"n": Decimal("NaN")})
