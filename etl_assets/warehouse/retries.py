"""Transient database errors, and re-running a whole transaction from the start when one ends it.

A transaction is the unit that can be re-run: it either committed or left nothing behind, so a retry
opens a new connection and transaction and does all of its work again. The writes are idempotent
already (``ON CONFLICT``, batch ids, the merge ledger), so even a commit whose acknowledgement was lost
with the connection is safe to repeat. Input that a transaction consumes must be re-created by the work
function on every attempt (a generator consumed by a failed attempt cannot be replayed).

Transient (worth a retry, ``is_transient``): serialization failures and deadlocks (another transaction
won), a server that is starting, shutting down or full, and a connection that broke (closed, reset,
refused, terminated). Anything else (a constraint, a bad statement, a wrong password) surfaces at once.

Retries wait a random time up to an exponentially growing bound (full jitter, so workers that failed
together do not retry together) for as long as ``MAX_SECONDS``: a server that restarts or fails over is
down for seconds to a minute, and a run that waits it out finishes instead of failing. ``MAX_ATTEMPTS`` is
a backstop far above what that time holds. A caller that must answer soon (the collector, whose clients
wait for a status) gives a shorter ``max_seconds``. Each retry is logged with the error's class and
SQLSTATE, never its message (a connection error's message names the server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import psycopg
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 20
"""Attempts of one transaction, the first included: a backstop, since the waits of 20 attempts add up to more
than ``MAX_SECONDS`` (the time budget is what ends the retries of a server that stays away)."""
MAX_SECONDS = 60.0
"""No retry starts whose wait would end later than this after the first attempt began."""
WAIT_MULTIPLIER = 0.5
"""The n-th retry waits a random time between 0 and ``WAIT_MULTIPLIER * 2 ** (n - 1)`` seconds…"""
WAIT_MAX = 10.0
"""…and never more than this."""

TRANSIENT_SQLSTATES = {
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "53300": "too_many_connections",
    "57P01": "admin_shutdown",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",
}
CONNECTION_EXCEPTION_CLASS = "08"
"""SQLSTATE class 08, connection exception (08000, 08001, 08003, 08004, 08006, …)."""

LOST_CONNECTION_MESSAGES = (
    # libpq and psycopg give no SQLSTATE when the connection itself fails; these are their words for it.
    "server closed the connection",
    "connection reset",
    "connection refused",
    "connection timed out",
    "timeout expired",
    "could not receive data from server",
    "could not send data to server",
    "consuming input failed",
    "sending query failed",
    "terminating connection",
    "the connection is lost",
    "no connection to the server",
    "ssl syscall error",
    "eof detected",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "too many clients",
    "remaining connection slots are reserved",
)

T = TypeVar("T")


def _driver_error(error: BaseException) -> BaseException:
    """The psycopg error under a SQLAlchemy one (``DBAPIError.orig``); the error itself otherwise."""
    if isinstance(error, DBAPIError) and error.orig is not None:
        return error.orig
    return error


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of ``error`` (or of the psycopg error it wraps), when the server sent one."""
    return getattr(_driver_error(error), "sqlstate", None)


def is_transient(error: BaseException) -> bool:
    """Whether re-running the transaction that raised ``error``, from the start, may well succeed."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True  # SQLAlchemy found the connection broken (and dropped it from the pool)
    driver_error = _driver_error(error)
    if not isinstance(driver_error, psycopg.Error):
        return False
    sqlstate = driver_error.sqlstate
    if sqlstate is not None:
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(CONNECTION_EXCEPTION_CLASS)
    if isinstance(driver_error, psycopg.errors.ConnectionTimeout):
        return True
    if isinstance(driver_error, psycopg.OperationalError):
        message = str(driver_error).lower()
        return any(words in message for words in LOST_CONNECTION_MESSAGES)
    return False


def describe(error: BaseException) -> str:
    """The error's class and SQLSTATE: what a log line may say of it (its message could name the server)."""
    driver_error = _driver_error(error)
    sqlstate = sqlstate_of(error)
    name = TRANSIENT_SQLSTATES.get(sqlstate or "", "")
    parts = [type(driver_error).__name__, f"SQLSTATE {sqlstate or 'none'}" + (f" {name}" if name else "")]
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        parts.append("connection invalidated")
    return ", ".join(parts)


def _log_retry(what: str, retry_state: RetryCallState) -> None:
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    wait = retry_state.next_action.sleep if retry_state.next_action is not None else 0.0
    logger.warning(
        "transient database error in %s (%s): attempt %d of %d failed, retrying in %.2f s",
        what,
        describe(error) if error is not None else "unknown",
        retry_state.attempt_number,
        MAX_ATTEMPTS,
        wait,
    )


def retrying(what: str, *, max_seconds: float | None = None) -> Retrying:
    """A tenacity ``Retrying`` for transient errors; ``what`` names the work in the log (no secrets in it);
    ``max_seconds`` replaces ``MAX_SECONDS`` as the time budget.

    The limits are read when it is made, so a test can lower them; the last error is re-raised as it was.
    """
    budget = MAX_SECONDS if max_seconds is None else max_seconds
    return Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=WAIT_MULTIPLIER, max=WAIT_MAX),
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_before_delay(budget),
        before_sleep=partial(_log_retry, what),
        reraise=True,
    )


def in_transaction(
    engine: Engine, work: Callable[[Connection], T], *, what: str, max_seconds: float | None = None
) -> T:
    """``work(conn)`` in a transaction of its own, committed when it returns; after a transient error, run again
    in a new transaction on a new connection, from the start, for up to ``max_seconds`` (``MAX_SECONDS`` unless
    given). ``work`` must re-create any input it consumes."""

    def attempt() -> T:
        with engine.begin() as conn:
            return work(conn)

    return retrying(what, max_seconds=max_seconds)(attempt)
