"""Which database errors are transient, and how a transient one is retried (no server: errors built by hand)."""

from __future__ import annotations

import logging

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import exc

from etl_assets.warehouse import retries
from etl_assets.warehouse.retries import describe, is_transient, retrying

SECRET_URL = "postgresql://etl:s3cret@db.internal:5432/warehouse"


def wrapped(orig: Exception, *, invalidated: bool = False) -> exc.DBAPIError:
    """``orig`` as SQLAlchemy raises it from a statement."""
    return exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error, connection_invalidated=invalidated)


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "53300", "57P03", "57P01", "57P02"])
def test_sqlstates_of_losing_a_race_or_a_busy_or_restarting_server_are_transient(sqlstate):
    error = errors.lookup(sqlstate)("from the server")
    assert error.sqlstate == sqlstate
    assert is_transient(error)
    assert is_transient(wrapped(error))


@pytest.mark.parametrize("sqlstate", ["08000", "08001", "08003", "08004", "08006"])
def test_connection_exceptions_are_transient(sqlstate):
    assert is_transient(wrapped(errors.lookup(sqlstate)("connection exception")))


@pytest.mark.parametrize(
    "message",
    [
        "consuming input failed: server closed the connection unexpectedly\n\tThis probably means the server "
        "terminated abnormally",
        "sending query failed: could not send data to server: Connection reset by peer",
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused',
        "connection failed: FATAL:  sorry, too many clients already",
        "connection failed: FATAL:  the database system is starting up",
        "the connection is lost",
    ],
)
def test_a_lost_or_refused_connection_without_sqlstate_is_transient(message):
    error = psycopg.OperationalError(message)
    assert error.sqlstate is None
    assert is_transient(error)
    assert is_transient(wrapped(error))


def test_whatever_error_sqlalchemy_found_the_connection_broken_by_is_transient():
    assert is_transient(wrapped(psycopg.OperationalError("something new"), invalidated=True))
    assert not is_transient(wrapped(psycopg.OperationalError("something new")))


def test_a_connect_timeout_is_transient():
    assert is_transient(errors.ConnectionTimeout("connection timeout expired"))


@pytest.mark.parametrize(
    "error",
    [
        errors.CheckViolation("new row violates check constraint"),
        errors.UniqueViolation("duplicate key value"),
        errors.UndefinedTable('relation "nope" does not exist'),
        errors.QueryCanceled("canceling statement due to statement timeout"),
        errors.InsufficientPrivilege("permission denied"),
        psycopg.OperationalError('connection failed: FATAL:  password authentication failed for user "etl"'),
        psycopg.OperationalError('connection failed: FATAL:  database "nope" does not exist'),
        psycopg.ProgrammingError("the query has 1 placeholder but 2 parameters were passed"),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_transient(error):
    assert not is_transient(error)
    if isinstance(error, psycopg.Error):
        assert not is_transient(wrapped(error))


def test_describe_names_the_class_and_sqlstate_never_the_message():
    error = wrapped(errors.AdminShutdown(f"terminating connection; {SECRET_URL}"), invalidated=True)
    text = describe(error)
    assert text == "AdminShutdown, SQLSTATE 57P01 admin_shutdown, connection invalidated"
    assert "s3cret" not in text
    assert describe(psycopg.OperationalError(f"connection failed: {SECRET_URL}")) == "OperationalError, SQLSTATE none"


@pytest.fixture
def no_waiting(monkeypatch):
    monkeypatch.setattr(retries, "WAIT_MULTIPLIER", 0.001)


def failing(times: int, error: Exception):
    calls = []

    def work() -> str:
        calls.append(1)
        if len(calls) <= times:
            raise error
        return "done"

    return work, calls


def test_a_transient_error_is_retried_and_each_retry_logged_with_its_sqlstate(no_waiting, caplog):
    work, calls = failing(2, wrapped(errors.SerializationFailure(f"could not serialize; {SECRET_URL}")))
    with caplog.at_level(logging.WARNING, logger=retries.__name__):
        assert retrying("staging batch b1")(work) == "done"
    assert len(calls) == 3
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 2
    assert all("staging batch b1" in message and "SQLSTATE 40001" in message for message in messages)
    attempts = retries.MAX_ATTEMPTS
    assert f"attempt 1 of {attempts} failed" in messages[0] and f"attempt 2 of {attempts} failed" in messages[1]
    assert "s3cret" not in caplog.text and "db.internal" not in caplog.text


def test_a_non_transient_error_surfaces_at_once(no_waiting, caplog):
    error = wrapped(errors.CheckViolation("violates check constraint"))
    work, calls = failing(1, error)
    with pytest.raises(exc.DBAPIError) as raised:
        retrying("staging")(work)
    assert raised.value is error
    assert len(calls) == 1
    assert not caplog.records


def test_attempts_are_bounded_and_the_last_error_is_raised_as_it_was(no_waiting, monkeypatch):
    monkeypatch.setattr(retries, "MAX_ATTEMPTS", 3)
    error = errors.DeadlockDetected("deadlock detected")
    work, calls = failing(10, error)
    with pytest.raises(errors.DeadlockDetected) as raised:
        retrying("merge")(work)
    assert raised.value is error
    assert len(calls) == 3


def test_no_retry_starts_once_the_time_budget_is_spent(monkeypatch):
    monkeypatch.setattr(retries, "MAX_SECONDS", 0)
    work, calls = failing(10, errors.SerializationFailure("could not serialize"))
    with pytest.raises(errors.SerializationFailure):
        retrying("merge")(work)
    assert len(calls) == 1


def test_a_caller_that_must_answer_soon_gives_a_shorter_budget(no_waiting):
    work, calls = failing(3, errors.AdminShutdown("terminating connection due to administrator command"))
    with pytest.raises(errors.AdminShutdown):
        retrying("a collector flush", max_seconds=0)(work)
    assert len(calls) == 1
    assert retrying("a merge")(work) == "done"


def test_the_time_budget_not_the_attempt_count_ends_the_retries_of_a_server_that_stays_away():
    """Full jitter waits half its bound on average: the attempts outlast the budget, so a restart or failover of up
    to about ``MAX_SECONDS`` is waited out rather than cut short after a few quick tries."""
    bounds = [min(retries.WAIT_MULTIPLIER * 2**n, retries.WAIT_MAX) for n in range(retries.MAX_ATTEMPTS - 1)]
    assert sum(bound / 2 for bound in bounds) > retries.MAX_SECONDS
