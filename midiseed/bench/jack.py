"""The JACK rig the port sections measure with: a server, the daemon, a player, a bare hop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from midiseed.bench.stats import Skip

PRIVATE_JACK = ("jackd", "--no-realtime", "-d", "dummy", "-r", "48000", "-p", "64")
PRIVATE_PERIOD = (64, 48000)


# ---- JACK: the server, the daemon, the player ----------------------------------------------------


def _rtmidi():
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        raise Skip("this python-rtmidi has no JACK support")
    return rtmidi


def _jack_tool(name: str) -> int | None:
    """The integer a JACK command-line tool prints (jack_bufsize, jack_samplerate), if it answers."""
    if not shutil.which(name):
        return None
    try:
        done = subprocess.run([name], capture_output=True, text=True, timeout=10)
        return int(done.stdout.split()[0]) if done.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def _jack_answers() -> bool:
    """A JACK server answers (checked with jack_lsp, or by opening an rtmidi client)."""
    if shutil.which("jack_lsp"):
        try:
            return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
    try:
        probe = _rtmidi().MidiIn(_rtmidi().API_UNIX_JACK, name="midiseed-bench-probe")
    except Exception:
        return False
    probe.delete()
    return True


class JackServer:
    """The JACK server the port sections use: the one already running, or a private dummy one.

    Use as a context manager; a private server (and the environment it needed) is undone on exit.
    Raises Skip when there is neither.
    """

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.saved_env: dict[str, str | None] = {}
        self.period_frames: int | None = None
        self.rate: int | None = None

    def _setenv(self, key: str, value: str) -> None:
        self.saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    def __enter__(self) -> JackServer:
        self._setenv("JACK_NO_START_SERVER", "1")  # never let a probe start a server behind our back
        self._setenv("JACK_NO_AUDIO_RESERVATION", "1")
        try:
            _rtmidi()
            if not _jack_answers():
                if not shutil.which("jackd"):
                    raise Skip("no JACK server runs and jackd is not installed (apt-get install jackd2)")
                self._setenv("JACK_DEFAULT_SERVER", f"midiseed-bench-{os.getpid()}")
                self.proc = subprocess.Popen(
                    PRIVATE_JACK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
                deadline = time.monotonic() + 10
                while not _jack_answers():
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        raise Skip("a private jackd (dummy driver) did not start")
                    time.sleep(0.05)
            self.period_frames = _jack_tool("jack_bufsize")
            self.rate = _jack_tool("jack_samplerate")
            if self.proc is not None and (self.period_frames is None or self.rate is None):
                self.period_frames, self.rate = PRIVATE_PERIOD
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self.proc = None
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env = {}

    @property
    def private(self) -> bool:
        return self.proc is not None

    @property
    def period_s(self) -> float | None:
        if self.period_frames and self.rate:
            return self.period_frames / self.rate
        return None

    def describe(self) -> str:
        where = "private dummy server" if self.private else "running server"
        if self.period_s is None:
            return f"{where}, period unknown"
        return f"{where}, period {self.period_frames}/{self.rate} = {self.period_s * 1000:.2f} ms"


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
    """A config.toml for a bench daemon: JACK, ports named after `name`, CPU, then `settings`."""
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


class PortWatch:
    """Two JACK probe clients that list every MIDI source and sink."""

    def __init__(self, tag: str) -> None:
        rtmidi = _rtmidi()
        self.sources = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{tag}-probe-in")
        self.sinks = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{tag}-probe-out")

    def has_source(self, fragment: str) -> bool:
        return any(fragment in p for p in self.sources.get_ports())

    def has_sink(self, fragment: str) -> bool:
        return any(fragment in p for p in self.sinks.get_ports())

    def close(self) -> None:
        self.sources.delete()
        self.sinks.delete()


class DaemonProcess:
    """`python -m midiseed serve` in its own process, with a generated config and its own port names."""

    def __init__(self, tmp: Path, model: Path, name: str, settings: dict[str, dict[str, Any]]) -> None:
        self.name = name
        self.config = tmp / f"{name}.toml"
        self.config.write_text(daemon_config(name, model, settings))
        self.log = tmp / f"{name}.log"
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        with self.log.open("w") as log_file:
            self.launched = time.monotonic()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "midiseed", "serve", "--config", str(self.config)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait_for_ports(self, watch: PortWatch, timeout: float = 30.0, poll_s: float = 0.005) -> float:
        """Seconds from launch until the output port appeared (polled every `poll_s`); then waits
        for the input port too. Raises RuntimeError (with the daemon's log) if they never come."""
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

    def peak_rss_mb(self) -> float:
        """VmHWM of the daemon process, in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise RuntimeError("no VmHWM in /proc status")

    def tail(self, chars: int = 800) -> str:
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

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then wait (SIGKILL if it does not end)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


class Player:
    """A JACK client in this process: plays into a daemon's input and records what comes out,
    each message stamped with time.monotonic() in rtmidi's callback."""

    def __init__(self, name: str) -> None:
        rtmidi = _rtmidi()
        self.received: list[tuple[float, list[int]]] = []
        self.lock = threading.Lock()
        self.midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{name}-rec")
        self.midi_in.open_port(self._index(self.midi_in.get_ports(), f"{name}-out"))
        self.midi_in.set_callback(self._got)
        self.midi_out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{name}-play")
        self.midi_out.open_port(self._index(self.midi_out.get_ports(), f"{name}-in"))
        time.sleep(0.2)  # let the connections settle

    @staticmethod
    def _index(ports: list[str], fragment: str) -> int:
        for i, p in enumerate(ports):
            if fragment in p:
                return i
        raise LookupError(f"no JACK port {fragment!r} among {ports}")

    def _got(self, event: tuple[list[int], float], _data: object = None) -> None:
        t = time.monotonic()
        with self.lock:
            self.received.append((t, event[0]))

    def send(self, message: list[int]) -> float:
        """Send one message; returns the monotonic time just before it went."""
        t = time.monotonic()
        self.midi_out.send_message(message)
        return t

    def note_on_times(self, after: float = float("-inf")) -> list[float]:
        with self.lock:
            return [t for t, m in self.received if t > after and m[0] & 0xF0 == 0x90 and m[2] > 0]

    def close(self) -> None:
        for port in (self.midi_in, self.midi_out):
            port.close_port()
            port.delete()


def sleep_until(target: float, spin_s: float = 0.001) -> None:
    """Sleep until time.monotonic() reaches `target`: a plain sleep to ~1 ms before, then spin.
    The spin yields the GIL (sleep(0)) so rtmidi's callback thread can stamp arrivals meanwhile."""
    while True:
        left = target - time.monotonic()
        if left <= 0:
            return
        time.sleep(left - spin_s if left > spin_s else 0)


def measure_jack_hop(tag: str, count: int = 50, spacing_s: float = 0.01) -> list[float]:
    """One JACK hop with nothing in between: an rtmidi output in this process straight into an
    rtmidi input in this process; seconds from send to arrival, per message."""
    rtmidi = _rtmidi()
    arrivals: list[float] = []
    rec = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{tag}-hop-rec")
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{tag}-hop-send")
    try:
        rec.open_virtual_port(f"{tag}-hop-in")
        rec.set_callback(lambda event, _data=None: arrivals.append(time.monotonic()))
        deadline = time.monotonic() + 5
        while not any(f"{tag}-hop-in" in p for p in out.get_ports()):
            if time.monotonic() > deadline:
                raise RuntimeError("the loopback port did not appear")
            time.sleep(0.01)
        out.open_port(Player._index(out.get_ports(), f"{tag}-hop-in"))
        time.sleep(0.2)
        hops = []
        for i in range(count):
            before = len(arrivals)
            t0 = time.monotonic()
            out.send_message([0x90, 60 + i % 12, 64])
            sleep_until(t0 + spacing_s)
            if len(arrivals) > before:
                hops.append(arrivals[before] - t0)
        return hops
    finally:
        for port in (rec, out):
            port.close_port()
            port.delete()


@contextmanager
def running_daemon(
    tmp: Path, model: Path, name: str, settings: dict[str, dict[str, Any]], watch: PortWatch
) -> Iterator[tuple[DaemonProcess, Player]]:
    """A daemon with its ports up and a player connected to it; both always stopped on the way out."""
    daemon = DaemonProcess(tmp, model, name, settings)
    player = None
    try:
        daemon.wait_for_ports(watch)
        player = Player(name)
        yield daemon, player
    finally:
        if player is not None:
            player.close()
        daemon.stop()


def _unique(label: str) -> str:
    return f"mbench{os.getpid()}-{label}"
