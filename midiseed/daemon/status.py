"""The running daemon's figures, for people: a periodic log line and a local socket for `midiseed status`.

A Unix socket, not a TCP port: nothing is reachable from the network. Each connection gets one
JSON object and is closed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def socket_path(configured: str, client_name: str) -> Path:
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(base) / f"midiseed-{client_name}.sock"


def snapshot(performer, tempo, started: float, model: str) -> dict:
    """Counters and timings of a performer, JSON-ready."""
    steps = sorted(performer.step_times)

    def pct(q: float) -> float:
        return round(steps[min(len(steps) - 1, int(len(steps) * q))] * 1000, 3) if steps else 0.0

    dropped = {k: v for k, v in performer.stats.items() if k.startswith(("dropped", "ignored"))}
    dropped.update({f"dropped: {k}": v for k, v in performer.listener.dropped.items()})
    if getattr(tempo, "dropped", 0):
        dropped["dropped: clock flood"] = tempo.dropped
    return {
        "pid": os.getpid(),
        "uptime_s": round(time.monotonic() - started, 1),
        "model": model,
        "mode": performer.mode,
        "tempo_bpm": round(tempo.bpm, 2),
        "tempo_source": tempo.source,
        "transport_running": bool(tempo.running),
        "notes_in": performer.stats["notes in"],
        "notes_out": performer.tracker.sent_on,
        "sounding": len(performer.tracker.sounding),
        "answers": performer.stats["answers"],
        "reseeds": performer.stats["reseeds"],
        "dropped": performer.dropped,
        "dropped_by_reason": dropped,
        "event_ms_p50": pct(0.5),
        "event_ms_p99": pct(0.99),
    }


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
        self._stop.set()
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
