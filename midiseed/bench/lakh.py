"""Lakh-like MIDI files, fast: raw bytes built with numpy, no mido objects.

    python -m midiseed.bench.lakh OUT_DIR --files N [--workers 2] [--seed S]

Files go to OUT_DIR/<0..f>/<32 hex digits>.mid, as Lakh's LMD-full is laid out, so the first hex
digit is the *collection*. The same seed and index always give the same file.

Per-file statistics, and why (Raffel's thesis and the LMD-full files as commonly described:
multi-track pop/rock arrangements, mostly 3-14 tracks, ~4,000-5,000 notes, ~40 KB a file):

- ticks per beat: 480 (60%), 384 (20%), 96 (15%), 192 or 960 (5%): the sequencers Lakh came from.
- tracks: 3-14 pitched-or-drum tracks, mode ~7, plus a conductor track with tempo, time signature
  and a name; a drum track (channel 10) in 85% of files, holding ~35% of the notes.
- notes: log-normal around 4,500 a file (sigma 0.45, clipped 200..30,000); melodic tracks are
  bass (mono-ish, low), chords (3-4 notes, mid) or lead (high), on a 16th grid, humanised by a
  few ticks in 30% of files; note-offs as 0x80 or as note-on velocity 0 (half each).
- length: log-normal around 100 bars of 4/4 (sigma 0.35); 0.3% are very long (1,000-3,000 bars).
- tempo: 60-180 bpm, 1-4 tempo changes; a program change per track, a second one in 10%;
  volume and pan controllers at the start.
- oddities: 2% of files leave 1-5 notes on (no note-off); re-struck notes (the same pitch
  struck again while it sounds) arise in every file from overlapping chords and leads;
  0.1% hold one note 268,000,000 ticks; 0.3% are malformed (truncated, or a wrong chunk length).
"""

from __future__ import annotations

import argparse
import hashlib
import struct
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

LONG_NOTE_TICKS = 268_000_000  # Lakh has files whose notes end this long after they start


def _tracks_bytes(track: np.ndarray, ticks: np.ndarray, status: np.ndarray, d1, d2, n_tracks: int) -> bytes:
    """MTrk chunks of channel messages: events sorted by (track, tick), each track closed by an
    end-of-track. Delta times are variable-length quantities (< 2**28); program changes (0xC0)
    have one data byte, the rest two."""
    first = np.r_[True, track[1:] != track[:-1]]
    delta = np.where(first, ticks, ticks - np.r_[0, ticks[:-1]])
    mat = np.empty((len(ticks), 7), dtype=np.uint8)  # 4 bytes of delta (right-aligned), 3 of message
    for k in range(4):  # column 3 - k holds bits 7k..7k+6, with the continuation bit unless k == 0
        mat[:, 3 - k] = (delta >> (7 * k)) & 0x7F | (0x80 if k else 0)
    mat[:, 4], mat[:, 5], mat[:, 6] = status, d1, d2
    n_bytes = 1 + (delta >= 1 << 7) + (delta >= 1 << 14) + (delta >= 1 << 21)
    used = np.empty((len(ticks), 7), dtype=bool)
    used[:, :4] = np.arange(4) >= (4 - n_bytes)[:, None]
    used[:, 4:6] = True
    used[:, 6] = (status & 0xF0) != 0xC0
    body = mat[used].tobytes()
    per_track = np.bincount(track, weights=used.sum(axis=1), minlength=n_tracks).astype(np.int64)
    out, at = [], 0
    for size in per_track.tolist():
        chunk = body[at : at + size] + b"\x00\xff\x2f\x00"
        out.append(b"MTrk" + struct.pack(">I", len(chunk)) + chunk)
        at += size
    return b"".join(out)


def _conductor(rng: np.random.Generator, tpb: int, total_ticks: int) -> bytes:
    body = b"\x00\xff\x03\x04song" + b"\x00\xff\x58\x04\x04\x02\x18\x08"
    now = 0
    changes = sorted(rng.integers(0, max(1, total_ticks), rng.integers(0, 4)).tolist())
    for t in [0, *changes]:
        tempo = int(60_000_000 / rng.uniform(60, 180))
        body += vlq_bytes(t - now) + b"\xff\x51\x03" + tempo.to_bytes(3, "big")
        now = t
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def vlq_bytes(value: int) -> bytes:
    """A MIDI variable-length quantity (delta times, lengths), most significant group first."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(reversed(out))


# per role: lowest root, highest root, voices (notes struck together); drums draw from DRUM_KIT
ROLE_RANGE = np.array([(28, 45, 1), (48, 69, 3), (60, 81, 1), (0, 0, 1)])  # bass, chords, lead, drums
DRUM_KIT = np.array([35, 36, 38, 40, 42, 44, 46, 49, 51, 57])
DURATIONS = np.array([1, 2, 2, 4, 4, 8, 16])  # in sixteenths
CHORD = np.array([0, 4, 7])


def _notes(rng: np.random.Generator, role: np.ndarray, count: np.ndarray, steps: int) -> tuple:
    """Every track's notes at once: (track, onset sixteenth, length in sixteenths, pitch)."""
    lo, hi, voices = ROLE_RANGE[role].T
    groups = np.maximum(1, count // voices)
    g_track = np.repeat(np.arange(len(role)), groups)
    n_groups = len(g_track)
    onset = rng.integers(0, steps, n_groups)
    root = lo[g_track] + (rng.random(n_groups) * (hi - lo)[g_track]).astype(np.int64)
    drum = role[g_track] == 3
    root[drum] = DRUM_KIT[rng.integers(0, len(DRUM_KIT), int(drum.sum()))]
    dur = np.where(drum, 1, DURATIONS[rng.integers(0, len(DURATIONS), n_groups)])
    v = voices[g_track]
    note_group = np.repeat(np.arange(n_groups), v)
    within = np.arange(len(note_group)) - np.repeat(np.cumsum(v) - v, v)
    return g_track[note_group], onset[note_group], dur[note_group], root[note_group] + CHORD[within]


def lakh_like(seed: int, index: int) -> bytes:
    """The bytes of Lakh-like file number `index` for `seed` (see the module docstring)."""
    rng = np.random.default_rng([seed, index])
    tpb = int(rng.choice([480, 384, 96, 192, 960], p=[0.6, 0.2, 0.15, 0.025, 0.025]))
    spb = tpb / 4  # ticks per sixteenth
    u = rng.random()
    odd = {
        "humanise": rng.random() < 0.3,
        "vel0_off": rng.random() < 0.5,
        "left_on": rng.random() < 0.02,
        "long_note": u < 0.001,
        "second_program": rng.random() < 0.1,
    }
    bars = int(np.clip(rng.lognormal(np.log(100), 0.35), 16, 400))
    notes = int(np.clip(rng.lognormal(np.log(4500), 0.45), 200, 30_000))
    if 0.001 <= u < 0.004:  # a very long file
        bars = int(rng.integers(1000, 3001))
        notes = notes * bars // 100
    steps = bars * 16
    n_tracks = int(np.clip(rng.binomial(14, 0.45), 3, 14))
    drums = int(rng.random() < 0.85)
    share = rng.dirichlet(np.ones(n_tracks) * 2)
    if drums:
        share = np.concatenate([[0.35], share[1:] / share[1:].sum() * 0.65])
    role = np.array([3] * drums + [int(r) for r in rng.integers(0, 3, n_tracks - drums)])
    count = np.maximum(4, (notes * share).astype(np.int64))
    track, onset, dur, pitch = _notes(rng, role, count, steps)
    n = len(track)
    ch = np.where(role == 3, 9, np.array([c for c in range(16) if c != 9] * 2)[: len(role)])
    on = (onset * spb).astype(np.int64)
    off = ((onset + dur) * spb).astype(np.int64)
    if odd["humanise"]:
        on = np.maximum(0, on + rng.integers(-3, 4, n))
        off = np.maximum(on + 1, off + rng.integers(-3, 4, n))
    if odd["long_note"]:
        off[0] = on[0] + LONG_NOTE_TICKS
    keep_off = np.ones(n, dtype=bool)
    if odd["left_on"]:
        keep_off[rng.integers(0, n, rng.integers(1, 6))] = False
    vel = rng.integers(40, 120, n)
    off_status = 0x90 if odd["vel0_off"] else 0x80  # note-on velocity 0, or a note-off
    k = len(role)
    # per track at tick 0: program, volume, pan, sustain off; in 10% a second program mid-song
    head_track = np.repeat(np.arange(k), 4)
    head_status = np.repeat(ch, 4) | np.tile([0xC0, 0xB0, 0xB0, 0xB0], k)
    head_d1 = np.stack([rng.integers(0, 128, k), np.full(k, 7), np.full(k, 10), np.full(k, 64)], 1).ravel()
    head_d2 = np.stack(
        [np.zeros(k, int), rng.integers(60, 128, k), rng.integers(0, 128, k), np.zeros(k, int)], 1
    )
    head_ticks = np.zeros(4 * k, dtype=np.int64)
    if odd["second_program"]:
        head_ticks[0] = int(on.max()) // 2
    cols = (  # track, tick, kind (offs before ons at the same tick), status, data 1, data 2
        np.concatenate([head_track, track[keep_off], track]),
        np.concatenate([head_ticks, off[keep_off], on]),
        np.concatenate([np.zeros(4 * k, int), np.ones(int(keep_off.sum()), int), np.full(n, 2)]),
        np.concatenate([head_status, off_status | ch[track[keep_off]], 0x90 | ch[track]]),
        np.concatenate([head_d1, pitch[keep_off], pitch]),
        np.concatenate([head_d2.ravel(), np.zeros(int(keep_off.sum()), int), vel]),
    )
    # one int64 per event, sorted once: track 4 bits | tick 30 | kind 2 | status 8 | data 7 + 7
    packed = cols[0] << 54 | cols[1] << 24 | cols[2] << 22 | cols[3] << 14 | cols[4] << 7 | cols[5]
    packed.sort()
    tr, tk = packed >> 54, (packed >> 24) & ((1 << 30) - 1)
    st, a1, a2 = (packed >> 14) & 0xFF, (packed >> 7) & 0x7F, packed & 0x7F
    body = _tracks_bytes(tr, tk, st, a1, a2, k)
    head = b"MThd" + struct.pack(">IHHH", 6, 1, k + 1, tpb)
    data = head + _conductor(rng, tpb, int(steps * spb)) + body
    if 0.004 <= u < 0.007:  # malformed: truncated, or a track length that lies
        if rng.random() < 0.5:
            data = data[: int(rng.integers(14, len(data)))]
        else:
            at = data.index(b"MTrk", 14) + 4
            data = data[:at] + struct.pack(">I", len(data) * 3) + data[at + 4 :]
    return data


def file_name(seed: int, index: int) -> str:
    """'<hex digit>/<32 hex digits>.mid', like LMD-full's layout."""
    digest = hashlib.md5(f"{seed}:{index}".encode()).hexdigest()
    return f"{digest[0]}/{digest}.mid"


def _write_range(args: tuple[Path, int, int, int]) -> int:
    out, seed, start, stop = args
    total = 0
    for i in range(start, stop):
        data = lakh_like(seed, i)
        path = out / file_name(seed, i)
        path.write_bytes(data)
        total += len(data)
    return total


def generate(out: Path, files: int, workers: int = 2, seed: int = 0) -> int:
    """Write `files` Lakh-like files under `out`; returns the bytes written."""
    out = Path(out)
    for d in "0123456789abcdef":
        (out / d).mkdir(parents=True, exist_ok=True)
    step = 500
    jobs = [(out, seed, a, min(files, a + step)) for a in range(0, files, step)]
    if workers <= 1:
        return sum(_write_range(j) for j in jobs)
    with get_context("spawn").Pool(workers) as pool:
        return sum(pool.imap_unordered(_write_range, jobs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.lakh", description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    total = generate(args.out, args.files, args.workers, args.seed)
    dt = time.monotonic() - t0
    print(
        f"wrote {args.files} Lakh-like files ({total / args.files / 1024:.1f} KB a file, "
        f"{total / 1e9:.2f} GB) to {args.out} in {dt:.1f} s ({args.files / dt:.0f} files/s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
