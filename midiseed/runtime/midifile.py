"""MIDI files <-> grid notes. The one place that imports symusic (reading) and mido (writing).

symusic parses a Bach chorale in about 0.1 ms, mido in 4.6-27 ms and music21 in ~317 ms on this
machine (DESIGN.md), and symusic reads two of the 72 odd test files that mido refuses while
raising a clean exception on the other eight; so it reads, and mido, already needed for live
ports, writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from midiseed.errors import UserError
from midiseed.runtime.codec import Grid

MAX_FILE_BYTES = 64 * 1024 * 1024  # a "MIDI file" larger than this is not one we want to learn from
MAX_NOTES = 2_000_000


class MidiReadError(UserError):
    """A MIDI file that cannot be read; the message says why."""


def read_notes(path: str | Path, grid: Grid = Grid(), include_drums: bool = False) -> np.ndarray:
    """Notes of a MIDI file quantised to the grid: int32 array (N x 3: pitch, start step, end step).

    Time is read in beats (ticks / ticks-per-quarter), so tempo changes do not move the grid.
    Drum tracks (channel 10) are dropped unless `include_drums`. Type 2 files play their
    tracks one after another. Raises MidiReadError with the reason for a file it cannot read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise MidiReadError(f"cannot open: {err.strerror}") from err
    if size > MAX_FILE_BYTES:
        raise MidiReadError(f"too large ({size} bytes > {MAX_FILE_BYTES})")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise MidiReadError(f"cannot read: {err.strerror}") from err
    steps = notes_from_bytes(data, grid, include_drums)
    if len(steps) > MAX_NOTES:
        raise MidiReadError(f"too many notes ({len(steps)} > {MAX_NOTES})")
    # int32 for the callers that keep notes; a step count past int32 only comes from a broken file
    return np.clip(steps, 0, np.iinfo(np.int32).max).astype(np.int32)


def notes_from_bytes(data: bytes, grid: Grid = Grid(), include_drums: bool = False) -> np.ndarray:
    """`read_notes` of a file's bytes, as int64 steps (N x 3, sorted by start then pitch; the
    first onset is step 0). Raises MidiReadError with the parser's reason."""
    import symusic

    if len(data) > MAX_FILE_BYTES:
        raise MidiReadError(f"too large ({len(data)} bytes > {MAX_FILE_BYTES})")
    try:
        score = symusic.Score.from_midi(data)
    except Exception as err:  # symusic raises RuntimeError/ValueError with the parser's reason
        reason = str(err).split(": iostream")[0].replace("MiniMidi: ", "")
        raise MidiReadError(reason or type(err).__name__) from err
    tpq = score.ticks_per_quarter
    if tpq <= 0:
        raise MidiReadError(f"unsupported time division (ticks per quarter {tpq})")
    chunks = []
    offset = 0
    sequential = _midi_type(data[:10]) == 2
    for track in score.tracks:
        if track.is_drum and not include_drums:
            continue
        arr = track.notes.numpy()
        if len(arr["time"]) == 0:
            continue
        start = arr["time"].astype(np.int64) + offset
        end = start + arr["duration"].astype(np.int64)
        chunks.append(np.stack([arr["pitch"].astype(np.int64), start, end], axis=1))
        if sequential:
            offset = int(end.max())
    if not chunks:
        return np.zeros((0, 3), dtype=np.int64)
    ticks = np.concatenate(chunks)
    steps = np.empty_like(ticks)
    steps[:, 0] = ticks[:, 0]
    steps[:, 1:] = np.rint(ticks[:, 1:] * grid.steps_per_beat / tpq)
    steps[:, 2] = np.maximum(steps[:, 2], steps[:, 1] + 1)  # zero-length notes last one step
    steps[:, 1:] -= steps[:, 1].min()  # leading silence carries no music
    order = np.lexsort((steps[:, 0], steps[:, 1]))
    return steps[order]


def _midi_type(head: bytes) -> int:
    return int.from_bytes(head[8:10], "big") if head[:4] == b"MThd" and len(head) == 10 else 1


def write_notes(
    notes: np.ndarray,
    path: str | Path,
    grid: Grid = Grid(),
    bpm: float = 120.0,
    velocity: int = 80,
    channel: int = 0,
    ticks_per_beat: int = 480,
) -> None:
    """Grid notes (pitch, start, end) -> a type 1 MIDI file at `bpm`."""
    import mido

    ticks_per_step = ticks_per_beat // grid.steps_per_beat
    timeline = []
    for pitch, start, end in np.asarray(notes).tolist():
        timeline.append((end * ticks_per_step, 0, pitch))  # offs first at the same tick
        timeline.append((start * ticks_per_step, 1, pitch))
    timeline.sort()
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    now = 0
    for tick, is_on, pitch in timeline:
        kind = "note_on" if is_on else "note_off"
        track.append(
            mido.Message(
                kind, note=pitch, velocity=velocity if is_on else 0, channel=channel, time=tick - now
            )
        )
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    mid.tracks.append(track)
    mid.save(str(path))


def write_messages(
    tracks: dict[str, list[tuple[float, list[int]]]], path: str | Path, ticks_per_second: int = 960
) -> None:
    """Timed raw messages (seconds, bytes) as a type 1 MIDI file, one named track each, at 120 bpm
    (so a tick is 1/960 s with 480 ticks a beat). Bytes that are not a channel message are skipped.
    Written to a temporary file and moved into place, so a reader never sees half a file."""
    import os

    import mido

    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_second // 2)
    for name, events in tracks.items():
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        if not mid.tracks:
            track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
        now = 0
        for seconds, data in events:
            try:
                msg = mido.Message.from_bytes(data)
            except (ValueError, TypeError, IndexError):  # mido's IndexError: a message cut short
                continue
            if msg.is_realtime or msg.type == "sysex":
                continue
            tick = max(now, round(seconds * ticks_per_second))
            track.append(msg.copy(time=tick - now))
            now = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.tracks.append(track)
    tmp = Path(f"{path}.tmp")
    mid.save(str(tmp))
    os.replace(tmp, path)
