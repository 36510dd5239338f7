"""Every note we send is tracked by (channel, pitch) until its note-off: nothing is left on."""

from __future__ import annotations

from collections.abc import Callable

ALL_NOTES_OFF = 123


class NoteTracker:
    """Sends note-ons and note-offs through `send` (raw MIDI bytes) and remembers what sounds."""

    def __init__(self, send: Callable[[list[int]], None]) -> None:
        self._send = send
        self.sounding: set[tuple[int, int]] = set()  # (channel 0..15, pitch)
        self.channels_used: set[int] = set()
        self.sent_on = 0
        self.sent_off = 0

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        if not (0 <= channel <= 15 and 0 <= pitch <= 127 and 1 <= velocity <= 127):
            raise ValueError(f"note_on channel {channel} pitch {pitch} velocity {velocity} out of range")
        if (channel, pitch) in self.sounding:
            self.note_off(channel, pitch)  # re-strike: never two ons for one off
        self.channels_used.add(channel)
        self.sounding.add((channel, pitch))
        self.sent_on += 1
        self._send([0x90 | channel, pitch, velocity])

    def note_off(self, channel: int, pitch: int) -> None:
        if (channel, pitch) not in self.sounding:
            return
        self.sounding.discard((channel, pitch))
        self.sent_off += 1
        self._send([0x80 | channel, pitch, 0])

    def release_all(self) -> None:
        """A note-off for every sounding note."""
        for channel, pitch in sorted(self.sounding):
            self.note_off(channel, pitch)

    def panic(self) -> None:
        """Note-offs for everything we sounded, then All Notes Off (CC 123) on every channel used.

        Sends what it can: a failing port must not stop the rest from going out."""
        errors = []
        for channel, pitch in sorted(self.sounding):
            try:
                self.note_off(channel, pitch)
            except Exception as err:  # keep going: every other note still needs its off
                self.sounding.discard((channel, pitch))
                errors.append(err)
        for channel in sorted(self.channels_used):
            try:
                self._send([0xB0 | channel, ALL_NOTES_OFF, 0])
            except Exception as err:
                errors.append(err)
        if errors:
            raise errors[0]
