"""Start, watch, stop and restart the platform's Python processes (services, gateway)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from deploy.local.console import LineFormat, json_line
from deploy.local.infra import HOST, log_tail, port_in_use, stop_orphan

REPO_ROOT = Path(__file__).resolve().parents[2]


class ProcessFailed(RuntimeError):
    """A supervised process failed to start, to become ready, or to finish successfully."""


@dataclass
class ManagedProcess:
    """One supervised process and everything needed to start it again."""

    name: str
    module: str
    args: tuple[str, ...]
    env: dict[str, str]
    port: int | None
    log_path: Path
    pid_path: Path
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    # True once stop()/kill() was asked for: its exit is then not a failure.
    expected_down: bool = False
    _echo_thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        """The pid of the current process, if one was started."""
        return self.popen.pid if self.popen is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended."""
        return self.popen.poll() if self.popen is not None else None

    def start_echo(self, source: IO[bytes], log: IO[bytes], show: LineFormat) -> None:
        """Start the thread that tees the child's output to its log and the terminal."""
        self._echo_thread = threading.Thread(
            target=_echo,
            args=(self.name, source, log, sys.stdout.buffer, show),
            name=f"echo-{self.name}",
            daemon=True,
        )
        self._echo_thread.start()

    def join_echo(self, timeout: float) -> None:
        """Wait for the tee thread to copy the last output of an ended child."""
        if self._echo_thread is not None and not self.running:
            self._echo_thread.join(timeout)


class Supervisor:
    """Runs `python -m <module>` processes by name, with logs in `log_dir`.

    With `echo`, each output line also goes to standard output as `show` renders it (the
    line as it is by default; deploy.local.console); the log file always gets it as it is.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        cwd: Path = REPO_ROOT,
        echo: bool = False,
        show: LineFormat = json_line,
        ready_timeout: float = 60.0,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.cwd = Path(cwd)
        self.echo = echo
        self.show = show
        self.ready_timeout = ready_timeout
        self._procs: dict[str, ManagedProcess] = {}

    def start(
        self,
        name: str,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        wait: bool = True,
        timeout: float | None = None,
    ) -> ManagedProcess:
        """Start `python -m module *args` as `name`; with a port, wait for its /readyz."""
        if name in self._procs and self._procs[name].running:
            raise ProcessFailed(f"{name} is already running (pid {self._procs[name].pid})")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        proc = ManagedProcess(
            name=name,
            module=module,
            args=tuple(args),
            env=dict(env or {}),
            port=port,
            log_path=self.log_dir / f"{name}.log",
            pid_path=self.log_dir / f"{name}.pid",
        )
        self._procs[name] = proc
        self._spawn(proc)
        if wait and port is not None:
            self.wait_ready(name, timeout)
        return proc

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Wait until GET /readyz answers 200, or fail with the tail of the process log."""
        proc = self._procs[name]
        if proc.port is None:
            raise ValueError(f"{name} has no port to probe")
        limit = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        url = f"http://{HOST}:{proc.port}/readyz"
        while time.monotonic() < deadline:
            if not proc.running:
                raise ProcessFailed(
                    f"{name} exited with code {proc.returncode} before it was ready:\n"
                    + self.log_tail(name)
                )
            if _answers_ok(url):
                return
            time.sleep(0.1)
        tail = self.log_tail(name)
        raise ProcessFailed(f"{name} not ready at {url} after {limit:.0f}s:\n{tail}")

    def stop(self, name: str, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit code."""
        proc = self._procs[name]
        proc.expected_down = True
        if proc.popen is not None and proc.popen.poll() is None:
            _signal_group(proc.popen, signal.SIGTERM)
            try:
                proc.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(proc.popen, signal.SIGKILL)
                proc.popen.wait()
        self._reap(proc)
        return proc.returncode

    def kill(self, name: str) -> None:
        """SIGKILL the process and anything it spawned, as a crash would."""
        proc = self._procs[name]
        proc.expected_down = True
        if proc.popen is not None:
            _signal_group(proc.popen, signal.SIGKILL)
            proc.popen.wait()
        self._reap(proc)

    def restart(self, name: str, *, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the process if it runs, start it again the same way, and wait for /readyz."""
        proc = self._procs[name]
        if proc.running:
            self.stop(name)
        self._spawn(proc)
        if wait and proc.port is not None:
            self.wait_ready(name, timeout)

    def stop_all(self, timeout: float = 15.0) -> None:
        """Stop every process, the last started first."""
        for name in reversed(list(self._procs)):
            self.stop(name, timeout)

    def run(
        self,
        name: str,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        timeout: float = 600.0,
    ) -> None:
        """Run `python -m module *args` to completion (e.g. migrations); fail with its log."""
        proc = self.start(name, module, *args, env=env, wait=False)
        assert proc.popen is not None
        try:
            code = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill(name)
            tail = self.log_tail(name)
            raise ProcessFailed(f"{name} still running after {timeout:.0f}s:\n{tail}") from exc
        proc.expected_down = True
        self._reap(proc)
        if code != 0:
            raise ProcessFailed(f"{name} failed with exit code {code}:\n" + self.log_tail(name))

    def get(self, name: str) -> ManagedProcess:
        """The process registered as `name`."""
        return self._procs[name]

    def names(self) -> list[str]:
        """Names of all registered processes, in start order."""
        return list(self._procs)

    def is_running(self, name: str) -> bool:
        """Whether `name` is alive."""
        return self._procs[name].running

    def exited(self) -> list[ManagedProcess]:
        """Processes that died without being asked to (crashed or killed from outside)."""
        return [
            proc
            for proc in self._procs.values()
            if proc.popen is not None and not proc.expected_down and proc.popen.poll() is not None
        ]

    def log_tail(self, name: str, lines: int = 40) -> str:
        """The last lines of the process log."""
        self._procs[name].join_echo(1.0)
        return log_tail(self._procs[name].log_path, lines)

    def _spawn(self, proc: ManagedProcess) -> None:
        """Start (or start again) the OS process of `proc`."""
        stop_orphan(proc.pid_path, "-m", proc.module, timeout=15.0)
        if proc.port is not None and port_in_use(proc.port):
            raise ProcessFailed(f"{proc.name}: port {proc.port} on {HOST} is already in use")
        env = {**os.environ, **proc.env, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.cwd), os.environ.get("PYTHONPATH", "")) if p
        )
        cmd = [sys.executable, "-m", proc.module, *proc.args]
        log = open(proc.log_path, "ab")  # closed here or by the echo thread
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(cmd)}\n".encode())
        log.flush()
        proc.popen = subprocess.Popen(
            cmd,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if self.echo else log,
            stderr=subprocess.STDOUT,
            # Own session: a terminal Ctrl-C reaches only the runner, which stops all in order.
            start_new_session=True,
        )
        proc.started_at = time.monotonic()
        proc.expected_down = False
        proc.pid_path.write_text(f"{proc.popen.pid}\n")
        if self.echo:
            assert proc.popen.stdout is not None
            proc.start_echo(proc.popen.stdout, log, self.show)
        else:
            log.close()

    def _reap(self, proc: ManagedProcess) -> None:
        """Forget the pid file of an ended process and drain its echoed output."""
        proc.pid_path.unlink(missing_ok=True)
        proc.join_echo(5.0)


def _answers_ok(url: str) -> bool:
    """Tell whether GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _signal_group(popen: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process group the child leads (it runs in its own session)."""
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _echo(name: str, source: IO[bytes], log: IO[bytes], out: IO[bytes], show: LineFormat) -> None:
    """Copy a child's output to its log file as it is, and to `out` as `show` renders it,
    line by line."""
    with log, source:
        for line in iter(source.readline, b""):
            log.write(line)
            log.flush()
            out.write(show(name, line))
            out.flush()
