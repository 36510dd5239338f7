"""The tests' view of the one JACK rig (midiseed/bench/rig): the server, a daemon process that is
up when constructed, and the player."""

from __future__ import annotations

import tomllib
from pathlib import Path

from midiseed.bench.rig import DaemonProcess, Player, start_server, wait_for_port

__all__ = ["Daemon", "Player", "start_server", "wait_for_port"]


class Daemon(DaemonProcess):
    """`midiseed serve` in its own process with its ports up. Settings are given as
    key=(section, TOML value), e.g. `mode=("performance", '"continue"'), bpm=("timing", 240)`."""

    def __init__(self, tmp: Path, model: Path, name: str, **settings: tuple[str, object]) -> None:
        sections: dict[str, dict[str, object]] = {}
        for key, (section, value) in settings.items():
            sections.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
        super().__init__(tmp, model, name, sections)
        self.wait_for_ports()
