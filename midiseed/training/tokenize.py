"""`midiseed data tokenize`: a MIDI folder -> a token store (the format is in `store`).

Worker processes do a file's whole job (read, hash, bound, tokenise: `tokenize_one`) under one
time limit, in `corpus.run_jobs`'s pool (a hung file is skipped, a crashed worker costs one file);
this process only appends the ids to shards and keeps the manifest. Re-runs are incremental: a
file whose size and mtime are unchanged is kept as it is; one whose hash is unchanged is kept
where its tokens are; a removed file is dropped from the manifest, and its tokens stay in their
shard as dead space until that shard is more than half dead, when its live files are copied to a
new shard and it is deleted.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from midiseed.runtime.codec import Codec, Grid
from midiseed.runtime.midifile import MidiReadError, notes_from_bytes
from midiseed.runtime.tokens import encode_notes
from midiseed.training.corpus import TRANSIENT, DataError, Limits, bound_notes, require_midi_files, run_jobs
from midiseed.training.store import (
    STORE_FILE,
    STORE_FORMAT,
    is_store,
    iter_manifest,
    only_store_files,
    read_meta,
    shard_name,
    store_lock,
)


def tokenize_one(job: tuple) -> tuple[str, tuple | None, str]:
    """A worker's whole job for one file: read, hash, bound, tokenise. `job` is (path, codec grid,
    include_drums, Limits, sha1 stored for it or ""); the result is (sha1, uint16 token ids or None
    when the file's hash is the stored one, cuts), or None with the reason it has no tokens."""
    path, grid, drums, limits, old_sha1 = job
    try:
        try:
            data = Path(path).read_bytes()
        except OSError as err:
            return path, None, f"cannot read: {err.strerror}"
        sha1 = hashlib.sha1(data).hexdigest()
        if sha1 == old_sha1:
            return path, (sha1, None, []), ""
        notes = notes_from_bytes(data, grid, drums)
        if len(notes) == 0:
            drums_only = not drums and len(notes_from_bytes(data, grid, True)) > 0
            return path, None, "only drum notes (drum tracks are left out)" if drums_only else "no notes"
        notes, cuts = bound_notes(notes, grid, limits)
        ids, total = encode_notes(notes, _codec(grid), limits.max_tokens)
        if total > len(ids):
            cuts.append(
                f"{total} tokens: kept the first {len(ids)} (whole events, at most {limits.max_tokens})"
            )
        return path, (sha1, ids.astype("<u2"), cuts), ""
    except MidiReadError as err:
        return path, None, str(err)
    except Exception as err:  # a parser or codec bug must cost one file, not the run
        return path, None, f"{TRANSIENT[2]}{type(err).__name__}: {err}"


log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=4)
def _codec(grid: Grid) -> Codec:
    return Codec(grid)


# ---- the store writer -------------------------------------------------------------------------------------

SHARD_TOKENS = 1 << 25  # 32 Mi tokens (64 MB) a shard: ~3,000 Lakh-like files; a unit to share out
CHECKPOINT_S = 120.0  # at most this long between manifest checkpoints while tokenising
COMPACT_BELOW = 0.5  # a shard whose live share of tokens fell below this is copied out, then deleted


class Entry(NamedTuple):
    """One manifest line (a tuple: 176,581 of them must stay small in memory)."""

    path: str
    collection: str
    size: int
    mtime_ns: int
    sha1: str
    shard: int = -1  # shard file id, -1 when skipped
    offset: int = 0
    tokens: int = 0
    cuts: tuple[str, ...] = ()
    skipped: str = ""
    retry: bool = False  # a skip that may be the machine's fault: tried again by the next run

    def to_json(self) -> str:
        d = {"path": self.path, "collection": self.collection, "size": self.size}
        d.update(mtime_ns=self.mtime_ns, sha1=self.sha1)
        if self.skipped:
            d.update(skipped=self.skipped, retry=self.retry)
        else:
            d.update(shard=self.shard, offset=self.offset, tokens=self.tokens, cuts=list(self.cuts))
        return json.dumps(d)

    @staticmethod
    def from_json(d: dict) -> Entry:
        if "skipped" in d:
            return Entry(d["path"], d["collection"], d["size"], d["mtime_ns"], d["sha1"],
                         skipped=d["skipped"], retry=d.get("retry", False))  # fmt: skip
        return Entry(d["path"], d["collection"], d["size"], d["mtime_ns"], d["sha1"],
                     d["shard"], d["offset"], d["tokens"], tuple(d.get("cuts", ())))  # fmt: skip


class StoreWriter:
    """Appends files' tokens to new shards and checkpoints the manifest. Shards already listed in
    store.json are never written to, so a run killed at any point leaves the last checkpoint's
    store intact; files that were in the open shard are simply tokenised again by the next run."""

    def __init__(self, root: Path, meta: dict, entries: dict[str, Entry], next_id: int) -> None:
        self.root, self.meta, self.entries = root, meta, entries
        self.next_id = next_id
        self.generation = int(meta.get("generation", 0))
        self.fh = None
        self.shard_id = -1
        self.filled = 0
        self.pending: list[Entry] = []  # entries whose tokens are in the open shard
        self.shard_sizes: dict[int, int] = {s["id"]: s["tokens"] for s in meta.get("shards", [])}
        self.last_checkpoint = time.monotonic()

    def add(self, entry: Entry, ids: np.ndarray | None = None) -> Entry:
        """Record a file: skipped or reused as it is (ids None), or with its new tokens."""
        if ids is None:
            self.entries[entry.path] = entry
            return entry
        if self.fh is None or (self.filled + len(ids) > SHARD_TOKENS and self.filled):
            self._close_shard()
            self.shard_id, self.next_id, self.filled = self.next_id, self.next_id + 1, 0
            self.fh = open(self.root / shard_name(self.shard_id), "wb")  # noqa: SIM115 (closed in _close_shard)
        entry = entry._replace(shard=self.shard_id, offset=self.filled, tokens=len(ids))
        self.fh.write(np.ascontiguousarray(ids, dtype="<u2").tobytes())
        self.filled += len(ids)
        self.pending.append(entry)
        return entry

    def _close_shard(self) -> None:
        if self.fh is None:
            return
        self.fh.close()
        self.fh = None
        self.shard_sizes[self.shard_id] = self.filled
        for e in self.pending:
            self.entries[e.path] = e
        self.pending = []
        if time.monotonic() - self.last_checkpoint > CHECKPOINT_S:
            self.checkpoint()

    def finish(self) -> None:
        """Close the open shard and write the final manifest."""
        self._close_shard()
        self.checkpoint()

    def checkpoint(self) -> None:
        """Write the manifest of every file recorded so far, then store.json naming it (atomically),
        then delete shards and manifests nothing names any more."""
        live: dict[int, int] = {}
        for e in self.entries.values():
            if not e.skipped:
                live[e.shard] = live.get(e.shard, 0) + e.tokens
        self.generation += 1
        name = f"manifest-{self.generation:06d}.jsonl"
        with open(self.root / name, "w") as fh:
            for rel in sorted(self.entries):
                fh.write(self.entries[rel].to_json() + "\n")
        shards = [{"id": i, "tokens": self.shard_sizes[i], "live": live[i]} for i in sorted(live)]
        self.meta.update(manifest=name, generation=self.generation, shards=shards)
        tmp = self.root / (STORE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.meta))
        os.replace(tmp, self.root / STORE_FILE)
        keep = {name, STORE_FILE} | {shard_name(i) for i in live}
        if self.fh is not None:
            keep.add(shard_name(self.shard_id))
        for p in self.root.iterdir():
            if (p.name.startswith(("shard-", "manifest-"))) and p.name not in keep:
                p.unlink(missing_ok=True)
        self.last_checkpoint = time.monotonic()


@dataclass
class TokenizeReport:
    """What one `tokenize` run did."""

    files: int = 0  # MIDI files seen under the folder
    tokenised: int = 0  # read and tokenised in this run
    reused: int = 0  # unchanged since the last run (size+mtime, or same hash)
    removed: int = 0  # in the store before, gone from the folder now
    skipped: int = 0  # no tokens, with a reason (store.skipped)
    cut: int = 0  # stored, with something cut to fit (store.cuts)
    tokens: int = 0  # in the store
    seconds: float = 0.0
    incremental: bool = False  # an existing store was updated
    compacted: int = 0  # old shards copied out and deleted (dead space)
    dead_tokens: int = 0  # tokens of changed/removed files left in shards that were kept

    def summary(self) -> str:
        rate = self.files / self.seconds if self.seconds else 0.0
        return (
            f"{self.files} files ({self.tokenised} read, {self.reused} unchanged, "
            f"{self.removed} removed): "
            f"{self.tokens} tokens, {self.skipped} skipped, {self.cut} cut, "
            f"{self.seconds:.1f} s, {rate:.0f} files/s"
        )


def tokenize_folder(
    midi_dir: Path,
    out: Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    include_drums: bool = False,
    grid: Grid = Grid(),
    limits: Limits = Limits(),
) -> TokenizeReport:
    """Tokenise every MIDI file under `midi_dir` into the store at `out`, updating it in place when
    it was made with the same codec, drums and limits (only new or changed files are read; removed
    ones are dropped). A file that cannot be read, or times out, is skipped with its reason.
    `progress(done, total)` is called as each file to read is done."""
    t0 = time.monotonic()
    midi_dir, out = Path(midi_dir), Path(out)
    # before the store is touched: a mistyped or emptied folder must not empty it
    paths = require_midi_files(midi_dir, ": nothing to tokenise")
    report = TokenizeReport(files=len(paths))
    settings = {
        "format": STORE_FORMAT,
        "codec": json.loads(Codec(grid).to_json()),
        "include_drums": include_drums,
        "limits": {k: v for k, v in asdict(limits).items() if k != "timeout_s"},  # time: not the tokens
    }
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    if out.is_dir() and not is_store(out) and not only_store_files(out):
        raise DataError(f"--out {out} is a folder that is not a token store and not empty")
    source = str(midi_dir.resolve())
    meta = _meta_of(out)
    made_from = meta.get("source") if meta else None  # None: made before stores said
    if made_from not in (None, source):  # another folder, or this one moved: what would it drop?
        stored = {e["path"] for e in iter_manifest(out, meta)}
        dropped = len(stored - {p.relative_to(midi_dir).as_posix() for p in paths})
        if dropped:
            raise DataError(
                f"--out {out} is the token store of {made_from}; updating it from {midi_dir} would "
                f"drop {dropped} of its {len(stored)} files: give another --out, or remove that store first"
            )
    settings["source"] = source
    with store_lock(out):  # held to the end: the store is read and written by this run alone
        _update(midi_dir, out, paths, report, settings, workers, progress, grid, limits)
    report.seconds = time.monotonic() - t0
    return report


def _meta_of(out: Path) -> dict | None:
    """store.json of the store at `out` (None: no store, or one unreadable or of another format,
    which is made again from scratch anyway)."""
    if not is_store(out):
        return None
    try:
        return read_meta(out)
    except DataError:
        return None


def _update(
    midi_dir: Path,
    out: Path,
    paths: list[Path],
    report: TokenizeReport,
    settings: dict,
    workers: int | None,
    progress: Callable[[int, int], None] | None,
    grid: Grid,
    limits: Limits,
) -> None:
    """`tokenize_folder`'s work, under the store's lock; fills in `report` and empties `paths`."""
    include_drums = settings["include_drums"]
    old: dict[str, Entry] = {}
    meta = dict(settings)
    if is_store(out):
        try:
            prev = read_meta(out)
        except DataError:
            prev = {}
        if all(prev.get(k) == v for k, v in settings.items() if k != "source"):
            meta = {**prev, "source": settings["source"]}
            old = {e["path"]: Entry.from_json(e) for e in iter_manifest(out, prev)}
            report.incremental = True
        else:
            log.warning("%s was made with other settings (codec, drums or limits): re-tokenising all", out)
    shard_ids = [s["id"] for s in meta.get("shards", [])]
    next_id = max([-1, *shard_ids, *(_shard_id(p) for p in out.glob("shard-*.u2"))]) + 1
    writer = StoreWriter(out, meta, {}, next_id)
    if not is_store(out):  # a store from the start: a run killed before its next checkpoint leaves one
        writer.checkpoint()
    jobs, stat, seen = [], {}, 0  # stat: path -> (size, mtime) of the files to tokenise
    for p in paths:
        rel = p.relative_to(midi_dir).as_posix()
        st = p.stat()
        prev_entry = old.get(rel)
        seen += prev_entry is not None
        if prev_entry is not None:  # its old tokens stay live (checkpoints keep their shard) until its
            writer.add(prev_entry)  # result, if it is re-read, replaces this entry
        same_stat = prev_entry and (prev_entry.size, prev_entry.mtime_ns) == (st.st_size, st.st_mtime_ns)
        if same_stat and not prev_entry.retry:
            continue
        sha1 = prev_entry.sha1 if prev_entry and not prev_entry.retry else ""
        jobs.append((str(p), grid, include_drums, limits, sha1))
        stat[str(p)] = (st.st_size, st.st_mtime_ns)
    paths.clear()  # the caller's list: 176,581 Path objects are ~100 MB, not kept while tokenising
    report.removed = len(old) - seen
    counts = {"tokenised": 0, "reused": report.files - len(jobs)}
    for done, (path, (result, reason)) in enumerate(
        run_jobs(jobs, midi_dir, workers, limits.timeout_s, tokenize_one), 1
    ):
        rel = Path(path).as_posix()
        size, mtime = stat.pop(str(midi_dir / path))
        counts[_record(writer, old.get(rel), rel, result, reason, size, mtime)] += 1
        if progress is not None:
            progress(done, len(jobs))
    report.compacted, report.dead_tokens = _compact(writer, set(shard_ids))
    writer.finish()
    for e in writer.entries.values():
        if e.skipped:
            report.skipped += 1
        else:
            report.tokens += e.tokens
            report.cut += bool(e.cuts)
    report.tokenised, report.reused = counts["tokenised"], counts["reused"]


def _record(
    writer: StoreWriter,
    prev: Entry | None,
    rel: str,
    result: tuple | None,
    reason: str,
    size: int,
    mtime: int,
) -> str:
    """Put one worker result into the store; says whether the file was "tokenised" or "reused"."""
    collection = rel.split("/", 1)[0] if "/" in rel else ""
    if result is None:
        entry = Entry(rel, collection, size, mtime, "", skipped=reason, retry=reason.startswith(TRANSIENT))
        writer.add(entry)
        return "tokenised"
    sha1, ids, cuts = result
    if ids is None and prev is not None:  # touched, same content: keep its tokens where they are
        writer.add(prev._replace(size=size, mtime_ns=mtime))
        return "reused"
    if ids is None or len(ids) == 0:
        writer.add(Entry(rel, collection, size, mtime, sha1, skipped="no tokens"))
        return "tokenised"
    writer.add(Entry(rel, collection, size, mtime, sha1, cuts=tuple(cuts)), ids)
    return "tokenised"


def _compact(writer: StoreWriter, old_ids: set[int]) -> tuple[int, int]:
    """Copy the live files out of old shards that are mostly dead (their old copies are deleted at
    the next checkpoint); returns (shards compacted, dead tokens left in the shards kept)."""
    # a re-read file's entry in the open shard replaces its old one only when that shard closes:
    # until then the old one must count as dead, and must not be copied out over the new one
    current = {**writer.entries, **{e.path: e for e in writer.pending}}
    live: dict[int, int] = {}
    for e in current.values():
        if not e.skipped and e.shard in old_ids:
            live[e.shard] = live.get(e.shard, 0) + e.tokens
    compact = {i for i in old_ids if live.get(i, 0) < COMPACT_BELOW * writer.shard_sizes.get(i, 0)}
    dead = sum(writer.shard_sizes.get(i, 0) - live.get(i, 0) for i in old_ids - compact if i in live)
    for i in sorted(compact & set(live)):
        tokens = np.memmap(writer.root / shard_name(i), dtype="<u2", mode="r")
        for e in [e for e in current.values() if e.shard == i and not e.skipped]:
            writer.add(e, np.array(tokens[e.offset : e.offset + e.tokens]))
        del tokens
    return len(compact & set(live)), dead


def _shard_id(path: Path) -> int:
    try:
        return int(path.stem.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1
