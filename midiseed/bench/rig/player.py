"""A player and recorder client on JACK, in this process."""

from __future__ import annotations

import threading
import time

from midiseed.bench.rig.server import _rtmidi


def notes_left_on(messages) -> set[tuple[int, int]]:
    """(channel, pitch) of every note-on in `messages` (raw MIDI byte lists) without its own
    note-off (CC 123 not counted)."""
    on: set[tuple[int, int]] = set()
    for m in messages:
        if len(m) != 3:
            continue
        kind, ch = m[0] & 0xF0, m[0] & 0x0F
        if kind == 0x90 and m[2] > 0:
            on.add((ch, m[1]))
        elif kind == 0x80 or (kind == 0x90 and m[2] == 0):
            on.discard((ch, m[1]))
    return on


def got_all_notes_off(messages) -> bool:
    """Whether `messages` (raw MIDI byte lists) hold a CC 123 (All Notes Off)."""
    return any(len(m) == 3 and m[0] & 0xF0 == 0xB0 and m[1] == 123 for m in messages)


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

    def phrase(self, pitches: list[int], seconds: float = 0.2) -> None:
        """Play the pitches one after another, each held `seconds`."""
        for p in pitches:
            self.send([0x90, p, 100])
            time.sleep(seconds)
            self.send([0x80, p, 0])

    def note_ons(self) -> list[tuple[float, int]]:
        """(arrival time, pitch) of every note-on received."""
        with self.lock:
            return [(t, m[1]) for t, m in self.received if m[0] & 0xF0 == 0x90 and m[2] > 0]

    def note_on_times(self, after: float = float("-inf")) -> list[float]:
        """Arrival times of the note-ons received after `after`."""
        return [t for t, _ in self.note_ons() if t > after]

    def wait_for_notes(self, count: int, timeout: float = 20) -> list[tuple[float, int]]:
        """Until `count` note-ons have arrived (TimeoutError if they do not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ons = self.note_ons()
            if len(ons) >= count:
                return ons
            time.sleep(0.02)
        raise TimeoutError(f"only {len(self.note_ons())} notes arrived, wanted {count}")

    def left_on(self) -> set[tuple[int, int]]:
        """Notes still on at the receiver: note-ons without their own note-off (CC 123 not counted)."""
        with self.lock:
            return notes_left_on([m for _, m in self.received])

    def got_all_notes_off(self) -> bool:
        """Whether a CC 123 (All Notes Off) arrived."""
        with self.lock:
            return got_all_notes_off([m for _, m in self.received])

    def close(self) -> None:
        """Cancel the callback (it must not run while the ports close), then close both ports."""
        self.midi_in.cancel_callback()
        time.sleep(0.02)
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
