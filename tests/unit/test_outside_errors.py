"""How errors of outside calls sort into transient (retried) and permanent (not), and what a failed step says."""

from __future__ import annotations

import dagster as dg
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError, ReadTimeoutError

from etl_assets.orchestration.step_failures import TransientFailure, retried_only_if_transient
from etl_assets.sources.events_api import ApiError
from etl_assets.sources.outside_errors import sort_error
from etl_assets.sources.s3 import is_transient_s3_error


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "..."}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op"
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("InternalError", 500), True),
        (client_error("RequestTimeout", 400), True),
        (client_error("TooManyRequests", 429), True),
        (client_error("AccessDenied", 403), False),
        (client_error("NoSuchKey", 404), False),
        (client_error("NoSuchBucket", 404), False),
        (client_error("PreconditionFailed", 412), False),
        (ParamValidationError(report="Non ascii characters found in S3 metadata"), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
    ],
)
def test_s3_errors_sort_into_transient_and_permanent(error: Exception, transient: bool):
    assert is_transient_s3_error(error) is transient
    assert sort_error(error).transient is transient


def test_a_permanent_error_fails_the_step_for_good_with_what_to_do_first():
    with pytest.raises(dg.Failure) as raised, retried_only_if_transient():
        raise client_error("NoSuchBucket", 404)
    assert raised.value.allow_retries is False
    assert raised.value.description.startswith(
        "the object store refused the request (NoSuchBucket, HTTP 404): check the bucket names"
    )


def test_a_transient_error_fails_the_step_into_its_retry_policy_with_what_to_do_first():
    with pytest.raises(TransientFailure) as raised, retried_only_if_transient():
        raise ApiError("demo: http://api/events kept failing after 8 retries (503)", transient=True)
    assert not isinstance(raised.value, dg.Failure)
    assert str(raised.value).startswith("demo: http://api/events kept failing")


def test_an_unknown_error_is_not_retried():
    with pytest.raises(dg.Failure) as raised, retried_only_if_transient():
        raise KeyError("field")
    assert raised.value.allow_retries is False
    assert raised.value.description == "KeyError: 'field'; fix the cause and re-execute the run"
