"""What an event says about who sent it (transform/identity.py), as a pure function of the record."""

from datetime import UTC, datetime

import pytest

from etl_assets.transform.identity import NO_FACTS, IdentityFacts, identity_facts
from etl_assets.transform.normalize import AcceptedTimes, RecordRejected, normalize
from etl_assets.transform.pii import PiiPolicy, pseudonymize, pseudonymize_payload

ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
KEY = b"unit-test-key"


def facts(**record) -> IdentityFacts:
    payload = {"messageId": "m1", "timestamp": "2025-08-01T10:00:00Z", **record}
    return identity_facts(normalize(pseudonymize_payload(payload, PiiPolicy(key=KEY)), ACCEPTED))


def test_an_event_with_both_ids_links_the_anonymous_id_to_the_user():
    assert facts(type="track", event="Product Viewed", anonymousId="a1", userId="u1") == IdentityFacts(
        ("a1",), None, None
    )


@pytest.mark.parametrize(
    "ids", [{"anonymousId": "a1"}, {"userId": "u1"}, {"anonymousId": "u1", "userId": "u1"}], ids=str
)
def test_an_event_with_one_id_or_the_same_id_twice_links_nothing(ids: dict):
    assert facts(type="page", **ids) is NO_FACTS


def test_an_identify_links_like_any_event_and_carries_its_traits_pseudonymized():
    identified = facts(type="identify", userId="u1", anonymousId="a1", traits={"email": "Ann@Example.com", "age": 40})
    assert identified == IdentityFacts(("a1",), None, {"email": pseudonymize("Ann@Example.com", KEY), "age": 40})


def test_an_identify_without_traits_reads_context_traits_or_none():
    assert facts(type="identify", userId="u1", context={"traits": {"plan": "pro"}}).traits == {"plan": "pro"}
    assert facts(type="identify", userId="u1").traits == {}


def test_an_alias_links_its_previous_id_and_its_anonymous_id_in_canonical_form():
    previous = "0E4D1C9A-55F1-4B4A-9D47-6C7C1B0F2A11"
    aliased = facts(type="alias", userId="u1", previousId=previous, anonymousId="a1")
    assert aliased.linked_ids == (previous.lower(), "a1")


def test_a_group_call_names_its_group_and_the_group_traits():
    assert facts(type="group", userId="u1", groupId=42, traits={"name": "Acme"}) == IdentityFacts(
        (), "42", {"name": "Acme"}
    )


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"type": "identify", "userId": "u1", "traits": "vip"}, "traits must be an object, not str"),
        ({"type": "alias", "userId": "u1", "previousId": {"id": 1}}, "previousId"),
        ({"type": "group", "userId": "u1", "groupId": True}, "groupId"),
    ],
)
def test_unfit_identity_fields_reject_the_record_with_the_reason(record: dict, reason: str):
    with pytest.raises(RecordRejected, match=reason):
        facts(**record)
