import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etl_assets.collector.signatures import DEFAULT_TOLERANCE_SECONDS, SignatureRejected, sign, verify

NOW = 1_763_721_600
BODY = b'{"events": [{"id": "e1", "type": "purchase"}]}'
SECRET = "whsec_current"


def rejected(secrets, timestamp_header, signature_header, body=BODY, now=NOW, **kwargs) -> SignatureRejected:
    with pytest.raises(SignatureRejected) as raised:
        verify(secrets, timestamp_header, signature_header, body, now, **kwargs)
    return raised.value


def test_sign_is_hmac_sha256_of_timestamp_dot_body_in_hex():
    expected = hmac.new(b"whsec_current", b'1763721600.{"events": [{"id": "e1", "type": "purchase"}]}', "sha256")
    assert sign(SECRET, NOW, BODY) == "v1=" + expected.hexdigest()
    assert len(sign(SECRET, NOW, BODY)) == len("v1=") + 64


def test_a_good_signature_is_accepted():
    assert verify([SECRET], str(NOW), sign(SECRET, NOW, BODY), BODY, NOW) is None


def test_a_signature_made_with_any_of_the_partner_secrets_is_accepted():
    """During a rotation the partner signs with the old secret or the new one; both must pass."""
    for secret in ("whsec_new", "whsec_old"):
        verify(["whsec_new", "whsec_old"], str(NOW), sign(secret, NOW, BODY), BODY, NOW)


def test_a_signature_made_with_another_secret_is_rejected():
    error = rejected(["whsec_new", "whsec_old"], str(NOW), sign("whsec_other", NOW, BODY))
    assert error.reason == "bad_signature"


def test_no_secrets_accept_nothing():
    assert rejected([], str(NOW), sign(SECRET, NOW, BODY)).reason == "bad_signature"


@pytest.mark.parametrize(
    "header",
    [
        "{wrong},{right}",
        "{right},{wrong}",
        " {wrong} , {right} ",
        "v0=deadbeef,{right}",
    ],
)
def test_one_matching_value_among_several_is_enough(header):
    wrong, right = sign("whsec_other", NOW, BODY), sign(SECRET, NOW, BODY)
    verify([SECRET], str(NOW), header.format(wrong=wrong, right=right), BODY, NOW)


def test_a_signature_under_another_scheme_is_not_accepted():
    digest = sign(SECRET, NOW, BODY).removeprefix("v1=")
    for header in (f"v0={digest}", digest, f"V1={digest}", f"v1 ={digest}"):
        assert rejected([SECRET], str(NOW), header).reason == "bad_signature"


def test_an_uppercase_digest_is_not_accepted():
    assert rejected([SECRET], str(NOW), sign(SECRET, NOW, BODY).upper().replace("V1=", "v1=")).reason == "bad_signature"


@pytest.mark.parametrize("body", [BODY + b" ", BODY.replace(b"e1", b"e2"), b"", BODY[:-1]])
def test_a_tampered_body_is_rejected(body):
    error = rejected([SECRET], str(NOW), sign(SECRET, NOW, BODY), body=body)
    assert error.reason == "bad_signature"
    assert str(error) == "the signature does not match the body and timestamp"


def test_a_signature_replayed_with_another_timestamp_is_rejected():
    assert rejected([SECRET], str(NOW + 1), sign(SECRET, NOW, BODY)).reason == "bad_signature"


@pytest.mark.parametrize("offset", [-DEFAULT_TOLERANCE_SECONDS - 1, DEFAULT_TOLERANCE_SECONDS + 1, -86_400, 86_400])
def test_a_timestamp_too_far_from_now_in_either_direction_is_stale(offset):
    """Checked before the signature: a correctly signed but old (or future) delivery is still refused."""
    timestamp = NOW + offset
    error = rejected([SECRET], str(timestamp), sign(SECRET, timestamp, BODY))
    assert error.reason == "stale_timestamp"
    assert f"{abs(offset)}s from now" in str(error)


@pytest.mark.parametrize("offset", [-DEFAULT_TOLERANCE_SECONDS, DEFAULT_TOLERANCE_SECONDS, 0])
def test_a_timestamp_at_the_tolerance_is_still_fresh(offset):
    timestamp = NOW + offset
    verify([SECRET], str(timestamp), sign(SECRET, timestamp, BODY), BODY, NOW)


def test_the_tolerance_can_be_set():
    timestamp = NOW - 60
    signature = sign(SECRET, timestamp, BODY)
    verify([SECRET], str(timestamp), signature, BODY, NOW, tolerance_seconds=60)
    assert rejected([SECRET], str(timestamp), signature, tolerance_seconds=59).reason == "stale_timestamp"


def test_half_a_second_past_the_tolerance_is_stale():
    timestamp = NOW - DEFAULT_TOLERANCE_SECONDS
    signature = sign(SECRET, timestamp, BODY)
    verify([SECRET], str(timestamp), signature, BODY, NOW + 0.0)
    assert rejected([SECRET], str(timestamp), signature, now=NOW + 0.5).reason == "stale_timestamp"


@pytest.mark.parametrize(
    ("timestamp_header", "signature_header"),
    [(None, "v1=x"), ("", "v1=x"), (str(NOW), None), (str(NOW), ""), (None, None)],
)
def test_a_missing_header_is_rejected(timestamp_header, signature_header):
    error = rejected([SECRET], timestamp_header, signature_header)
    assert error.reason == "missing_signature"
    assert "X-Webhook-Timestamp" in str(error)
    assert "X-Webhook-Signature" in str(error)


@pytest.mark.parametrize("timestamp_header", ["abc", "1763721600.0", "2025-11-21T10:40:00Z", "0x69204b80"])
def test_a_timestamp_that_is_not_integer_seconds_is_rejected(timestamp_header):
    error = rejected([SECRET], timestamp_header, sign(SECRET, NOW, BODY))
    assert error.reason == "bad_signature"
    assert str(error) == "X-Webhook-Timestamp must be Unix seconds"


def test_the_reason_is_an_attribute_and_the_detail_the_message():
    error = SignatureRejected("stale_timestamp", "too old")
    assert error.reason == "stale_timestamp"
    assert str(error) == "too old"
    assert error.args == ("too old",)


@given(
    secret=st.text(),
    body=st.binary(),
    offset=st.integers(min_value=-DEFAULT_TOLERANCE_SECONDS, max_value=DEFAULT_TOLERANCE_SECONDS),
)
def test_any_body_signed_with_any_secret_verifies(secret, body, offset):
    timestamp = NOW + offset
    verify([secret], str(timestamp), sign(secret, timestamp, body), body, NOW)


@given(secret=st.text(), body=st.binary(), other=st.binary())
def test_a_signature_does_not_verify_another_body(secret, body, other):
    if body == other:
        other = body + b"x"
    with pytest.raises(SignatureRejected) as raised:
        verify([secret], str(NOW), sign(secret, NOW, body), other, NOW)
    assert raised.value.reason == "bad_signature"


def test_a_non_ascii_signature_header_is_a_bad_signature_not_a_crash():
    with pytest.raises(SignatureRejected) as raised:
        verify(["s"], "1763721600", "v1=é", b"x", 1763721600)
    assert raised.value.reason == "bad_signature"
