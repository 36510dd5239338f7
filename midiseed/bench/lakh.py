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

ROLES = ("bass", "chords", "lead")
LONG_NOTE_TICKS = 268_000_000  # Lakh has files whose notes end this long after they start


def _vlq_matrix(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Variable-length quantities of `values` (< 2**28) as an (n, 4) byte matrix, right-aligned,
    and the mask of its bytes that are used."""
    v = values.astype(np.int64)
    n_bytes = 1 + (v >= 1 << 7) + (v >= 1 << 14) + (v >= 1 << 21)
    mat = np.empty((len(v), 4), dtype=np.int64)
    for k in range(4):  # column 3 - k holds bits 7k..7k+6, with the continuation bit unless k == 0
        mat[:, 3 - k] = (v >> (7 * k)) & 0x7F | (0x80 if k else 0)
    mask = np.arange(4) >= (4 - n_bytes)[:, None]
    return mat.astype(np.uint8), mask


def _tracks_bytes(track: np.ndarray, ticks: np.ndarray, status: np.ndarray, d1, d2, n_tracks: int) -> bytes:
    """MTrk chunks of channel messages: events sorted by (track, tick), each track closed by an
    end-of-track. Program changes (0xC0) have one data byte, the rest two."""
    first = np.r_[True, track[1:] != track[:-1]]
    delta = np.where(first, ticks, ticks - np.r_[0, ticks[:-1]])
    vlq, vmask = _vlq_matrix(delta)
    mat = np.concatenate([vlq, np.stack([status, d1, d2], axis=1).astype(np.uint8)], axis=1)
    one_data = (status & 0xF0) == 0xC0
    full = np.concatenate([vmask, np.ones((len(ticks), 2), dtype=bool), ~one_data[:, None]], axis=1)
    body = mat[full].tobytes()
    per_track = np.bincount(track, weights=full.sum(axis=1), minlength=n_tracks).astype(np.int64)
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
        body += _vlq_bytes(t - now) + b"\xff\x51\x03" + tempo.to_bytes(3, "big")
        now = t
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def _vlq_bytes(value: int) -> bytes:
    mat, mask = _vlq_matrix(np.array([value]))
    return mat[mask].tobytes()


def _track(rng: np.random.Generator, role: str, n: int, steps: int, spb: float, ch: int, odd: dict) -> tuple:
    """One track of `n` notes over `steps` sixteenths: notes, program and controller changes."""
    if role == "drums":
        onset = rng.integers(0, steps, n)
        pitch = rng.choice([35, 36, 38, 40, 42, 44, 46, 49, 51, 57], n)
        dur = np.full(n, 1)
    else:
        lo, hi, voices = {"bass": (28, 52, 1), "chords": (48, 76, 3), "lead": (60, 88, 1)}[role]
        groups = max(1, n // voices)
        onset = np.repeat(rng.integers(0, steps, groups), voices)[:n]
        root = rng.integers(lo, hi - 7, groups)
        pitch = (np.repeat(root, voices) + np.tile([0, 4, 7][:voices], groups))[:n]
        dur = np.repeat(rng.choice([1, 2, 2, 4, 4, 8, 16], groups), voices)[:n]
        n = len(onset)
    on = (onset * spb).astype(np.int64)
    off = ((onset + dur) * spb).astype(np.int64)
    if odd["humanise"]:
        on = np.maximum(0, on + rng.integers(-3, 4, n))
        off = np.maximum(on + 1, off + rng.integers(-3, 4, n))
    if odd["long_note"] and ch == 0:
        off[0] = on[0] + LONG_NOTE_TICKS
    keep_off = np.ones(n, dtype=bool)
    if odd["left_on"] and n > 10:
        keep_off[rng.integers(0, n, rng.integers(1, 6))] = False
    vel = rng.integers(40, 120, n)
    off_status = 0x90 if odd["vel0_off"] else 0x80
    head_ticks = np.zeros(4, dtype=np.int64)
    head_status = np.array([0xC0 | ch, 0xB0 | ch, 0xB0 | ch, 0xB0 | ch])
    head_d1 = np.array([int(rng.integers(0, 128)), 7, 10, 64])
    head_d2 = np.array([0, int(rng.integers(60, 128)), int(rng.integers(0, 128)), 0])
    ticks = np.concatenate([head_ticks, off[keep_off], on])
    kind = np.concatenate([np.zeros(4), np.ones(int(keep_off.sum())), np.full(n, 2)])  # offs before ons
    status = np.concatenate(
        [head_status, np.full(int(keep_off.sum()), off_status | ch), np.full(n, 0x90 | ch)]
    )
    d1 = np.concatenate([head_d1, pitch[keep_off], pitch])
    d2 = np.concatenate([head_d2, np.zeros(int(keep_off.sum())), vel])
    if odd["second_program"]:
        ticks = np.append(ticks, int(on.max()) // 2)
        kind, status = np.append(kind, 0), np.append(status, 0xC0 | ch)
        d1, d2 = np.append(d1, int(rng.integers(0, 128))), np.append(d2, 0)
    return ticks, kind, status, d1, d2


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
    drums = rng.random() < 0.85
    roles = ["drums"] if drums else []
    roles += [ROLES[i] for i in rng.integers(0, 3, n_tracks - len(roles)).tolist()]
    share = rng.dirichlet(np.ones(len(roles)) * 2)
    if drums:
        share = np.concatenate([[0.35], share[1:] / share[1:].sum() * 0.65])
    parts = []
    melodic_ch = [c for c in range(16) if c != 9]
    for k, role in enumerate(roles):
        ch = 9 if role == "drums" else melodic_ch[k % 15]
        parts.append(_track(rng, role, max(4, int(notes * share[k])), steps, spb, ch, odd))
    track = np.repeat(np.arange(len(parts)), [len(p[0]) for p in parts])
    ticks, kind, status, d1, d2 = (np.concatenate(cols) for cols in zip(*parts))
    order = np.lexsort((kind, ticks, track))  # offs before ons at the same tick
    body = _tracks_bytes(track[order], ticks[order], status[order], d1[order], d2[order], len(parts))
    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(parts) + 1, tpb)
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
