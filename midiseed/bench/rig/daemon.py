"""`midiseed serve` in its own process, with a generated config and its own port names."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from midiseed.bench.rig.server import PortWatch


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def daemon_config(name: str, model: Path, settings: dict[str, dict[str, Any]]) -> str:
    """A config.toml for a rig daemon: JACK, ports named after `name`, CPU, then `settings`."""
    sections: dict[str, dict[str, Any]] = {
        "model": {"model": str(model), "provider": "cpu"},
        "midi": {"backend": "jack", "client_name": name, "in_port": f"{name}-in", "out_port": f"{name}-out"},
    }
    for section, values in settings.items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def thread_cpu(pid: int) -> list[tuple[int, int, float]]:
    """(thread id, real-time priority, CPU seconds so far: utime + stime) of each thread of a
    process, from /proc/PID/task/*/stat; a thread that ends meanwhile is left out."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append((int(task.name), int(fields[37]), (int(fields[11]) + int(fields[12])) / tick))
    return out


class DaemonProcess:
    """`python -m midiseed serve` in its own process, with a generated config and its own port
    names; `source` runs the midiseed of another source tree (an older commit, for comparisons)."""

    def __init__(
        self,
        tmp: Path,
        model: Path,
        name: str,
        settings: dict[str, dict[str, Any]] | None = None,
        source: Path | None = None,
    ) -> None:
        self.name = name
        self.config = tmp / f"{name}.toml"
        self.config.write_text(daemon_config(name, model, settings or {}))
        self.log = tmp / f"{name}.log"
        env = dict(os.environ)
        root = str(source or Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with self.log.open("w") as log_file:
            self.launched = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "midiseed", "serve", "--config", str(self.config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
            )

    def wait_for_ports(
        self, watch: PortWatch | None = None, timeout: float = 30.0, poll_s: float = 0.005
    ) -> float:
        """Seconds from launch until the output port appeared (polled every `poll_s`); then waits
        for the input port too. Raises RuntimeError (with the daemon's log) if they never come.
        Without a `watch`, one of its own is opened for the wait and closed after it."""
        if watch is None:
            own = PortWatch(f"{self.name}-w")
            try:
                return self.wait_for_ports(own, timeout, poll_s)
            finally:
                own.close()
        deadline = self.launched + timeout
        out_seen: float | None = None
        while time.monotonic() < deadline:
            if out_seen is None and watch.has_source(f"{self.name}-out"):
                out_seen = time.monotonic() - self.launched
            if out_seen is not None and watch.has_sink(f"{self.name}-in"):
                return out_seen
            if self.proc.poll() is not None:
                break
            time.sleep(poll_s)
        self.stop()
        raise RuntimeError(f"daemon {self.name} did not open its ports: {self.tail()}")

    def _proc_file(self, name: str) -> str:
        return Path(f"/proc/{self.proc.pid}/{name}").read_text()

    def peak_rss_mb(self) -> float:
        """VmHWM of the daemon process, in MB."""
        for line in self._proc_file("status").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise RuntimeError("no VmHWM in /proc status")

    def cpu_seconds(self) -> float:
        """CPU time the daemon used so far, user + system (/proc/PID/stat utime + stime)."""
        fields = self._proc_file("stat").rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU time so far by kind of thread: "main" (the service's loop), "jack" (JACK's process
        threads inside the daemon: real-time at a priority other than the daemon's own 20) and
        "other" (the status socket, onnxruntime, Python). A thread that ended is not counted."""
        out = {"main": 0.0, "jack": 0.0, "other": 0.0}
        for tid, rt_priority, seconds in thread_cpu(self.proc.pid):
            jack = rt_priority not in (0, 20)
            kind = "main" if tid == self.proc.pid else "jack" if jack else "other"
            out[kind] += seconds
        return out

    def output(self) -> str:
        """The daemon's whole log."""
        return self.log.read_text()

    def tail(self, chars: int = 800) -> str:
        """The end of the daemon's log, on one line."""
        try:
            return " ".join(self.log.read_text()[-chars:].split())
        except OSError:
            return "(no log)"

    def final_status(self) -> dict[str, str]:
        """Fields of the daemon's last status line ("stopped: notes in 1, out 72, dropped 0, ..."),
        read from its log after it stopped."""
        lines = [line for line in self.tail(100_000).split(" INFO ") if "stopped:" in line]
        if not lines:
            return {}
        fields = {}
        for part in lines[-1].split("stopped:", 1)[1].split(","):
            words = part.split()
            if len(words) >= 2:
                fields[" ".join(words[:-1])] = words[-1]
        return fields

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Send `sig` and wait for the exit status; SIGKILL if it does not end within `timeout`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)
