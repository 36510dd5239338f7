"""Real MIDI on a JACK dummy server: the server, a daemon process, and a player/recorder client."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import rtmidi

from midiseed.bench.jack import Player as BenchPlayer

os.environ.setdefault("JACK_NO_START_SERVER", "1")
os.environ.setdefault("JACK_NO_AUDIO_RESERVATION", "1")


def server_running() -> bool:
    return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0


def start_server() -> subprocess.Popen | None:
    """Use the JACK server .ci/run started, or start a private one (None when one runs already)."""
    if shutil.which("jack_lsp") and server_running():
        return None
    if not shutil.which("jackd"):
        raise RuntimeError("the port tests need a JACK server: apt-get install jackd2")
    os.environ["JACK_DEFAULT_SERVER"] = f"midiseed-test-{os.getpid()}"
    for mode in (["-R", "-P", "70"], ["--no-realtime"]):  # real-time where allowed, as .ci/run
        proc = subprocess.Popen(
            ["jackd", *mode, "-d", "dummy", "-r", "48000", "-p", "64"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(60):
            if server_running():
                return proc
            time.sleep(0.05)
        proc.kill()
        proc.wait()
    raise RuntimeError("jackd did not start")


def wait_for_port(fragment: str, timeout: float = 20.0) -> None:
    """Until a port whose name contains `fragment` exists (sources and sinks both)."""
    probes = [
        rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="probe"),
        rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="probe"),
    ]
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if any(fragment in p for probe in probes for p in probe.get_ports()):
                return
            time.sleep(0.05)
    finally:
        for probe in probes:
            probe.delete()
    raise TimeoutError(f"no JACK port {fragment!r} after {timeout} s")


class Daemon:
    """`midiseed serve` in its own process, with its own port names."""

    def __init__(self, tmp: Path, model: Path, name: str, **settings) -> None:
        self.name = name
        sections: dict[str, list[str]] = {
            "midi": [
                'backend = "jack"',
                f'client_name = "{name}"',
                f'in_port = "{name}-in"',
                f'out_port = "{name}-out"',
            ],
            "model": [f'model = "{model}"'],
        }
        for key, (section, value) in settings.items():
            sections.setdefault(section, []).append(f"{key} = {value}")
        lines = [line for section, body in sections.items() for line in (f"[{section}]", *body)]
        self.config = tmp / f"{name}.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "midiseed", "serve", "--config", str(self.config)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(f"{name}-out")
            wait_for_port(f"{name}-in")
        except TimeoutError:
            self.proc.kill()
            raise RuntimeError(f"daemon did not open its ports:\n{self.log.read_text()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()


class Player(BenchPlayer):
    """A separate JACK client: plays into the daemon's input, records what comes out with times
    (the bench's player, plus what the tests ask of it)."""

    def phrase(self, pitches: list[int], seconds: float = 0.2) -> None:
        for p in pitches:
            self.send([0x90, p, 100])
            time.sleep(seconds)
            self.send([0x80, p, 0])

    def note_ons(self) -> list[tuple[float, int]]:
        with self.lock:
            return [(t, m[1]) for t, m in self.received if m[0] & 0xF0 == 0x90 and m[2] > 0]

    def wait_for_notes(self, count: int, timeout: float = 20) -> list[tuple[float, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ons = self.note_ons()
            if len(ons) >= count:
                return ons
            time.sleep(0.02)
        raise TimeoutError(f"only {len(self.note_ons())} notes arrived, wanted {count}")

    def left_on(self) -> set[tuple[int, int]]:
        """Notes still on at the receiver: note-ons without their own note-off (CC 123 not counted)."""
        on: set[tuple[int, int]] = set()
        with self.lock:
            for _, m in self.received:
                kind, ch = m[0] & 0xF0, m[0] & 0x0F
                if kind == 0x90 and m[2] > 0:
                    on.add((ch, m[1]))
                elif kind == 0x80 or (kind == 0x90 and m[2] == 0):
                    on.discard((ch, m[1]))
        return on

    def got_all_notes_off(self) -> bool:
        with self.lock:
            return any(m[0] & 0xF0 == 0xB0 and m[1] == 123 for _, m in self.received)
