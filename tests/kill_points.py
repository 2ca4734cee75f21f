"""Holding a run process at a chosen point, from outside it, so that a test can SIGKILL it exactly there.

Nothing in the platform's code knows about it. In the database, a gate is a test-only row trigger created in
the test's own database: the ``nth`` row a statement writes into a table (matching a ``WHEN`` condition)
waits for an advisory lock that the test holds, so the run's statement stops in the middle, its transaction
open, until the test has killed the run. The lock can also be one the platform takes itself (a day's merge lock),
and the run then stops where it asks for it. ``pg_locks`` shows which backend waits, and ``pg_stat_activity``
what it was running; the trigger counts its rows with a sequence (``nextval`` is not undone by the rollback
the kill causes), so the same statement run again by the recovery passes. The trigger runs as its owner
(``SECURITY DEFINER``), so a run connected as one of the platform's restricted roles is held all the same.

Over HTTP, ``HeldRequest`` holds the nth request an app receives until released: the client (the run) is
then waiting for that answer.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psutil
import psycopg

GATE_CLASS = 0x6B696C6C  # "kill": first half of the two-part advisory key of every row gate


@dataclass(frozen=True)
class RowGate:
    """Stop the statement that writes the ``nth`` row matching ``when`` into ``table``, before it is written."""

    table: str
    nth: int = 1
    event: str = "INSERT"
    when: str | None = None

    def describe(self) -> str:
        condition = f" where {self.when}" if self.when else ""
        return f"{self.event.lower()} of row {self.nth} into {self.table}{condition}"


@dataclass(frozen=True)
class LockGate:
    """Stop the run where it asks for the advisory lock ``key`` (one the platform takes itself): one ``bigint``
    key, or the two-``int`` form (``pg_advisory_xact_lock(class, key)``)."""

    key: int | tuple[int, int]
    name: str

    def describe(self) -> str:
        return f"waiting for the {self.name}"

    @property
    def lock(self) -> tuple[int, int, int]:
        """How ``pg_locks`` shows the lock: classid, objid and objsubid (1: one bigint key, 2: two int keys)."""
        if isinstance(self.key, tuple):
            return (*self.key, 2)
        return ((self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF, 1)

    @property
    def arguments(self) -> tuple[int, ...]:
        return self.key if isinstance(self.key, tuple) else (self.key,)


Gate = RowGate | LockGate


@dataclass(frozen=True)
class Waiter:
    """The run's backend, stopped at a gate."""

    pid: int
    application_name: str
    query: str
    client_port: int | None
    """The run's end of the connection (its local TCP port), to find the run's process by."""

    def client_process(self) -> psutil.Process:
        """The process on this machine that holds the waiting connection: the run process to kill."""
        for connection in psutil.net_connections(kind="tcp"):
            if connection.laddr and connection.laddr.port == self.client_port and connection.pid:
                return psutil.Process(connection.pid)
        raise AssertionError(f"no process holds the connection from port {self.client_port}")


class GateTimeout(AssertionError):
    pass


WAITERS = """
SELECT a.pid, a.application_name, a.query, a.client_port FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND NOT l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %s AND l.objid = %s AND l.objsubid = %s
"""


class Gates:
    """The gates of one test database. The connection holding their locks stays open until ``close``."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.armed: list[tuple[Gate, tuple[int, int, int]]] = []

    def arm(self, gate: Gate) -> None:
        """Create the gate (a trigger, for a row gate) and take the lock it waits on."""
        if isinstance(gate, LockGate):
            lock = gate.lock
            placeholders = ", ".join(["%s"] * len(gate.arguments))
            self.conn.execute(f"SELECT pg_advisory_lock({placeholders})", gate.arguments)
        else:
            number = len(self.armed) + 1
            lock = (GATE_CLASS, number, 2)
            name = f"crash_gate_{number}"
            when = f"WHEN ({gate.when}) " if gate.when else ""
            self.conn.execute(f"CREATE SEQUENCE {name}_rows")
            self.conn.execute(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN "
                f"IF nextval('{name}_rows') = {gate.nth} THEN "
                f"PERFORM pg_advisory_xact_lock_shared({GATE_CLASS}, {number}); END IF; RETURN NEW; END $$"
            )
            self.conn.execute(
                f"CREATE TRIGGER {name} BEFORE {gate.event} ON {gate.table} FOR EACH ROW {when}"
                f"EXECUTE FUNCTION {name}()"
            )
            self.conn.execute("SELECT pg_advisory_lock(%s, %s)", (GATE_CLASS, number))
        self.armed.append((gate, lock))

    def waiter(self, gate: Gate) -> Waiter | None:
        waiters = self.waiters(gate)
        return waiters[0] if waiters else None

    def waiters(self, gate: Gate) -> list[Waiter]:
        """Every backend stopped at ``gate`` (a lock gate can hold several runs)."""
        lock = next(lock for armed, lock in self.armed if armed is gate)
        return [Waiter(*row) for row in self.conn.execute(WAITERS, lock).fetchall()]

    def lock_waiters(self, lock: LockGate) -> list[str]:
        """The application names of the backends waiting for ``lock``, armed here or not (held by a run)."""
        return [row[1] for row in self.conn.execute(WAITERS, lock.lock).fetchall()]

    def wait_for(self, gate: Gate, still_running: Callable[[], bool], timeout: float = 60.0) -> Waiter:
        """The backend stopped at ``gate``, once it is there; fail when the run ends first or never gets there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiter = self.waiter(gate)
            if waiter is not None:
                return waiter
            if not still_running():
                raise GateTimeout(f"the run ended before it reached the kill point ({gate.describe()})")
            time.sleep(0.01)
        raise GateTimeout(f"the run did not reach the kill point ({gate.describe()}) in {timeout:.0f} s")

    def blocked_by(self, application_name: str, pid: int) -> str | None:
        """What the backend of ``application_name`` runs while it waits for a lock that backend ``pid`` holds (a
        day's merge lock, a ledger row), or ``None`` when it is not waiting for ``pid``."""
        row = self.conn.execute(
            "SELECT query FROM pg_stat_activity WHERE application_name = %s AND %s = ANY(pg_blocking_pids(pid))",
            (application_name, pid),
        ).fetchone()
        return row[0] if row else None

    def release(self, gate: Gate) -> None:
        lock = next(lock for armed, lock in self.armed if armed is gate)
        if isinstance(gate, LockGate):
            placeholders = ", ".join(["%s"] * len(gate.arguments))
            self.conn.execute(f"SELECT pg_advisory_unlock({placeholders})", gate.arguments)
        else:
            self.conn.execute("SELECT pg_advisory_unlock(%s, %s)", lock[:2])

    def backend_gone(self, pid: int, timeout: float = 30.0) -> float:
        """Seconds until the backend ``pid`` (a killed run's) has ended; fail when it outlives ``timeout``."""
        started = time.monotonic()
        while self.conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"backend {pid} of the killed run is still there after {timeout:.0f} s")
            time.sleep(0.01)
        return time.monotonic() - started

    def backends_of(self, application_name: str) -> int:
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application_name,)
        ).fetchone()[0]

    def close(self) -> None:
        self.conn.close()


class HeldRequest:
    """ASGI middleware: the ``nth`` request to ``path`` waits, before the app sees it, until ``release``."""

    def __init__(self, app: Any, path: str, nth: int) -> None:
        self.app = app
        self.path = path
        self.nth = nth
        self.count = 0
        self.seen = threading.Event()
        self.released = threading.Event()

    def describe(self) -> str:
        return f"request {self.nth} to {self.path}, held by the server"

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            self.count += 1
            if self.count == self.nth:
                self.seen.set()
                while not self.released.is_set():
                    await asyncio.sleep(0.01)
        await self.app(scope, receive, send)

    def wait_for(self, still_running: Callable[[], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.seen.wait(0.01):
            if not still_running():
                raise GateTimeout(f"the run ended before it reached the kill point ({self.describe()})")
            if time.monotonic() > deadline:
                raise GateTimeout(f"the run did not reach the kill point ({self.describe()}) in {timeout:.0f} s")

    def release(self) -> None:
        self.released.set()
