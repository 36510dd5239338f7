"""Fuzz `midiseed data tokenize`: extreme files plus mutated copies of real ones, into a token store.

    python -m midiseed.bench.fuzz_files --seed 0 --count 500 [--out DIR] [--guard 600]

The folder holds (1) the extreme files of `extreme_files` (a note 268M ticks long, a chain of
notes past 2**32 ticks, 10,000 bars, 300,000 notes, 128-voice chords, only note-ons, tempos of
1 us and 16.7 s a beat, divisions of 1 and 32,767 ticks and SMPTE, 1,000 tracks, 65,535 tracks
declared, none) and (2) `--count` copies of shared/test-midi-files/midi/*.mid and of 20 Lakh-like
files (`midiseed.bench.lakh`) with one to three mutations each (byte flips, truncation,
duplicated/removed/swapped chunks, huge or wrong length fields, random insertions, odd header
fields, overlong delta times, repeated regions). It goes through `tokenize(folder, store,
workers=2)` with a per-file time limit, under an overall wall-clock guard and an address-space
limit; the run passes when it returns, every file is stored or skipped with a reason, and
tokenising each file again in this process agrees with the pool. Crashes and time-outs are
counted and shown (they are contained, so they only fail the run with --strict); cuts are listed
with their reasons; peak RSS of this process and of the workers is printed. With --out the files
and a manifest (file -> source and mutations) stay there to reproduce a finding. Exit status 0 on
success, 1 on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from midiseed.bench.lakh import vlq_bytes

SOURCES = Path(__file__).resolve().parents[2].parent / "shared" / "test-midi-files" / "midi"
HUGE = [0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, 0x10000000, 0x01000000]


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each chunk as the length fields say, clipped to the data."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        end = min(len(data), pos + 8 + int.from_bytes(data[pos + 4 : pos + 8], "big"))
        out.append((pos, end))
        pos = end
    return out


def _body(rng: random.Random, d: bytearray) -> int:
    """A random position, past the header chunk most of the time (so the parser gets further)."""
    if len(d) > 22 and rng.random() < 0.85:
        return rng.randrange(14, len(d))
    return rng.randrange(len(d))


def _pick_chunk(rng: random.Random, d: bytearray) -> tuple[int, int]:
    """A chunk, a track most of the time."""
    chunks = _chunks(d) or [(0, len(d))]  # shorter than a chunk header: all of it
    tracks = [c for c in chunks if c[0] > 0]
    return rng.choice(tracks if tracks and rng.random() < 0.9 else chunks)


def _flip(rng: random.Random, d: bytearray) -> str:
    n = rng.randint(1, 8)
    for _ in range(n):
        i = _body(rng, d)
        d[i] = rng.randrange(256) if rng.random() < 0.5 else d[i] ^ (1 << rng.randrange(8))
    return f"flip {n}"


def _truncate(rng: random.Random, d: bytearray) -> str:
    cut = _body(rng, d)
    del d[cut:]
    return f"truncate at {cut}"


def _insert(rng: random.Random, d: bytearray) -> str:
    at = _body(rng, d)
    n = rng.choice([1, 2, 3, 7, 64, 300])
    d[at:at] = bytes(rng.randrange(256) for _ in range(n))
    return f"insert {n} at {at}"


def _dup_chunk(rng: random.Random, d: bytearray) -> str:
    a, b = _pick_chunk(rng, d)
    times = rng.choice([1, 1, 2, 20])
    d[b:b] = bytes(d[a:b]) * times
    return f"duplicate chunk at {a} x{times}"


def _drop_chunk(rng: random.Random, d: bytearray) -> str:
    a, b = _pick_chunk(rng, d)
    del d[a:b]
    return f"remove chunk at {a}"


def _swap_chunks(rng: random.Random, d: bytearray) -> str:
    chunks = _chunks(d)
    if len(chunks) < 2:
        return _flip(rng, d)
    tracks = [c for c in chunks if c[0] > 0]
    if len(tracks) < 2 and rng.random() < 0.8:
        return _flip(rng, d)  # swapping the header away is one mutation among many, not most
    (a1, b1), (a2, b2) = sorted(rng.sample(tracks if len(tracks) >= 2 else chunks, 2))
    d[a1:b2] = d[a2:b2] + d[b1:a2] + d[a1:b1]
    return f"swap chunks at {a1} and {a2}"


def _length(rng: random.Random, d: bytearray) -> str:
    a, b = _pick_chunk(rng, d)
    if rng.random() < 0.6:
        value = rng.choice(HUGE)
    else:  # plausible but wrong: a little short or long, or zero
        value = max(0, b - a - 8 + rng.choice([-50, -3, -1, 1, 2, 100, -(b - a)]))
    d[a + 4 : a + 8] = value.to_bytes(4, "big")
    return f"length of chunk at {a} = {value:#x}"


def _header(rng: random.Random, d: bytearray) -> str:
    field = rng.choice(["format", "ntrks", "division"])
    at = {"format": 8, "ntrks": 10, "division": 12}[field]
    value = {
        "format": rng.choice([0, 1, 2, 3, 0xFFFF]),
        "ntrks": rng.choice([0, 1, 2, 100, 0xFFFF]),
        "division": rng.choice([0, 1, 0x7FFF, 0x8000, 0xE728, 0xFFFF, 96]),
    }[field]
    d[at : at + 2] = value.to_bytes(2, "big")
    return f"header {field} = {value:#x}"


def _vlq(rng: random.Random, d: bytearray) -> str:
    """An overlong or maximal delta time where an event could start."""
    tracks = [(a, b) for a, b in _chunks(d) if d[a : a + 4] == b"MTrk" and b - a > 8]
    a, b = rng.choice(tracks) if tracks else (0, len(d))
    at = rng.randrange(min(a + 8, len(d)), max(min(a + 8, len(d)), b) + 1)
    blob = rng.choice([b"\xff\xff\xff\x7f", b"\x8f" * 12 + b"\x00", b"\xff\xff\xff\xff\xff", b"\x80"])
    d[at:at] = blob
    return f"delta {blob.hex()} at {at}"


def _repeat(rng: random.Random, d: bytearray) -> str:
    """A region repeated many times (a storm of events; most files stay well under 1 MB)."""
    a = _body(rng, d)
    n = rng.randint(1, 64)
    times = rng.choice([10, 100, 2000])
    d[a:a] = bytes(d[a : a + n]) * times
    return f"repeat {n} bytes at {a} x{times}"


MUTATIONS = [
    _flip,
    _truncate,
    _insert,
    _dup_chunk,
    _drop_chunk,
    _swap_chunks,
    _length,
    _header,
    _vlq,
    _repeat,
]


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, list[str]]:
    d = bytearray(data)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        if not d:
            d.extend(b"MThd")
        done.append(rng.choice(MUTATIONS)(rng, d))
    return bytes(d), done


def _smf(division: int, tracks: list[bytes], ntrks: int | None = None) -> bytes:
    """A type 1 file of these track bodies (each gets its end-of-track)."""
    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks) if ntrks is None else ntrks, division)
    body = b"".join(b"MTrk" + struct.pack(">I", len(t) + 4) + t + b"\x00\xff\x2f\x00" for t in tracks)
    return head + body


def _notes(pitches: list[int], length: int, gap: int = 0, offs: bool = True) -> bytes:
    """Notes one after another, each `length` ticks, `gap` ticks apart (delta times as VLQs)."""
    out = bytearray()
    for p in pitches:
        out += vlq_bytes(gap) + bytes([0x90, p, 80])
        if offs:
            out += vlq_bytes(length) + bytes([0x80, p, 0])
    return bytes(out)


def extreme_files() -> dict[str, bytes]:
    """Files at the edges of what MIDI can say: durations, sizes, tempos, divisions, track counts."""
    tempo = lambda us: b"\x00\xff\x51\x03" + us.to_bytes(3, "big")  # noqa: E731
    chord = b"".join(b"\x00" + bytes([0x90, p, 80]) for p in range(128))
    chord += b"\x60" + b"".join(b"\x00" + bytes([0x80, p, 0]) for p in range(128))[1:]
    scale = _notes(list(range(60, 72)), 240)
    return {
        "x-long-note-268M-ticks.mid": _smf(480, [_notes([60], 0x0FFFFFFF)]),
        "x-notes-past-2-32-ticks.mid": _smf(96, [_notes([60 + k % 12 for k in range(40)], 0x0FFFFFFF)]),
        "x-10000-bars.mid": _smf(480, [_notes([60 + k % 12 for k in range(10_000)], 480, gap=3 * 480)]),
        "x-300000-notes.mid": _smf(96, [_notes([40 + k % 40 for k in range(300_000)], 12)]),
        "x-128-voice-chords.mid": _smf(96, [chord * 500]),
        "x-only-note-ons.mid": _smf(
            480, [_notes([30 + k % 60 for k in range(5000)], 0, gap=120, offs=False)]
        ),
        "x-tempo-1us.mid": _smf(480, [tempo(1) + scale]),
        "x-tempo-16s.mid": _smf(480, [tempo(0xFFFFFF) + scale]),
        "x-division-1.mid": _smf(1, [_notes(list(range(60, 72)), 1, gap=0x0FFFFFFF)]),
        "x-division-32767.mid": _smf(0x7FFF, [_notes(list(range(60, 72)), 3)]),
        "x-division-smpte.mid": _smf(0xE728, [scale]),
        "x-1000-tracks.mid": _smf(480, [_notes([40 + k % 50], 240) for k in range(1000)]),
        "x-65535-tracks-declared.mid": _smf(480, [scale, scale], ntrks=0xFFFF),
        "x-no-tracks.mid": _smf(480, []),
    }


def make_files(folder: Path, seed: int, count: int) -> dict[str, dict]:
    """The extreme files, then `count` mutated copies of the shared test files and Lakh-like ones."""
    from midiseed.bench.lakh import lakh_like

    sources = {p.name: p.read_bytes() for p in sorted(SOURCES.glob("*.mid"))}
    if not sources:
        raise SystemExit(f"fuzz-files: no test files in {SOURCES}")
    sources.update({f"lakh-like-{k}.mid": lakh_like(seed, k) for k in range(20)})
    names = sorted(sources)
    rng = random.Random(seed)
    manifest = {}
    for name, data in extreme_files().items():
        (folder / name).write_bytes(data)
        manifest[name] = {"source": "extreme_files", "mutations": [], "bytes": len(data)}
    for k in range(count):
        src = rng.choice(names)
        data, done = mutate(rng, sources[src])
        name = f"fuzz{k:05d}-{src.removeprefix('test-')[:35].removesuffix('.mid')}.mid"
        (folder / name).write_bytes(data)
        manifest[name] = {"source": src, "mutations": done, "bytes": len(data)}
    return manifest


def _tokenize_guarded(folder: Path, store: Path, guard: float, file_timeout: float):
    """tokenize in a thread, so a hang is seen here (not waited on forever)."""
    from midiseed.training.store import tokenize
    from midiseed.training.tokenize import Limits

    box: dict = {}

    def run() -> None:
        try:
            box["report"] = tokenize(folder, store, workers=2, limits=Limits(timeout_s=file_timeout))
        except BaseException as err:
            box["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(guard)
    return (None, "hang") if thread.is_alive() else (box.get("report"), box.get("error"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m midiseed.bench.fuzz_files", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--out", type=Path, help="keep the mutated files and manifest.json here")
    ap.add_argument("--file-timeout", type=float, default=5.0)
    ap.add_argument("--guard", type=float, default=600.0, help="overall wall-clock limit, seconds")
    ap.add_argument("--max-memory-mb", type=int, default=4096, help="address space limit (0 = none)")
    ap.add_argument("--strict", action="store_true", help="also fail on contained crashes and time-outs")
    args = ap.parse_args(argv)

    if args.max_memory_mb:  # a huge length field must not let a parser take the machine's memory
        limit = args.max_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    tmp = None
    if args.out:
        folder = args.out
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("fuzz*.mid"):
            old.unlink()
    else:
        tmp = tempfile.TemporaryDirectory(prefix="midiseed-fuzz-")
        folder = Path(tmp.name)
    manifest = make_files(folder, args.seed, args.count)
    if args.out:
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))

    failures: list[str] = []
    start = time.monotonic()
    store_dir = Path(tempfile.mkdtemp(prefix="midiseed-fuzz-store-"))
    _, error = _tokenize_guarded(folder, store_dir / "store", args.guard, args.file_timeout)
    total = time.monotonic() - start
    if error == "hang":
        print(f"fuzz-files: FAILED: tokenize still running after {args.guard:g} s", flush=True)
        import multiprocessing

        for child in multiprocessing.active_children():  # the pool's workers
            child.terminate()
        if tmp is not None:
            tmp.cleanup()
        os._exit(1)  # the stuck thread cannot be joined
    if error is not None:
        print(f"fuzz-files: FAILED: tokenize raised {type(error).__name__}: {error}")
        return 1

    from midiseed.training.corpus import TRANSIENT
    from midiseed.training.store import TokenStore
    from midiseed.training.tokenize import Limits, tokenize_one

    store = TokenStore.open(store_dir / "store")
    stored = {f.path for f in store.files}
    accounted = stored | set(store.skipped)
    if accounted != set(manifest) or len(stored) + len(store.skipped) != len(manifest):
        failures.append(f"{len(set(manifest) - accounted)} file(s) neither read nor skipped")
    failures += [f"{f}: skipped with an empty reason" for f, r in store.skipped.items() if not r.strip()]
    failures += [
        f"{f}: cut with an empty reason" for f, r in store.cuts.items() if not all(map(str.strip, r))
    ]
    crashes = {f: r for f, r in store.skipped.items() if r.startswith((TRANSIENT[0], TRANSIENT[2]))}
    timeouts = {f: r for f, r in store.skipped.items() if r.startswith(TRANSIENT[1])}
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak_workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    # Every file again, one at a time here: its time, and the same verdict as the pool's. Files the
    # pool saw crash or run out of time stay out (they would take this process with them).
    longest, longest_file = 0.0, ""
    grid, limits = store.codec.grid, Limits(timeout_s=args.file_timeout)
    tokenize_one((str(SOURCES / "test-c-major-scale.mid"), grid, False, limits, ""))  # imports: not timed
    by_path = {f.path: f for f in store.files}
    for name in sorted(set(manifest) - set(crashes) - set(timeouts)):
        t0 = time.perf_counter()
        _, result, reason = tokenize_one((str(folder / name), grid, False, limits, ""))
        took = time.perf_counter() - t0
        if took > longest:
            longest, longest_file = took, name
        here = "stored" if result is not None and len(result[1]) else (reason or "no tokens")
        pool = "stored" if name in by_path else store.skipped.get(name)
        if here != pool:
            failures.append(f"{name}: pool says {pool!r}, here {here!r}")
        elif name in by_path and result[1].tolist() != store.tokens_of(by_path[name]).tolist():
            failures.append(f"{name}: the stored tokens differ from tokenising it here")
    if args.strict:
        failures += [f"{f}: {r}" for f, r in {**crashes, **timeouts}.items()]

    reasons = Counter(_short(r) for r in store.skipped.values())
    top = ", ".join(f"{n} {r}" for r, n in reasons.most_common(5))
    print(
        f"fuzz-files: {len(manifest)} files, {len(stored)} stored ({len(store.cuts)} cut), "
        f"{len(store.skipped)} skipped (reasons: {top}), {len(crashes)} crashes, {len(timeouts)} timeouts, "
        f"longest file {longest:.3f} s, total {total:.1f} s, peak RSS {peak_self:.0f} MB here, "
        f"{peak_workers:.0f} MB in a worker"
    )
    for name in sorted(n for n in store.cuts if n.startswith("x-")) + sorted(store.skipped):
        if name.startswith("x-"):
            print(f"  {name}: {store.cuts.get(name) or store.skipped[name]}")
    if longest_file:
        print(f"  longest: {longest_file} ({manifest[longest_file]['mutations']})")
    for f, r in list({**crashes, **timeouts}.items())[:10]:
        print(f"  contained: {f}: {r} ({manifest[f]['source']}: {manifest[f]['mutations']})")
    for line in failures[:20]:
        print(f"  FAIL {line}")
    if tmp is not None:
        tmp.cleanup()
    shutil.rmtree(store_dir, ignore_errors=True)
    return 1 if failures else 0


def _short(reason: str) -> str:
    """A reason without the numbers that make every instance unique."""
    out = "".join("#" if c.isdigit() else c for c in reason)
    while "##" in out:
        out = out.replace("##", "#")
    return repr(out[:70])


if __name__ == "__main__":
    sys.exit(main())
