"""Child processes that stop when asked, and die with their parent if it is killed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import psutil

_PR_SET_PDEATHSIG = 1


def _child_setup(death_signal: int) -> None:
    """Runs in the child before exec: default signal handlers, and a signal when the parent dies.

    A shell that starts a job in the background sets SIGINT to ignored, and an ignored signal stays
    ignored across exec: reset it so the child stops when we ask it to.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, death_signal)


def start(
    args: Sequence[str],
    *,
    log: IO[bytes] | int | None = None,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    user: str | None = None,
    death_signal: int = signal.SIGTERM,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own process group (so a terminal's Ctrl-C reaches us first, and we stop
    children in order), with output to ``log``."""
    return subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=log if log is not None else subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        user=user,
        start_new_session=True,
        preexec_fn=lambda: _child_setup(death_signal),
    )


class NotReady(Exception):
    """A service exited or did not answer in time; the message says why, from its log."""


def wait_ready(
    process: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    *,
    timeout: float,
    log_path: Path,
    interval: float = 0.2,
) -> None:
    """Poll ``probe`` until it returns True; raise NotReady if the process exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise NotReady(tail(log_path, 3) or f"exited at start with code {process.returncode}")
        if probe():
            return
        time.sleep(interval)
    raise NotReady(f"not ready after {timeout:.0f}s; see {log_path}")


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop(process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
    """Send ``sig`` to the process group, wait up to ``timeout`` s, then kill whatever is left of the tree."""
    if process.poll() is not None:
        return
    tree = descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    deadline = time.monotonic() + timeout
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    survivors = [p for p in tree if p.is_running()]
    _, alive = psutil.wait_procs(survivors, timeout=max(0.0, deadline - time.monotonic()))
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    process.wait()


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
