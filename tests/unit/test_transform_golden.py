"""The transform chain gives, byte for byte, what the golden fixture says for every record of its corpus.

The fixture was written by the chain as it was (``tests/unit/transform_corpus.py`` says what it holds and how to
rewrite it when ``TRANSFORM_VERSION`` changes); a faster implementation must leave every output as it was.
"""

from __future__ import annotations

import pytest

from etl_assets.transform import TRANSFORM_VERSION, exact_json
from tests.unit.transform_corpus import POLICIES, digest, outcome, read_fixture

VERSION, CASES = read_fixture()


def test_the_fixture_pins_this_transform_version():
    assert VERSION == TRANSFORM_VERSION, "the output changed on purpose: rewrite the fixture (see transform_corpus)"


def test_the_corpus_holds_accepted_events_of_every_kind_and_rejections():
    events = [part for case in CASES for part in case["outcomes"]["default"] if part.startswith("NormalizedEvent(")]
    rejections = [case for case in CASES if "rejected" in case["outcomes"]["default"][-1]]
    assert len(events) > 1000 and len(rejections) > 500
    for event_type in ("page_view", "purchase", "custom", "identify", "alias", "group", "order_refunded"):
        assert any(f"event_type='{event_type}'" in event for event in events), event_type
    assert any("lines (OrderLine(" in part for case in CASES for part in case["outcomes"]["default"])
    assert any("no key" in case["outcomes"] for case in CASES), "no record holds PII"


@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_record_transforms_as_the_fixture_says(policy: str):
    differences = []
    for number, case in enumerate(CASES, start=1):
        expected = case["outcomes"].get(policy, case["outcomes"]["default"])
        found = outcome(exact_json.loads(case["record"]), POLICIES[policy])
        if isinstance(expected, str):
            found_text: list[str] | str = digest("\n".join(found))
        else:
            found_text = found
        if found_text != expected:
            differences.append((number, case["record"], expected, found))
    shown = "\n\n".join(
        f"record {number}: {record}\nexpected: {expected}\nfound:    {found}"
        for number, record, expected, found in differences[:3]
    )
    assert not differences, f"{len(differences)} of {len(CASES)} records differ under {policy!r}:\n{shown}"
