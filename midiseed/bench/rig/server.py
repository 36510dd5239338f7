"""The JACK server: the one setup every user of the rig shares, started when none answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from midiseed.bench.stats import Skip

# The one JACK setup: a dummy driver (no sound card) at 48 kHz with 64-frame periods (1.33 ms);
# real-time at priority 70 where the system allows it, so the daemon's SCHED_FIFO 20 stays below
# JACK as on a musician's machine, else not real-time.
DRIVER = ("-d", "dummy", "-r", "48000", "-p", "64")
PERIOD = (64, 48000)
MODES = (("-R", "-P", "70"), ("--no-realtime",))
XRUN_MARKS = ("xrun", "was not finished", "not finished in time")  # jackd's log lines for an xrun


def _rtmidi():
    os.environ.setdefault("JACK_NO_START_SERVER", "1")  # a probe must never start a server
    import rtmidi

    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        raise Skip("this python-rtmidi has no JACK support")
    return rtmidi


def jack_answers() -> bool:
    """Whether a JACK server (JACK_DEFAULT_SERVER's) answers: jack_lsp, or an rtmidi probe."""
    if shutil.which("jack_lsp"):
        try:
            return subprocess.run(["jack_lsp"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False
    try:
        probe = _rtmidi().MidiIn(_rtmidi().API_UNIX_JACK, name="midiseed-rig-probe")
    except Exception:  # rtmidi raises SystemError/RtMidiError when no server runs
        return False
    probe.delete()
    return True


def jack_tool(name: str) -> int | None:
    """The integer a JACK command-line tool prints (jack_bufsize, jack_samplerate), if it answers."""
    if not shutil.which(name):
        return None
    try:
        done = subprocess.run([name], capture_output=True, text=True, timeout=10)
        return int(done.stdout.split()[0]) if done.returncode == 0 else None
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def launch_jackd(log: Path | None = None, detach: bool = False) -> subprocess.Popen:
    """Start jackd with the one setup (real-time first); returns once it answers. Raises Skip when
    jackd is not installed or will not start."""
    if not shutil.which("jackd"):
        raise Skip("no JACK server runs and jackd is not installed (apt-get install jackd2)")
    os.environ["JACK_NO_START_SERVER"] = "1"
    os.environ["JACK_NO_AUDIO_RESERVATION"] = "1"
    for mode in MODES:
        out = log.open("a") if log is not None else subprocess.DEVNULL
        proc = subprocess.Popen(
            ["jackd", *mode, *DRIVER], stdout=out, stderr=subprocess.STDOUT, start_new_session=detach
        )
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            if jack_answers():
                return proc
            time.sleep(0.05)
        proc.kill()
        proc.wait(5)
    raise Skip("jackd (dummy driver) did not start")


def start_server(log: Path | None = None) -> subprocess.Popen | None:
    """The running JACK server, or a private one named after this process (None when one runs
    already; the caller terminates what it gets)."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")
    os.environ.setdefault("JACK_NO_AUDIO_RESERVATION", "1")
    if jack_answers():
        return None
    os.environ["JACK_DEFAULT_SERVER"] = f"midiseed-rig-{os.getpid()}"
    return launch_jackd(log)


class JackServer:
    """start_server() as a context manager that also knows the period and counts xruns (in a
    private server's log). On exit a private server is stopped and the environment restored."""

    def __init__(self, log: Path | None = None) -> None:
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.saved_env = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
        self.period_frames: int | None = None
        self.rate: int | None = None

    def __enter__(self) -> JackServer:
        try:
            _rtmidi()
            self.proc = start_server(self.log)
            self.period_frames, self.rate = jack_tool("jack_bufsize"), jack_tool("jack_samplerate")
            if self.proc is not None and (self.period_frames is None or self.rate is None):
                self.period_frames, self.rate = PERIOD
        except BaseException:
            self.__exit__()
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

    def xruns(self) -> int | None:
        """xruns jackd logged so far (None: not our server, or no log)."""
        if self.proc is None or self.log is None or not self.log.exists():
            return None
        lines = self.log.read_text(errors="replace").lower().splitlines()
        return sum(any(mark in line for mark in XRUN_MARKS) for line in lines)

    @property
    def period_s(self) -> float | None:
        """One JACK period in seconds, if known."""
        return self.period_frames / self.rate if self.period_frames and self.rate else None

    def describe(self) -> str:
        """ "private dummy server, period 64/48000 = 1.33 ms" or the like."""
        where = "private dummy server" if self.proc is not None else "running server"
        if self.period_s is None:
            return f"{where}, period unknown"
        return f"{where}, period {self.period_frames}/{self.rate} = {self.period_s * 1000:.2f} ms"


def wait_for_port(fragment: str, timeout: float = 20.0) -> None:
    """Until a JACK MIDI port whose name contains `fragment` exists (sources and sinks both)."""
    watch = PortWatch("wait")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if watch.has_source(fragment) or watch.has_sink(fragment):
                return
            time.sleep(0.02)
    finally:
        watch.close()
    raise TimeoutError(f"no JACK port {fragment!r} after {timeout} s")


class PortWatch:
    """Two JACK probe clients that list every MIDI source and sink."""

    def __init__(self, tag: str) -> None:
        rtmidi = _rtmidi()
        self.sources = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{tag}-probe-in")
        self.sinks = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{tag}-probe-out")

    def has_source(self, fragment: str) -> bool:
        """A port we can read from (a client's output) contains `fragment`."""
        return any(fragment in p for p in self.sources.get_ports())

    def has_sink(self, fragment: str) -> bool:
        """A port we can write to (a client's input) contains `fragment`."""
        return any(fragment in p for p in self.sinks.get_ports())

    def close(self) -> None:
        """Close both probes."""
        self.sources.delete()
        self.sinks.delete()
