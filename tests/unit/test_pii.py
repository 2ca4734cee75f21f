"""PII pseudonymization as a pure function: stable, keyed, found at any depth, and nothing else touched."""

import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from etl_assets.settings import ConfigError, Settings, pii_key, printable_value
from etl_assets.transform import exact_json
from etl_assets.transform.normalize import AcceptedTimes, event_key, normalize
from etl_assets.transform.pii import (
    _KEPT,
    PiiKeyMissing,
    PiiPolicy,
    _walker,
    canonical,
    key_matches,
    pseudonymize,
    pseudonymize_payload,
)

KEY = b"unit-test-key-0123456789"
OTHER_KEY = b"another-key-0123456789ab"
POLICY = PiiPolicy(("email", "ip", "phone"), KEY)
ACCEPTED = AcceptedTimes(datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))

RECORD = {
    "id": "e1",
    "type": "page_view",
    "timestamp": "2025-08-01T12:00:00Z",
    "user_id": "u1",
    "email": "ann@example.com",
    "ip": "203.0.113.7",
    "phone_number": "+1 (555) 010-0000",
    "context": {"ip": "198.51.100.1", "library": {"name": "analytics-python", "version": "2.3.1"}},
    "traits": {"email": "Bob@Example.com", "emailVerified": True, "zip": "75001", "name": "Bob"},
    "properties": {"email_address": "carol@example.com", "client_ip": "2001:db8::1", "sku": "p1", "tip": 3},
}


def hidden(value: str) -> str:
    return pseudonymize(value, KEY)


def test_a_pseudonym_is_stable_keyed_and_shaped():
    first = pseudonymize("ann@example.com", KEY)
    assert first == pseudonymize("ann@example.com", KEY)
    assert first.startswith("pii:") and len(first) == 4 + 32
    assert int(first.removeprefix("pii:"), 16) >= 0
    assert pseudonymize("ann@example.com", OTHER_KEY) != first
    assert pseudonymize("bob@example.com", KEY) != first


@pytest.mark.parametrize(
    ("spellings", "kind"),
    [
        (["ann@example.com", " Ann@Example.COM ", "ann%40example.com"], "email"),
        (["2001:db8::1", "2001:DB8:0:0::1", "2001:0db8:0000:0000:0000:0000:0000:0001"], "ipv6"),
        (["10.0.0.1", "::ffff:10.0.0.1", " 10.0.0.1"], "ipv4"),
        (["+1 (555) 010-0000", "+15550100000", "+1.555.010.0000"], "phone"),
    ],
)
def test_spellings_of_one_value_give_one_pseudonym(spellings, kind):
    assert len({canonical(spelling) for spelling in spellings}) == 1, kind
    assert len({hidden(spelling) for spelling in spellings}) == 1


@pytest.mark.parametrize(
    ("key", "matches"),
    [
        ("email", True),
        ("Email", True),
        ("EMAIL", True),
        ("email_address", True),
        ("emailAddress", True),
        ("Email-Address", True),
        ("user_email", True),
        ("userEmail", True),
        ("ip", True),
        ("IP", True),
        ("ip_address", True),
        ("IPAddress", True),
        ("client_ip", True),
        ("phone", True),
        ("phone_number", True),
        ("phoneNumber", True),
        ("mobile_phone", True),
        ("zip", False),
        ("tip", False),
        ("shipping", False),
        ("telephone", False),
        ("emails", False),  # a list of emails is still found by value
        ("ipsum", False),
        ("equip_id", False),
    ],
)
def test_which_keys_name_a_pii_field(key, matches):
    assert key_matches(key, ("email", "ip", "phone")) is matches


def test_every_configured_field_is_pseudonymized_at_any_depth_and_the_rest_is_untouched():
    original = copy.deepcopy(RECORD)
    out = pseudonymize_payload(RECORD, POLICY)
    assert original == RECORD  # the input is not changed
    assert out == {
        "id": "e1",
        "type": "page_view",
        "timestamp": "2025-08-01T12:00:00Z",
        "user_id": "u1",
        "email": hidden("ann@example.com"),
        "ip": hidden("203.0.113.7"),
        "phone_number": hidden("+15550100000"),
        "context": {"ip": hidden("198.51.100.1"), "library": {"name": "analytics-python", "version": "2.3.1"}},
        "traits": {"email": hidden("bob@example.com"), "emailVerified": True, "zip": "75001", "name": "Bob"},
        "properties": {
            "email_address": hidden("carol@example.com"),
            "client_ip": hidden("2001:db8::1"),
            "sku": "p1",
            "tip": 3,
        },
    }


def test_numbers_lists_and_objects_under_a_pii_key_are_pseudonymized_and_nulls_stay():
    out = pseudonymize_payload(
        {
            "phone": 5550100000,
            "emails": ["a@example.com", None],
            "email": {"work": "w@example.com", "verified": True, "home": None},
            "ip": None,
            "phone_type": "  ",
        },
        POLICY,
    )
    assert out == {
        "phone": hidden("5550100000"),
        "emails": [hidden("a@example.com"), None],
        "email": {"work": hidden("w@example.com"), "verified": True, "home": None},
        "ip": None,
        "phone_type": "  ",
    }


def test_an_email_or_ip_under_any_key_is_found_by_value():
    out = pseudonymize_payload(
        {
            "user_id": "Ann@Example.com",
            "page_url": "https://shop.example/confirm?email=ann%40example.com&step=2",
            "note": "write to ann@example.com or bob@example.org",
            "origin": "203.0.113.7",
            "version": "1.2.3",
            "logo": "https://cdn.example/logo.png",
        },
        POLICY,
    )
    assert out["user_id"] == hidden("ann@example.com")
    assert out["page_url"] == f"https://shop.example/confirm?email={hidden('ann@example.com')}&step=2"
    assert out["note"] == f"write to {hidden('ann@example.com')} or {hidden('bob@example.org')}"
    assert out["origin"] == hidden("203.0.113.7")
    assert (out["version"], out["logo"]) == ("1.2.3", "https://cdn.example/logo.png")


def test_value_detection_follows_the_configured_fields():
    only_phone = PiiPolicy(("phone",), KEY)
    record = {"user_id": "ann@example.com", "origin": "203.0.113.7", "phone": "555 0100 000"}
    assert pseudonymize_payload(record, only_phone) == {**record, "phone": hidden("5550100000")}


def test_configured_names_are_matched_in_snake_case():
    policy = PiiPolicy(("lastName", "Email"), KEY)
    assert policy.fields == ("last_name", "email")
    out = pseudonymize_payload({"last_name": "Doe", "customer": {"LastName": "Roe"}, "name": "Ann"}, policy)
    assert out == {"last_name": hidden("Doe"), "customer": {"LastName": hidden("Roe")}, "name": "Ann"}


def test_the_identity_keys_are_never_changed_even_if_configured():
    policy = PiiPolicy(("id", "type", "timestamp", "email"), KEY)
    record = {"id": "ann@example.com", "type": "page_view", "timestamp": "2025-08-01T12:00:00Z", "user_id": "u1"}
    out = pseudonymize_payload(record, policy)
    assert (out["id"], out["type"], out["timestamp"]) == (record["id"], record["type"], record["timestamp"])
    assert out["user_id"] == hidden("u1")  # user_id ends with _id
    assert event_key(out, ACCEPTED) == event_key(record, ACCEPTED)  # staging keyed the record the same way


def test_a_record_without_pii_is_returned_as_it_is():
    record = {"id": "e1", "type": "page_view", "timestamp": "2025-08-01T12:00:00Z", "user": {"id": "u1"}}
    assert pseudonymize_payload(record, POLICY) is record
    assert pseudonymize_payload(record, PiiPolicy(("email",), None)) is record  # no key needed without PII


@pytest.mark.parametrize(
    ("record", "where"),
    [
        ({"context": {"ip": "10.0.0.1"}}, "context.ip"),
        ({"traits": {"email": "a@example.com"}}, "traits.email"),
        ({"userId": "a@example.com"}, "userId"),
        ({"items": [{"phone": 5550100}]}, "items.phone"),
    ],
)
def test_pii_without_a_key_raises_and_says_where(record, where):
    with pytest.raises(PiiKeyMissing) as raised:
        pseudonymize_payload(record, PiiPolicy(("email", "ip", "phone"), None))
    assert raised.value.where == where
    assert "\n" not in str(raised.value)


def test_the_key_never_shows_in_the_policys_repr():
    assert "unit-test-key" not in repr(POLICY)
    assert "unit-test-key" not in str(POLICY)


def test_normalize_of_a_pseudonymized_payload_holds_no_clear_value():
    event = normalize(pseudonymize_payload(RECORD, POLICY), ACCEPTED)
    shown = repr(event)
    for clear in (
        "ann@example.com",
        "203.0.113.7",
        "010-0000",
        "198.51.100.1",
        "Bob@Example.com",
        "carol@",
        "2001:db8",
    ):
        assert clear not in shown
    assert event.properties["traits"]["email"] == hidden("bob@example.com")
    assert event.content_hash == normalize(pseudonymize_payload(RECORD, POLICY), ACCEPTED).content_hash


def test_a_user_id_that_is_an_email_becomes_the_same_pseudonym_as_the_email_field():
    as_user = normalize({**RECORD, "user_id": " ANN@example.com"}, ACCEPTED)
    assert as_user.user_id == "ANN@example.com"  # normalize alone keeps it: pseudonymization is the step before
    event = normalize(pseudonymize_payload({**RECORD, "user_id": " ANN@example.com"}, POLICY), ACCEPTED)
    assert event.user_id == hidden("ann@example.com") == event.properties["email"]


def test_pseudonymizing_is_done_once_on_raw_payloads_so_it_need_not_be_idempotent():
    once = pseudonymize_payload(RECORD, POLICY)
    # The transform always starts from the raw staged payload: running it again gives the same output...
    assert pseudonymize_payload(RECORD, POLICY) == once
    # ...while a pseudonym is not itself PII by value, and hashing it again would give another value.
    assert pseudonymize(once["email"], KEY) != once["email"]
    assert pseudonymize_payload({"note": once["email"]}, POLICY) == {"note": once["email"]}


def test_settings_read_the_fields_and_the_key_stays_out_of_settings():
    settings = Settings.from_env({"ETL_PII_FIELDS": " email , IP,phone_number ", "ETL_PII_KEY": "k" * 16})
    assert settings.pii_fields == ("email", "IP", "phone_number")
    assert settings.pii_key_configured
    assert "k" * 16 not in repr(settings)
    assert Settings.from_env({}).pii_fields == ("email", "ip", "phone")
    assert not Settings.from_env({}).pii_key_configured
    assert pii_key({"ETL_PII_KEY": "k" * 16}) == b"k" * 16
    assert pii_key({}) is None
    assert printable_value("ETL_PII_KEY", "k" * 16) == "(set; a secret, not shown)"  # what `etl config` prints
    assert Settings.from_env({}).retention_days == 90
    assert Settings.from_env({"ETL_RETENTION_DAYS": "30"}).retention_days == 30


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"ETL_PII_FIELDS": "email,context.ip"},
            "ETL_PII_FIELDS names 'context.ip', which is not a field name: list names like email,ip,phone "
            "(each is matched at any depth, so write ip, not context.ip)",
        ),
        (
            {"ETL_PII_KEY": "short-secret"},
            "ETL_PII_KEY is shorter than 16 characters (its value is a secret and not shown): set it to a long "
            "random secret, e.g. the output of `openssl rand -hex 32`",
        ),
        (
            {"ETL_RETENTION_DAYS": "ninety"},
            "ETL_RETENTION_DAYS='ninety' is not a number of days: set it to an integer between 1 and 36500",
        ),
    ],
)
def test_bad_settings_are_one_line(env, message):
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    assert str(raised.value) == message
    assert "short-secret" not in str(raised.value)


def test_a_number_read_exactly_under_a_pii_key_is_pseudonymized_by_its_digits():
    payload = exact_json.loads('{"phone_number": 123456789012345678901234567890, "card": 12345678901234567890}')
    assert isinstance(payload["phone_number"], Decimal)
    out = pseudonymize_payload(payload, PiiPolicy(("phone_number", "card"), KEY))
    assert out == {"phone_number": hidden("123456789012345678901234567890"), "card": hidden("12345678901234567890")}


def test_one_value_under_two_keys_gets_each_keys_pseudonym_and_a_missing_key_still_fails():
    record = {"id": "e1", "email": "ann@example.com", "context": {"ip": "203.0.113.7"}}
    for _ in range(2):  # the second pass reads what the first remembered
        assert pseudonymize_payload(record, POLICY)["email"] == hidden("ann@example.com")
        other = pseudonymize_payload(record, PiiPolicy(POLICY.fields, OTHER_KEY))
        assert other["email"] == pseudonymize("ann@example.com", OTHER_KEY) != hidden("ann@example.com")
        assert other["context"]["ip"] == pseudonymize("203.0.113.7", OTHER_KEY)
        with pytest.raises(PiiKeyMissing):
            pseudonymize_payload(record, PiiPolicy(POLICY.fields, None))


@pytest.mark.parametrize(
    ("text", "standard"),
    [
        ("10.0.0.1", "10.0.0.1"),
        ("0.0.0.0", "0.0.0.0"),
        ("255.255.255.255", "255.255.255.255"),
        (" 192.168.1.20 ", "192.168.1.20"),
        ("::ffff:10.0.0.1", "10.0.0.1"),
        ("2001:DB8:0::1", "2001:db8::1"),
    ],
)
def test_an_ip_address_is_hashed_in_the_standard_text_of_its_address(text: str, standard: str):
    assert canonical(text) == standard
    assert pseudonymize(text, KEY) == pseudonymize(standard, KEY)


def test_what_is_not_an_ip_address_is_not_hashed_as_one():
    for text in ("10.0.0.256", "1.2.3", "1.2.3.4.5", "1..2.3"):
        assert pseudonymize_payload({"note": text}, POLICY) == {"note": text}


def test_the_key_names_a_walker_remembers_are_bounded_whatever_a_source_sends():
    walker = _walker(POLICY.fields, KEY)
    for number in range(_KEPT + 100):
        pseudonymize_payload({f"field_{number}": "x", f"email_{number}": "y"}, POLICY)
    assert len(walker._marks) <= _KEPT
    assert pseudonymize_payload({"email_99999": "ann@example.com"}, POLICY) == {
        "email_99999": hidden("ann@example.com")
    }
