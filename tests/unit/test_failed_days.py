"""When the staged-days sensor runs a failed range of days again: a pure decision over the range's past runs."""

from datetime import timedelta

from etl_assets.orchestration.failed_days import RETRY_DELAYS, PastRun, decide, run_key

NOW = 1_000_000.0
MINUTE = 60.0


def failed(minutes_ago: float, *, by_check: bool = False, will_retry: bool = False) -> PastRun:
    return PastRun("FAILURE", NOW - minutes_ago * MINUTE, stopped_by_check=by_check, will_retry=will_retry)


def test_rows_never_run_are_requested_under_their_own_key():
    assert decide([], NOW).attempt == 0
    assert run_key("2025-08-01..2025-08-01@abc", 0) == "2025-08-01..2025-08-01@abc"


def test_a_failed_run_is_tried_again_once_its_delay_has_passed():
    assert RETRY_DELAYS[0] == timedelta(minutes=10)
    waiting = decide([failed(minutes_ago=4)], NOW)
    assert waiting.attempt is None
    assert "tried again in 360 s" in waiting.reason
    assert decide([failed(minutes_ago=10)], NOW).attempt == 1
    assert run_key("k", 1) == "k#retry-1"


def test_each_failure_waits_longer_and_after_the_last_delay_the_rows_wait_for_new_data():
    two = [failed(minutes_ago=60), failed(minutes_ago=29)]
    assert decide(two, NOW).attempt is None
    assert decide(two, NOW + MINUTE).attempt == 2
    three = [failed(minutes_ago=300), failed(minutes_ago=200), failed(minutes_ago=120)]
    assert decide(three, NOW).attempt == 3
    four = [*three, failed(minutes_ago=1_000)]
    gave_up = decide(four, NOW)
    assert gave_up.attempt is None
    assert "failed 4 times" in gave_up.reason


def test_a_run_a_blocking_check_stopped_is_not_run_again():
    decision = decide([failed(minutes_ago=600, by_check=True)], NOW)
    assert decision.attempt is None
    assert "blocking check" in decision.reason


def test_a_run_dagster_retries_a_succeeded_or_a_canceled_run_is_not_requested_again():
    assert decide([failed(minutes_ago=600, will_retry=True)], NOW).attempt is None
    assert decide([PastRun("SUCCESS", NOW - 600, False, False)], NOW).attempt is None
    assert decide([failed(minutes_ago=600), PastRun("CANCELED", NOW - 600, False, False)], NOW).attempt is None


def test_the_delays_can_be_given():
    assert decide([failed(minutes_ago=0)], NOW, delays=[timedelta(0)]).attempt == 1
