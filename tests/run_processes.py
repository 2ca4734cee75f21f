"""Run processes for the crash trials: each run of the real pipeline code in a process of its own, to SIGKILL.

Starting Python with Dagster and the code location takes seconds, so a worker process imports it all once
and forks a fresh process for every run, with the run's environment (database, buckets, ports). A run is
either a job of the code location executed in its process (as a run worker executes it) or the collector
served by uvicorn. The worker speaks JSON lines: it reads a command, answers ``{"pid": …}`` when the run
process has started and ``{"pid": …, "exit": …}`` when it has ended (``-9``: killed by SIGKILL). Several runs
may run at once (concurrent merges); the worker stays one thread, so forking it is safe.

``python -m tests.run_processes`` is the worker; ``RunWorker`` starts it and starts runs through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

STARTUP_SECONDS = 120


class RunWorker:
    """The worker process (see the module's docstring), driven from the test process."""

    def __init__(self, project_root: Path, log: Path) -> None:
        self.log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.run_processes"],
            cwd=project_root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        """The worker's answers but the exits of runs: ``ready`` and each started run's pid."""
        self.exits: dict[int, int] = {}
        self.ended = threading.Condition()
        self.closed = False
        self.processes: list[RunProcess] = []
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()
        ready = self._answer(STARTUP_SECONDS)
        assert ready == {"ready": True}, ready

    def _read(self, stream: TextIO) -> None:
        for line in stream:
            answer = json.loads(line)
            if "exit" in answer:
                with self.ended:
                    self.exits[answer["pid"]] = answer["exit"]
                    self.ended.notify_all()
            else:
                self.answers.put(answer)
        with self.ended:
            self.closed = True
            self.ended.notify_all()
        self.answers.put({"closed": True})

    def _answer(self, timeout: float) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the run worker did not answer in {timeout:.0f} s") from None
        assert "closed" not in answer, "the run worker ended; see its log"
        return answer

    def start(self, run: dict[str, Any], env: dict[str, str], log: Path) -> RunProcess:
        """Start ``run`` (``{"job": …, "run_config": …, "tags": …}`` or ``{"collector": True}``) in a new process."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"run": run, "env": env, "log": str(log)}) + "\n")
        self.process.stdin.flush()
        process = RunProcess(self, self._answer(60)["pid"], log)
        self.processes.append(process)
        return process

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        """The run's exit code once it has ended; ``None`` when it still runs after ``timeout`` seconds."""
        with self.ended:
            self.ended.wait_for(lambda: pid in self.exits or self.closed, timeout)
            assert pid in self.exits or not self.closed, "the run worker ended; see its log"
            return self.exits.get(pid)

    def stop_runs(self) -> None:
        """SIGKILL every run still running."""
        for process in self.processes:
            process.kill()
        self.processes.clear()

    def close(self) -> None:
        self.stop_runs()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class RunProcess:
    worker: RunWorker
    pid: int
    log: Path
    exit_code: int | None = None

    def running(self) -> bool:
        if self.exit_code is None:
            self.exit_code = self.worker.exit_code(self.pid, 0)
        return self.exit_code is None

    def wait(self, timeout: float) -> int:
        if self.exit_code is None:
            self.exit_code = self.worker.exit_code(self.pid, timeout)
        assert self.exit_code is not None, f"run {self.pid} did not end in {timeout:.0f} s:\n{self.tail()}"
        return self.exit_code

    def kill(self) -> int:
        """SIGKILL the run process; its exit code (-9 unless it had ended on its own)."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        return self.wait(30)

    def terminate(self, timeout: float = 30) -> int:
        if self.running():
            os.kill(self.pid, signal.SIGTERM)
        return self.wait(timeout)

    def tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


# --- the worker process -------------------------------------------------------------------------------------------


def _execute(run: dict[str, Any]) -> int:
    if run.get("collector"):
        from etl_assets.collector.service import serve
        from etl_assets.settings import Settings

        serve(Settings.from_env())
        return 0
    import dagster as dg

    from etl_assets.definitions import defs

    result = (
        defs()
        .resolve_job_def(run["job"])
        .execute_in_process(
            run_config=run.get("run_config") or {},
            tags=run.get("tags") or {},
            instance=dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    )
    return 0 if result.success else 1


def _run_process(command: dict[str, Any]) -> None:
    """In the forked process: take the run's environment and log file, run, and exit with its outcome."""
    os.environ.update(command["env"])
    log = os.open(command["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    code = 2
    try:
        code = _execute(command["run"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reap(children: set[int]) -> None:
    """Answer the exit of every run process that has ended."""
    for pid in list(children):
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended:
            children.discard(pid)
            print(json.dumps({"pid": pid, "exit": os.waitstatus_to_exitcode(status)}), flush=True)


def main() -> None:
    from etl_assets.collector import service  # noqa: F401  (imported once, here, for every collector run)
    from etl_assets.definitions import defs

    defs()  # loads every module of the code location once; each run process builds its own Definitions
    print(json.dumps({"ready": True}), flush=True)
    children: set[int] = set()
    pending = b""
    stdin_open = True
    while stdin_open or children:
        readable, _, _ = select.select([0] if stdin_open else [], [], [], 0.02 if children else None)
        _reap(children)
        if not readable:
            continue
        chunk = os.read(0, 65_536)
        stdin_open = bool(chunk)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            command = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _run_process(command)
            children.add(pid)
            print(json.dumps({"pid": pid}), flush=True)


if __name__ == "__main__":
    main()
