"""Folders of MIDI files -> grid notes per file, with a notes cache (`load_corpus`: evaluate,
export); the worker pool (`run_jobs`: a time limit per file, a crashed worker costs one file)
that `data tokenize` runs on too; the bounds on one file's cost (`Limits`, `bound_notes`).

Memory stays O(total notes): each file's notes are one small int32 array, and the cache is one
flat array plus offsets. A file that cannot be read is skipped and reported with its reason.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
import zlib
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from midiseed.errors import UserError
from midiseed.runtime.codec import CODEC_VERSION, Grid
from midiseed.runtime.midifile import MidiReadError, read_notes

log = logging.getLogger(__name__)
MIDI_SUFFIXES = {".mid", ".midi", ".kar"}
CACHE_FORMAT = 1
# reasons that may be the machine's fault, not the file's: reported, never cached
TRANSIENT = ("the parser crashed", "parsing took longer than", "unexpected error: ")


class DataError(UserError):
    """A data folder that cannot be used; the message says which and why."""


@dataclass
class Corpus:
    """Notes of every readable file of a folder, and what was skipped."""

    root: Path
    files: list[str]  # paths relative to root, sorted
    notes: list[np.ndarray]  # per file: int32 (N x 3) pitch, start step, end step
    skipped: dict[str, str] = field(default_factory=dict)  # relative path -> reason
    parsed: int = 0  # files parsed in this run (the rest came from the cache)

    def summary(self) -> dict:
        return {
            "files_read": len(self.files),
            "files_skipped": len(self.skipped),
            "notes": int(sum(len(n) for n in self.notes)),
            "parsed_now": self.parsed,
        }


def find_midi_files(root: Path) -> list[Path]:
    """Every .mid/.midi/.kar file under root, recursively, sorted."""
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"data folder {root} is not a folder")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())


def require_midi_files(root: Path, so: str = "") -> list[Path]:
    """`find_midi_files`, refusing a folder with none (`so`: what that means here, after a colon
    or "and ...")."""
    paths = find_midi_files(root)
    if not paths:
        raise DataError(f"data folder {root} has no .mid, .midi or .kar files{so}")
    return paths


def _read_one(args: tuple[str, Grid, bool]) -> tuple[str, np.ndarray | None, str]:
    path, grid, drums = args
    try:
        return path, read_notes(path, grid, drums), ""
    except MidiReadError as err:
        return path, None, str(err)
    except Exception as err:  # a parser bug must cost one file, not the run
        return path, None, f"{TRANSIENT[2]}{type(err).__name__}: {err}"


@dataclass(frozen=True)
class Limits:
    """What one file may cost; past these the music is cut (`bound_notes`). Measured on 2,000
    Lakh-like files (median/p99): 3,114/11,270 pitched notes, 400/1,039 beats, 10,634/23,306
    tokens; the limits are 16-40x those p99s, so only freak files meet them (BENCHMARKS.md)."""

    max_note_beats: int = 64  # 16 bars of 4/4: no sustained note in real music is longer
    max_beats: int = 16_384  # 4,096 bars of 4/4 (2h15 at 120 bpm) from the first onset
    max_notes: int = 250_000  # pitched notes in one file
    max_tokens: int = 1_000_000  # ids per file (whole events)
    timeout_s: float = 30.0  # the whole job of one file: read, bound, tokenise


def bound_notes(notes: np.ndarray, grid: Grid, limits: Limits) -> tuple[np.ndarray, list[str]]:
    """Grid notes (int64, sorted by start) cut to what `limits` allow, and a reason for each cut."""
    cuts = []
    spb = grid.steps_per_beat
    if len(notes) > limits.max_notes:
        cuts.append(f"{len(notes)} notes: kept the first {limits.max_notes}")
        notes = notes[: limits.max_notes]
    longest = limits.max_note_beats * spb
    too_long = notes[:, 2] - notes[:, 1] > longest
    if too_long.any():
        worst = int((notes[:, 2] - notes[:, 1]).max()) // spb
        cuts.append(
            f"{int(too_long.sum())} notes longer than {limits.max_note_beats} beats "
            f"(up to {worst}): shortened to {limits.max_note_beats}"
        )
        notes = notes.copy()
        notes[:, 2] = np.minimum(notes[:, 2], notes[:, 1] + longest)
    span = limits.max_beats * spb
    late = notes[:, 1] >= span
    if late.any() or (len(notes) and notes[:, 2].max() > span):
        last = int(notes[:, 2].max()) // spb
        cuts.append(f"the piece lasts {last} beats: cut after {limits.max_beats} beats")
        notes = notes[~late].copy()
        notes[:, 2] = np.minimum(notes[:, 2], span)
    return notes, cuts


def _default_cache_dir(root: Path) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "midiseed"
    return base / hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:16]


def load_corpus(
    root: Path,
    grid: Grid = Grid(),
    include_drums: bool = False,
    workers: int | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    on_skip: Callable[[str, str], None] | None = None,
    file_timeout: float = 30.0,
) -> Corpus:
    """Read every MIDI file under `root` (see `read_notes`), reusing the cache for unchanged files.

    With worker processes, a file that takes more than `file_timeout` seconds to parse is skipped
    (reason "parsing took longer than ...", never cached); see `_parse_all`."""
    root = Path(root)
    paths = require_midi_files(root)
    cache_dir = cache_dir or _default_cache_dir(root)
    settings = {"format": CACHE_FORMAT, "codec": CODEC_VERSION, "grid": asdict(grid), "drums": include_drums}
    cached = _load_cache(cache_dir, settings) if use_cache else {}

    stats = {str(p.relative_to(root)): p.stat() for p in paths}
    results: dict[str, tuple[np.ndarray | None, str]] = {}
    todo = []
    for rel, st in stats.items():
        hit = cached.get(rel)
        if hit is not None and hit[0] == (st.st_size, st.st_mtime_ns):
            results[rel] = (hit[1], hit[2])
        else:
            todo.append(rel)
    for rel, (notes, reason) in _parse_all(
        [str(root / r) for r in todo], root, grid, include_drums, workers, file_timeout
    ):
        results[rel] = (notes, reason)

    corpus = Corpus(root=root, files=[], notes=[], parsed=len(todo))
    for rel in sorted(results):
        notes, reason = results[rel]
        if notes is None:
            corpus.skipped[rel] = reason
            if on_skip:
                on_skip(rel, reason)
        elif len(notes) == 0:
            corpus.skipped[rel] = "no pitched notes (drum tracks are left out)"
            if on_skip:
                on_skip(rel, corpus.skipped[rel])
        else:
            corpus.files.append(rel)
            corpus.notes.append(notes)
    if use_cache and todo:
        _save_cache(cache_dir, settings, stats, results)
    return corpus


def _parse_all(
    paths: list[str],
    root: Path,
    grid: Grid,
    drums: bool,
    workers: int | None,
    file_timeout: float = 30.0,
    read: Callable = _read_one,
):
    """`run_jobs` of (path, grid, drums) jobs: (relative path, (notes or None, reason))."""
    yield from run_jobs([(p, grid, drums) for p in paths], root, workers, file_timeout, read)


def run_jobs(jobs: list[tuple], root: Path, workers: int | None, file_timeout: float, read: Callable):
    """(relative path, (result or None, reason)) for every job, in no particular order; a job is a
    tuple whose first item is a file's path, `read(job)` returns (path, result or None, reason).

    In worker processes each file gets `file_timeout` seconds from the moment a worker starts it
    (starting the workers does not count): a file that takes longer is skipped with a transient
    reason, its worker is killed with the pool, and the files not yet read go to a fresh pool. A
    worker that dies (a parser crash) costs only the file(s) it may have been reading: those are
    re-read one at a time in a process of their own. Small jobs (< 8 files) and `workers == 1`
    are read in this process, with no time limit: a file that hangs the parser hangs them.
    `read` is `_read_one`, `tokenize_one` or, in tests, another module-level function of the same
    shape. Results come back in chunks of up to 64 files, so the caller holds few at a time.
    """
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(jobs) < 8:
        for job in jobs:
            path, notes, reason = read(job)
            yield str(Path(path).relative_to(root)), (notes, reason)
        return
    todo = list(range(len(jobs)))
    while todo:
        todo, suspects = yield from _pool_pass(jobs, todo, root, workers, file_timeout, read)
        if suspects:
            log.warning("a worker died while parsing; re-reading %d file(s) one at a time", len(suspects))
        for i in suspects:
            yield str(Path(jobs[i][0]).relative_to(root)), _read_isolated(jobs[i], file_timeout, read)


def _read_isolated(job: tuple, file_timeout: float = 30.0, read: Callable = _read_one) -> tuple:
    """One file in a process of its own, with the time limit; a crash costs this file only."""
    results = {}
    gen = _pool_pass([job], [0], Path(job[0]).parent, 1, file_timeout, read)
    try:
        while True:
            rel, result = next(gen)
            results[rel] = result
    except StopIteration as stop:
        _, suspects = stop.value
    if results:
        return next(iter(results.values()))
    if suspects:
        return None, TRANSIENT[0] + " on this file"
    return None, TRANSIENT[2] + "the file was not read"  # not reached: a pass reads or suspects it


_progress = None  # in a worker: where it says which file it starts (a multiprocessing SimpleQueue)


def _worker_init(progress) -> None:
    global _progress
    _progress = progress


def _read_chunk(chunk: int, jobs: list[tuple[int, tuple]], read: Callable) -> list[tuple]:
    out = []
    for i, job in jobs:
        _progress.put((chunk, i, time.monotonic()))  # synchronous: in the pipe before the file starts
        out.append((i, *read(job)))
    return out


def _pool_pass(jobs: list, todo: list[int], root: Path, workers: int, file_timeout: float, read: Callable):
    """Read jobs[todo] in a pool, yielding results; returns (indices left to read in a new pool,
    indices to read alone because a worker died while they may have been reading them)."""
    ctx = get_context("spawn")  # spawn, not fork: the caller may already hold TensorFlow's threads
    progress = ctx.SimpleQueue()
    size = max(1, min(64, len(todo) // (workers * 8)))
    chunks = [todo[k : k + size] for k in range(0, len(todo), size)]
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(progress,))
    running: dict[int, tuple[int, float]] = {}  # chunk -> (file index being read, when it started)
    closed: set[int] = set()  # chunks whose results are in (a late progress message is ignored)
    finished: set[int] = set()
    hung: list[int] = []
    broken = clean = False
    # a few chunks in flight: wait() costs O(pending futures) a call (Lakh: 2,700 chunks)
    todo_chunks = iter(enumerate(chunks))
    futures: dict = {}
    pending: set = set()

    def submit(n: int) -> None:
        for c, chunk in itertools.islice(todo_chunks, n):
            fut = pool.submit(_read_chunk, c, [(i, jobs[i]) for i in chunk], read)
            futures[fut] = c
            pending.add(fut)

    try:
        submit(workers * 4)
        while pending and not broken:
            done, not_done = wait(pending, timeout=min(0.05, file_timeout / 4), return_when=FIRST_COMPLETED)
            pending.intersection_update(not_done)
            while not progress.empty():
                c, i, started = progress.get()
                if c not in closed:
                    running[c] = (i, started)
            while done:  # each future and its results let go once handed out (Lakh: 4.7 GB of tokens)
                fut = done.pop()
                c = futures.pop(fut)
                try:
                    results = fut.result()
                except BrokenProcessPool:
                    broken = True  # not closed: its running file is a suspect (not every file)
                    continue
                closed.add(c)
                running.pop(c, None)
                submit(1)
                while results:
                    i, path, notes, reason = results.pop(0)
                    finished.add(i)
                    yield str(Path(path).relative_to(root)), (notes, reason)
            now = time.monotonic()
            hung = [i for i, started in running.values() if now - started > file_timeout]
            if hung:
                break
        clean = not pending and not broken
    finally:
        if clean:
            pool.shutdown()
        else:
            _kill(pool)
    while not progress.empty():  # what the workers started before they died
        c, i, started = progress.get()
        if c not in closed:
            running[c] = (i, started)
    progress.close()
    for i in hung:
        log.warning("%s: parsing took longer than %g s; skipped", jobs[i][0], file_timeout)
        finished.add(i)
        yield (
            str(Path(jobs[i][0]).relative_to(root)),
            (None, f"{TRANSIENT[1]} {file_timeout:g} s"),
        )
    if not broken:
        return [i for i in todo if i not in finished], []
    suspects = sorted({i for c, (i, _) in running.items() if c not in closed} - finished)
    if not suspects:  # the pool broke before a file started (or said so): read them all alone
        suspects = [i for i in todo if i not in finished]
    left = [i for i in todo if i not in finished and i not in set(suspects)]
    return left, suspects


def _kill(pool: ProcessPoolExecutor) -> None:
    """Shut a pool down now, killing workers that may be stuck in a file."""
    processes = list((pool._processes or {}).values())
    for p in processes:
        p.terminate()
    pool.shutdown(wait=True, cancel_futures=True)
    for p in processes:
        p.join(5)


def _load_cache(cache_dir: Path, settings: dict) -> dict[str, tuple[tuple[int, int], np.ndarray | None, str]]:
    manifest_path = cache_dir / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("settings") != settings:
            return {}
        with np.load(cache_dir / "notes.npz", allow_pickle=False) as data:
            flat, offsets = data["notes"], data["offsets"]
        if zlib.crc32(flat.tobytes()) != manifest["crc32"]:
            log.warning("tokenised cache %s is damaged; re-reading everything", cache_dir)
            return {}
    except (OSError, ValueError, KeyError):
        return {}
    out = {}
    for i, entry in enumerate(manifest["files"]):
        rel, size, mtime, reason = entry
        notes = flat[offsets[i] : offsets[i + 1]] if not reason else None
        out[rel] = ((size, mtime), notes, reason)
    return out


def _save_cache(cache_dir: Path, settings: dict, stats: dict, results: dict) -> None:
    entries, arrays, offsets = [], [], [0]
    for rel in sorted(results):
        notes, reason = results[rel]
        if reason.startswith(TRANSIENT):
            continue  # a crash or a time-out may be the machine's fault: try the file again next time
        st = stats[rel]
        arr = notes if notes is not None else np.zeros((0, 3), dtype=np.int32)
        entries.append([rel, st.st_size, st.st_mtime_ns, reason])
        arrays.append(arr.astype(np.int32))
        offsets.append(offsets[-1] + len(arr))
    flat = np.concatenate(arrays) if arrays else np.zeros((0, 3), dtype=np.int32)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_dir / "notes.tmp.npz"
        np.savez(tmp, notes=flat, offsets=np.array(offsets, dtype=np.int64))
        os.replace(tmp, cache_dir / "notes.npz")
        manifest = {"settings": settings, "crc32": zlib.crc32(flat.tobytes()), "files": entries}
        (cache_dir / "manifest.json").write_text(json.dumps(manifest))
    except OSError as err:
        log.warning("could not write the tokenised cache to %s: %s", cache_dir, err)


def split_by_file(files: list[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """Indices of (train, held-out) files. A file's side depends on its name only (a hash), so adding
    files never moves another one across; with two or more files, each side gets at least one."""
    if not 0 < val_fraction < 1:
        raise DataError(f"validation fraction must be between 0 and 1, got {val_fraction}")
    hashes = [zlib.crc32(f.encode()) % 10_000 for f in files]
    val = [i for i, h in enumerate(hashes) if h < val_fraction * 10_000]
    ranked = sorted(range(len(files)), key=lambda i: hashes[i])
    if not val and len(files) > 1:
        val = [ranked[0]]
    if len(val) == len(files) and len(files) > 1:
        val.remove(ranked[-1])
    held = set(val)
    return [i for i in range(len(files)) if i not in held], sorted(val)
