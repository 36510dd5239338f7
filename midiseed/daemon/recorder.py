"""`--record DIR`: every phrase heard and every note played, to one .mid file per session.

The file is rewritten whole, atomically, every few seconds while something new was recorded, so
a crash loses at most those seconds and a reader never sees half a file.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path

from midiseed.errors import UserError
from midiseed.runtime.midifile import write_messages

log = logging.getLogger(__name__)


class Recorder:
    """Collects timed messages in and out; `flush()` writes them when due."""

    def __init__(self, folder: Path, start: float, every_seconds: float = 5.0) -> None:
        """Raises UserError when `folder` cannot be made or written to: found now, not at the
        first write, where it could only be logged."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):  # an existing folder may still be read-only
                pass
        except OSError as err:
            raise UserError(
                f"--record {folder} (or [log] record) is not a writable folder: {err.strerror or err}"
            ) from err
        self.path = folder / time.strftime("midiseed-%Y%m%d-%H%M%S.mid")
        self.start = start
        self.every = every_seconds
        self.heard: list[tuple[float, list[int]]] = []
        self.played: list[tuple[float, list[int]]] = []
        self._dirty = False
        self._last_flush = start
        log.info("recording to %s", self.path)

    def add(self, side: str, message: list[int], t: float) -> None:
        """One message "heard" or "played" at time t (whole channel messages only)."""
        if not message or message[0] < 0x80 or message[0] >= 0xF0:
            return  # clock, sysex and garbage are not music
        if len(message) != (2 if 0xC0 <= message[0] < 0xE0 else 3) or max(message[1:]) > 0x7F:
            return  # a message cut short or too long, or a data byte out of range: counted as dropped
        (self.heard if side == "heard" else self.played).append((t - self.start, list(message)))
        self._dirty = True

    def next_flush(self) -> float:
        """When flush() will next write (math.inf while nothing new was recorded)."""
        return self._last_flush + self.every if self._dirty else math.inf

    def flush(self, t: float, force: bool = False) -> None:
        """Rewrite the file if something new came and the last write is `every_seconds` old (or `force`)."""
        if not self._dirty or (not force and t - self._last_flush < self.every):
            return
        try:
            write_messages({"heard": self.heard, "played": self.played}, self.path)
        except OSError as err:  # a full disk must not stop the music
            log.error("could not write the recording %s: %s", self.path, err)
        self._dirty = False
        self._last_flush = t
