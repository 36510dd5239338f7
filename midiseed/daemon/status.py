"""The running daemon's figures, for people: a periodic log line and a local socket for `midiseed status`.

A Unix socket, not a TCP port: nothing is reachable from the network. Each connection gets one
JSON object and is closed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path

from midiseed.daemon.config import LIVE_DECODING, STEERING

log = logging.getLogger(__name__)


NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class Stats(Counter):
    """The run's counters ("notes in", "answers", "reseeds", "dropped: ...", "ignored: ..."), the
    listener's dropped input, and the last 1000 event times. The service owns it and hands it to
    every Performer it makes, so a reload keeps counting."""

    def __init__(self) -> None:
        super().__init__()
        self.input_dropped: Counter[str] = Counter()  # the listener's: "note-off without note-on", ...
        self.step_times: deque[float] = deque(maxlen=1000)  # seconds per generated event


def socket_path(configured: str, client_name: str) -> Path:
    """Where the status socket lives: the configured path, or one per client name."""
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"midiseed-{client_name}.sock"


def _names(pitches) -> str:
    return " ".join(f"{NOTE_NAMES[p % 12]}{p // 12 - 1}" for p in pitches) or "-"


def snapshot(performer, tempo, stats: Stats, uptime_s: float, model: str) -> dict:
    """Counters and timings of the run, JSON-ready: what the socket sends and every line is made of.

    The socket's thread calls it while the main thread plays: every container is copied in one C
    call (list(), sorted()) under the GIL before Python iterates over it."""
    steps = sorted(stats.step_times)
    gen = performer.gen
    decoding = gen.decoding  # frozen objects, each set whole by the main thread
    in_force, anchored = gen.in_force, gen.anchoring

    def pct(q: float) -> float:
        return round(steps[min(len(steps) - 1, int(len(steps) * q))] * 1000, 3) if steps else 0.0

    dropped = {k: v for k, v in list(stats.items()) if k.startswith(("dropped", "ignored"))}
    dropped.update({f"dropped: {k}": v for k, v in list(stats.input_dropped.items())})
    if getattr(tempo, "dropped", 0):
        dropped["dropped: clock flood"] = tempo.dropped
    return {
        "pid": os.getpid(),
        "uptime_s": round(uptime_s, 1),
        "model": model,
        "mode": performer.mode,
        "tempo_bpm": round(tempo.bpm, 2),
        "tempo_source": tempo.source,
        "transport_running": bool(tempo.running),
        "notes_in": stats["notes in"],
        "notes_out": performer.tracker.sent_on,
        "sounding": len(performer.tracker.sounding),
        "heard": _names(list(performer.last_heard)),
        "playing": _names(sorted(q for _, q in list(performer.tracker.sounding))),
        "answers": stats["answers"],
        "reseeds": stats["reseeds"],
        "dropped": sum(v for k, v in dropped.items() if k.startswith("dropped")),
        "dropped_by_reason": dropped,
        "event_ms_p50": pct(0.5),
        "event_ms_p99": pct(0.99),
        "steering": dict(zip(STEERING, performer.steer, strict=True)),  # as set: 0 = following the phrase
        "in_force": {
            "voices": in_force.voices,  # 0 = no cap
            "low": in_force.low,
            "high": in_force.high,
            "bass": in_force.bass,  # 127 = no ceiling
            "anchored": anchored,  # the anchor holds a long answer where the phrase was
        },
        "decoding": {k: getattr(decoding, k) for k in LIVE_DECODING},
    }


def status_line(info: dict) -> str:
    """The status in one line (the periodic log line, the last line on stopping, `midiseed status`)."""
    return (
        f"notes in {info['notes_in']}, out {info['notes_out']}, answers {info['answers']}, "
        f"dropped {info['dropped']}, event p99 {info['event_ms_p99']:.2f} ms, "
        f"tempo {info['tempo_bpm']:.1f} bpm ({info['tempo_source']})"
    )


def live_line(info: dict) -> str:
    """The terminal's live view: what is heard and played now, then the status line."""
    return f"{info['mode']} | heard {info['heard']:4} | playing {info['playing']:12} | {status_line(info)}"


class StatusServer:
    """Answers each connection on a Unix socket with `get_status()` as JSON."""

    def __init__(self, path: Path, get_status: Callable[[], dict]) -> None:
        self.path = path
        self.get_status = get_status
        self._stop = threading.Event()
        if path.exists():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(str(path))
                probe.close()
                raise OSError(f"another midiseed answers on {path}; set [log] status_socket or client_name")
            except (ConnectionRefusedError, FileNotFoundError):
                path.unlink(missing_ok=True)  # left by a daemon that was killed
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o600)
        self.sock.listen(4)
        self.sock.settimeout(0.5)
        self.thread = threading.Thread(target=self._serve, name="midiseed-status", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    conn.sendall(json.dumps(self.get_status()).encode() + b"\n")
                except OSError as err:
                    log.debug("status client went away: %s", err)

    def close(self) -> None:
        """Stop answering (at once: shutdown() ends a blocked accept()) and remove the socket file."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(2)
        self.path.unlink(missing_ok=True)


def ask(path: Path, timeout: float = 2.0) -> dict:
    """The status of the daemon answering on `path`."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        client.connect(str(path))
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    finally:
        client.close()
    return json.loads(data)
