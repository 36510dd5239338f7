"""The tests' view of the one JACK rig (midiseed/bench/rig): the server, a daemon process that is
up when constructed, and the player."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from midiseed.bench.rig import DaemonProcess, Player, start_server, wait_for_port
from midiseed.bench.rig.player import got_all_notes_off, notes_left_on
from midiseed.daemon.jackports import JackPorts

__all__ = ["Daemon", "Player", "Witness", "start_server", "wait_for_port"]


class Daemon(DaemonProcess):
    """`midiseed serve` in its own process with its ports up. Settings are given as
    key=(section, TOML value), e.g. `mode=("performance", '"continue"'), bpm=("timing", 240)`."""

    def __init__(self, tmp: Path, model: Path, name: str, **settings: tuple[str, object]) -> None:
        sections: dict[str, dict[str, object]] = {}
        for key, (section, value) in settings.items():
            sections.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
        super().__init__(tmp, model, name, sections)
        self.wait_for_ports()


class Witness:
    """A second recorder of a daemon's output: midiseed's own C JACK client (`_jackmidi`), whose
    process thread copies every message into a 256 KiB ring and counts what it had no room for,
    and a thread here that empties the ring. The Player's python-rtmidi input runs Python in
    JACK's real-time thread and was seen to miss messages on a loaded machine (midiseed/bench/soak.py);
    this one either sees every message or says how many it dropped."""

    def __init__(self, name: str) -> None:
        self.messages: list[list[int]] = []
        self.ports = JackPorts(f"witness-{name}", "rec-in", "rec-out", connect_from=(f"{name}-out",))
        if self.ports.named[0].port is None:
            self.ports.close()
            raise LookupError(f"no JACK port {name}-out to witness")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.wait(0.002):
            self.messages.extend(m for _, m in self.ports.poll())

    def close(self) -> None:
        """Stop draining (what is still in the ring is read first), then close the client."""
        self._stop.set()
        self._thread.join()
        self.messages.extend(m for _, m in self.ports.poll())
        self.ports.close()

    @property
    def dropped(self) -> int:
        """Messages that arrived while the ring was full."""
        return self.ports.dropped[0]

    def left_on(self) -> set[tuple[int, int]]:
        """(channel, pitch) of every note-on without its own note-off (CC 123 not counted)."""
        return notes_left_on(self.messages)

    def got_all_notes_off(self) -> bool:
        """Whether a CC 123 (All Notes Off) arrived."""
        return got_all_notes_off(self.messages)
