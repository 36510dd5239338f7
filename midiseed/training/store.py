"""The token store: every file of a MIDI folder as codec ids in uint16 shards, plus a manifest.

Layout of a store folder (see `tokenize` for how it is written, `TokenStore` for reading it):

- ``store.json``: format, codec (its JSON), include_drums, the limits used, the live shards and
  their token counts, and the name of the current manifest. Replaced atomically, last, so it
  always names a complete manifest and complete shards.
- ``manifest-<generation>.jsonl``: one JSON object a line per file: ``path``, ``collection``,
  ``size``, ``mtime_ns``, ``sha1``, and either ``shard``/``offset``/``tokens``/``cuts`` or
  ``skipped`` (the reason; ``retry`` is true when the reason may be the machine's fault).
- ``shard-<id>.u2``: raw little-endian uint16 token ids, files back to back; a file's tokens
  never span two shards. A shard is written once and never changed: a re-run writes new shards,
  and copies the live files out of a shard that became more than half dead (then deletes it).
- ``.lock``: flock'ed by the run writing the store, so a second one is refused, not interleaved.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from midiseed.runtime.codec import Codec, CodecError, Grid
from midiseed.training.corpus import DataError

if TYPE_CHECKING:
    from midiseed.training.tokenize import Limits, TokenizeReport

STORE_FORMAT = 1
STORE_FILE = "store.json"
LOCK_FILE = ".lock"  # flock'ed by the one process writing the store


@dataclass(frozen=True)
class StoredFile:
    """One tokenised MIDI file: where its tokens are in the store."""

    path: str  # relative to the MIDI folder, "/"-separated
    collection: str  # the first folder under the MIDI folder ("" for a file at its top)
    shard: int  # which shard holds its tokens
    offset: int  # index of its first token in that shard
    tokens: int  # how many tokens (>= 1: files with no tokens are skipped, with a reason)
    sha1: str  # content hash of the MIDI file


@dataclass
class TokenStore:
    """A store opened for reading. Shards are memory-mapped on first use, so opening costs only
    the manifest (about 200 bytes a file)."""

    root: Path
    codec: Codec
    include_drums: bool
    files: list[StoredFile]  # sorted by path
    skipped: dict[str, str]  # relative path -> reason it has no tokens
    cuts: dict[str, list[str]]  # relative path -> what was cut to fit the codec/limits, with reasons
    limits: dict = field(default_factory=dict)
    shard_ids: list[int] = field(default_factory=list)  # live shard ids, index = shard number
    _maps: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, root: Path) -> TokenStore:
        """Open the store in `root`; DataError (one line) if it is not one or has another format."""
        root = Path(root)
        meta = read_meta(root)
        try:
            codec = Codec.from_json(json.dumps(meta["codec"]))
        except CodecError as err:
            raise DataError(f"token store {root}: {err}") from err
        index = {s["id"]: i for i, s in enumerate(meta["shards"])}  # shard file id -> shard number
        files, skipped, cuts = [], {}, {}
        for entry in iter_manifest(root, meta):
            if "skipped" in entry:
                skipped[entry["path"]] = entry["skipped"]
                continue
            files.append(
                StoredFile(
                    entry["path"],
                    entry["collection"],
                    index[entry["shard"]],
                    entry["offset"],
                    entry["tokens"],
                    entry["sha1"],
                )
            )
            if entry.get("cuts"):
                cuts[entry["path"]] = entry["cuts"]
        files.sort(key=lambda f: f.path)
        shard_ids = [s["id"] for s in meta["shards"]]
        _check_shards(root, shard_ids, files)
        return cls(
            root=root,
            codec=codec,
            include_drums=bool(meta["include_drums"]),
            files=files,
            skipped=skipped,
            cuts=cuts,
            limits=meta.get("limits", {}),
            shard_ids=shard_ids,
        )

    @property
    def shard_count(self) -> int:
        return len(self.shard_ids)

    def shard(self, i: int) -> np.ndarray:
        """Shard `i` (0 <= i < shard_count) as a read-only uint16 memmap, cached."""
        m = self._maps.get(i)
        if m is None:
            path = self.root / shard_name(self.shard_ids[i])
            if path.stat().st_size == 0:
                m = np.zeros(0, dtype="<u2")  # np.memmap refuses an empty file
            else:
                m = np.memmap(path, dtype="<u2", mode="r")
            self._maps[i] = m
        return m

    def tokens_of(self, f: StoredFile) -> np.ndarray:
        """The tokens of one file: a view into its shard."""
        return self.shard(f.shard)[f.offset : f.offset + f.tokens]

    @property
    def total_tokens(self) -> int:
        return sum(f.tokens for f in self.files)


def _check_shards(root: Path, shard_ids: list[int], files: list[StoredFile]) -> None:
    """DataError (one line, at open, not an OSError deep in training) when a shard the manifest
    points into is missing or shorter than its files need: a store damaged since it was written."""
    need: dict[int, int] = {}
    for f in files:
        need[f.shard] = max(need.get(f.shard, 0), f.offset + f.tokens)
    for i, tokens in sorted(need.items()):
        path = root / shard_name(shard_ids[i])
        try:
            size = path.stat().st_size
        except OSError as err:
            size, why = -1, err.strerror
        else:
            why = f"holds {size // 2:,} tokens where its files need {tokens:,}"
        if size < 2 * tokens:
            raise DataError(
                f"token store {root} is damaged: {path.name} {why} (if a `midiseed data tokenize` is "
                "writing it, wait for that; otherwise remove the store and tokenize again)"
            )


def shard_name(shard_id: int) -> str:
    return f"shard-{shard_id:06d}.u2"


def is_store(path: Path) -> bool:
    """True when `path` is a folder holding a store (its store.json)."""
    return (Path(path) / STORE_FILE).is_file()


def only_store_files(path: Path) -> bool:
    """True when the folder `path` holds nothing but what a store writer makes (shards, manifests,
    store.json and its temporary, the lock): e.g. what a run killed before its first checkpoint left."""
    for p in Path(path).iterdir():
        name = p.name
        ours = name in (STORE_FILE, STORE_FILE + ".tmp", LOCK_FILE)
        ours |= name.startswith("shard-") and name.endswith(".u2")
        ours |= name.startswith("manifest-") and name.endswith(".jsonl")
        if not (ours and p.is_file()):
            return False
    return True


@contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on the store folder `root` (made if missing) while writing it, so two
    runs (two `train --data` of one folder share its cached store) never write one store at once;
    DataError at once, not a wait, when another process holds it. The lock goes with the process,
    so a killed run leaves none behind."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by spawned workers
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            msg = f"another midiseed is tokenising into {root}; wait for it or use another --out"
            raise DataError(msg) from None
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (deleting it would race with a new locker)


def store_for(midi_dir: Path) -> Path:
    """Where `train --data MIDI_DIR` keeps that folder's store: under $XDG_CACHE_HOME/midiseed/stores/,
    named by a hash of the folder's absolute path."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "midiseed" / "stores"
    return base / hashlib.sha1(str(Path(midi_dir).resolve()).encode()).hexdigest()[:16]


def read_meta(root: Path) -> dict:
    """store.json of the store in `root`, checked; DataError if it is missing or not ours."""
    path = Path(root) / STORE_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        msg = f"{root} is not a token store (no {STORE_FILE}; make one with `midiseed data tokenize`)"
        raise DataError(msg) from None
    except (OSError, ValueError) as err:
        raise DataError(f"token store {root}: cannot read {STORE_FILE}: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise DataError(
            f"token store {root} has format {found!r}; this midiseed reads format {STORE_FORMAT} "
            "(re-run `midiseed data tokenize`)"
        )
    return meta


def iter_manifest(root: Path, meta: dict):
    """The manifest's entries (dicts), one per file, in the order written."""
    path = Path(root) / meta["manifest"]
    try:
        with path.open() as fh:
            for line in fh:
                yield json.loads(line)
    except (OSError, ValueError) as err:
        raise DataError(f"token store {root}: cannot read its manifest {path.name}: {err}") from err


def tokenize(
    midi_dir: Path,
    out: Path,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    include_drums: bool = False,
    grid: Grid | None = None,
    limits: Limits | None = None,
) -> TokenizeReport:
    """Tokenise every MIDI file under `midi_dir` into the store at `out`; see
    `midiseed.training.tokenize.tokenize_folder` (only new or changed files are read again)."""
    from midiseed.training.tokenize import Limits, tokenize_folder

    return tokenize_folder(
        midi_dir, out, workers, progress, include_drums, grid or Grid(), limits or Limits()
    )
