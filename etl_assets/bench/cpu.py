"""CPU seconds a measured path costs: its own work's (all its threads, not its imports), and the PostgreSQL server's
while it ran.

On a machine with ``cores`` cores a path can be no faster than its CPU seconds spread over all of them
(``floor_seconds``), however well its steps overlapped. Set beside a path's wall clock, it says whether the next
speed-up is in more overlap or only in less work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3, utime 14 ... cstime 17


def server_seconds(postmaster_pid: int) -> float:
    """CPU seconds the PostgreSQL server has spent: the postmaster, the backends it has reaped, and the live ones."""
    fields = _stat_fields(postmaster_pid)
    if fields is None:
        return 0.0
    total = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            child = _stat_fields(int(entry.name))
            if child is not None and int(child[1]) == postmaster_pid:  # ppid
                total += int(child[11]) + int(child[12])
    return total / _TICKS


def postmaster_pid(data_dir: Path) -> int | None:
    """The server's pid from its data directory's ``postmaster.pid`` (``None`` when it cannot be read)."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class CpuSeconds:
    python: float
    postgresql: float | None
    """``None`` when the bench did not start the server (``--database-url``): its CPU is not visible here."""

    def floor_seconds(self, cores: int) -> float:
        """The least wall clock this much work could take on ``cores`` cores."""
        return (self.python + (self.postgresql or 0.0)) / cores

    def as_dict(self) -> dict[str, float | None]:
        return {
            "python": round(self.python, 3),
            "postgresql": None if self.postgresql is None else round(self.postgresql, 3),
        }
