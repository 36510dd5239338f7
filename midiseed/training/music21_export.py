"""`midiseed data music21`: the corpus bundled with music21, written as .mid files, one folder a collection.

What a *collection* is: a top folder of music21's core corpus (``music21/corpus/<name>/...``):
bach, palestrina, essenFolksong, ryansMammoth, oneills1850, trecento, monteverdi, ... Each one is
written to ``OUT/<name>/``, so the token store labels its files with that name. `collections()`
lists them with their source-file counts; what this music21 ships is the truth, not a fixed list.

What a *piece* is: one score. An ABC file holds many tunes (an ``X:`` reference number each), and
each tune is one piece: ``OUT/essenFolksong/altdeu10-12.mid`` is tune X:12 of ``altdeu10.abc``.
In josquin (`VOICE_COLLECTIONS`) each X: is one voice of a chanson: its voices are merged into one
score (music21's `Opus.mergeScores`), one .mid a file.
A score file that music21 reads as an Opus gives ``<stem>-<n>.mid`` for its n-th score. Roman-
numeral analyses (``.rntxt``: bach, monteverdi) are left out: they are harmonic reductions of
scores that are exported anyway, not music as played.

A piece music21 cannot read or write, or that takes longer than the per-piece limit, is skipped;
its reason is recorded in ``OUT/music21_failed.json`` so that a re-run skips it too, as it skips
every piece whose .mid exists; only a piece that ran out of time is tried again, and only when the
re-run's limit is longer. Each .mid is written to a temporary name and renamed, so an
interrupted run leaves no half-written file.

Without `--collection`/`--all`, `--composer` (bach by default) keeps its old meaning: that
composer's pieces (music21's `corpus.getComposer`), flat in OUT. With them, it filters the chosen
collections by composer.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from midiseed.errors import output_folder
from midiseed.training.corpus import DataError

log = logging.getLogger(__name__)

SCORE_SUFFIXES = {".abc", ".mxl", ".xml", ".musicxml", ".krn", ".mid", ".midi"}
# a piece music21 ships in two formats (8 do: bach/bwv277 as .krn and .mxl, ...) is read from one,
# the first of these; both would write the same .mid, the later one over the other
PREFERRED = (".mxl", ".musicxml", ".xml", ".krn", ".abc", ".mid", ".midi")
FAILED_NAME = "music21_failed.json"
PIECE_SECONDS = 60.0  # one piece's limit: a few scores make music21 think for minutes
_REF = re.compile(r"^X:\s*(\d+)", re.MULTILINE)
_SLOW = re.compile(r"took over ([\d.]+) s")
# ABC collections whose files are each one work with a voice per X: (music21's own docs merge them
# with `Opus.mergeScores`). Not a rule about titles: essen's ballad80.abc holds 93 variants of one
# ballad under one title, and those are tunes of their own.
VOICE_COLLECTIONS = {"josquin"}


@dataclass(frozen=True)
class Job:
    """One source file to read, and the pieces to write from it (all relative to OUT)."""

    src: str
    stem: str  # OUT-relative path without suffix: "bach/bwv1.6" or "essenFolksong/altdeu10"
    refs: tuple[int, ...] = ()  # ABC tune numbers to write (empty: the whole file, a score or an opus)
    voices: bool = False  # the file's scores are the voices of one work: merge them into one


@dataclass
class ExportReport:
    """What one run did; `failed` holds this run's failures, piece -> reason."""

    collections: dict[str, int] = field(default_factory=dict)  # collection -> source files chosen
    written: int = 0
    existing: int = 0  # pieces already there (or recorded as failed before): not redone
    failed: dict[str, str] = field(default_factory=dict)
    failed_before: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Progress:
    """Handed to the progress callback after each source file."""

    files_done: int
    files_total: int
    written: int
    failed: int
    seconds: float


def corpus_root() -> Path:
    """The folder of music21's core corpus."""
    from music21 import corpus

    return Path(corpus.__file__).parent


def _core_paths() -> list[Path]:
    from music21 import corpus

    root = corpus_root()
    paths = [Path(p) for p in corpus.corpora.CoreCorpus().getPaths()]
    return sorted(p for p in paths if p.suffix.lower() in SCORE_SUFFIXES and root in p.parents)


def collections() -> dict[str, int]:
    """Every collection of music21's core corpus -> how many score files it has."""
    root = corpus_root()
    counts: dict[str, int] = {}
    for p in _core_paths():
        name = p.relative_to(root).parts[0]
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: kv[0].lower()))


def plan(
    names: list[str] | None = None,
    composer: str | None = None,
    limit: int | None = None,
) -> tuple[list[Job], dict[str, int]]:
    """The jobs for `names` (None: composer mode, flat) with at most `limit` pieces per collection.

    Raises DataError for an unknown collection or a composer with no pieces."""
    from music21 import corpus

    root = corpus_root()
    known = collections()
    if names is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise DataError(
                f"no collection {unknown[0]!r} in music21's corpus; there are: {', '.join(known)}"
            )
    paths = _core_paths()
    if composer is not None:
        by = {Path(p).resolve() for p in corpus.getComposer(composer)}
        paths = [p for p in paths if p.resolve() in by]
        if not paths:
            raise DataError(f"music21's corpus has no pieces by {composer!r} (try bach, beethoven, mozart)")
    one_format: dict[Path, Path] = {}
    for p in sorted(paths, key=lambda p: PREFERRED.index(p.suffix.lower())):
        one_format.setdefault(p.with_suffix(""), p)
    jobs: list[Job] = []
    chosen: dict[str, int] = {}
    pieces: dict[str, int] = {}
    for p in sorted(one_format.values()):
        rel = p.relative_to(root)
        coll = rel.parts[0]
        if names is not None and coll not in names:
            continue
        if names is None:  # the old flat layout of one composer's pieces: beethoven/opus18no1/movement1
            stem, key = "-".join(rel.with_suffix("").parts[1:]), ""  # is opus18no1-movement1
        else:
            stem, key = str(rel.with_suffix("").as_posix()), coll
        room = (limit - pieces.get(key, 0)) if limit else None
        if room is not None and room <= 0:
            continue
        refs: tuple[int, ...] = ()
        voices = False
        if p.suffix.lower() == ".abc":
            text = p.read_text(encoding="latin-1")
            found = list(dict.fromkeys(int(m) for m in _REF.findall(text)))
            voices = coll in VOICE_COLLECTIONS and len(found) > 1
            if not voices:  # one work's voices are read whole, as one score
                refs = tuple(found[:room] if room is not None else found)
        jobs.append(Job(str(p), stem, refs, voices))
        pieces[key] = pieces.get(key, 0) + max(len(refs), 1)
        chosen[coll] = chosen.get(coll, 0) + 1
    return jobs, chosen


def export_music21(
    out: Path,
    composer: str | None = "bach",
    limit: int | None = None,
    workers: int | None = None,
    names: list[str] | None = None,
    progress: Callable[[Progress], None] | None = None,
    piece_seconds: float = PIECE_SECONDS,
) -> ExportReport:
    """Write pieces of music21's bundled corpus as .mid files under `out` (see the module docstring).

    `names` None and `composer` set: that composer's pieces, flat in `out`; otherwise one folder a
    collection, optionally filtered by `composer`. `limit` caps the pieces per collection."""
    t0 = time.perf_counter()
    jobs, chosen = plan(names, composer, limit)
    output_folder(out, "--out")
    out.mkdir(parents=True, exist_ok=True)
    failed_path = out / FAILED_NAME
    failed_before: dict[str, str] = json.loads(failed_path.read_text()) if failed_path.exists() else {}
    # a piece that only ran out of time is tried again under a longer limit than the one it failed under
    failed_before = {
        k: why
        for k, why in failed_before.items()
        if not ((m := _SLOW.search(why)) and float(m.group(1)) < piece_seconds)
    }
    report = ExportReport(collections=chosen, failed_before=len(failed_before))
    todo = []
    for job in jobs:
        if job.refs:
            left = _pieces_left(out, job, failed_before)
            report.existing += len(job.refs) - len(left)
            if left:
                todo.append(Job(job.src, job.stem, left))
        elif _whole_done(out, job, failed_before):
            report.existing += 1
        else:
            todo.append(job)
    todo.sort(key=lambda j: -os.path.getsize(j.src))  # biggest first: the pool ends evenly
    done = 0

    def collect(result: tuple[int, dict[str, str]]) -> None:
        nonlocal done
        written, failures = result
        report.written += written
        report.failed.update(failures)
        done += 1
        if failures:  # recorded as they come: an interrupted run keeps what it learned
            failed_path.write_text(json.dumps({**failed_before, **report.failed}, indent=1, sort_keys=True))
        if progress:
            progress(Progress(done, len(todo), report.written, len(report.failed), time.perf_counter() - t0))

    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    if workers == 1:
        for job in todo:
            collect(_export_job(job, str(out), piece_seconds))
    elif todo:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            pending: set[Future] = {pool.submit(_export_job, j, str(out), piece_seconds) for j in todo}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    collect(f.result())
    report.seconds = time.perf_counter() - t0
    return report


def _piece_key(job: Job, ref: int | None) -> str:
    suffix = Path(job.src).suffix
    return f"{job.stem}{suffix}" + (f"#{ref}" if ref is not None else "")


def _pieces_left(out: Path, job: Job, failed: dict[str, str]) -> tuple[int, ...]:
    """The ABC tunes of `job` that are neither written nor recorded as failed."""
    if _piece_key(job, None) in failed:
        return ()
    return tuple(
        r for r in job.refs if not (out / f"{job.stem}-{r}.mid").exists() and _piece_key(job, r) not in failed
    )


def _whole_done(out: Path, job: Job, failed: dict[str, str]) -> bool:
    """A file read whole is done when its .mid (or, not ABC, its opus's first) exists, or it failed
    before (a josquin file: only its merged .mid counts)."""
    opus_written = not job.src.endswith(".abc") and (out / f"{job.stem}-1.mid").exists()
    return (out / f"{job.stem}.mid").exists() or opus_written or _piece_key(job, None) in failed


class PieceTooSlow(Exception):
    """A piece that took music21 longer than the per-piece limit."""


def _export_job(job: Job, out: str, piece_seconds: float) -> tuple[int, dict[str, str]]:
    """Read one source file and write its pieces; returns (pieces written, piece -> why it failed)."""
    from music21 import converter, stream

    failures: dict[str, str] = {}
    written = 0
    # Parse errors from music21 are data problems, of every exception type: one bad score must not
    # stop the export, so each is caught, recorded with its reason and skipped.
    if job.refs:
        try:
            with _time_limit(piece_seconds * 4):  # reading the whole ABC file once
                tunes = _abc_tunes(job.src)
        except Exception as err:
            return 0, {_piece_key(job, None): _reason(err)}
        for ref in job.refs:
            try:
                if ref not in tunes:
                    raise LookupError(f"music21 found no tune X:{ref}")
                with _time_limit(piece_seconds):
                    _write(_abc_score(tunes[ref]), Path(out) / f"{job.stem}-{ref}.mid")
                written += 1
            except DataError:
                raise  # see below: a folder we cannot write is not the tune's fault
            except Exception as err:
                failures[_piece_key(job, ref)] = _reason(err)
        return written, failures
    try:
        with _time_limit(piece_seconds):
            parsed = converter.parse(job.src)
            scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
            if job.voices and isinstance(parsed, stream.Opus):
                scores = [parsed.mergeScores()]  # one work's voices, each a score of its own
            # score 1 last: `_whole_done` takes its file as the sign that the whole opus is written,
            # so a run stopped half-way through an opus writes all of it again next time
            numbered = list(enumerate(scores, 1))
            for i, score in numbered[1:] + numbered[:1]:
                name = f"{job.stem}.mid" if len(scores) == 1 else f"{job.stem}-{i}.mid"
                _write(score, Path(out) / name)
                written += 1
    except DataError:
        raise  # our folder cannot be written: not the piece's fault, so never recorded as its failure
    except Exception as err:
        failures[_piece_key(job, None)] = _reason(err)
    return written, failures


def _abc_tunes(src: str) -> dict:
    from music21 import abcFormat

    f = abcFormat.ABCFile()
    f.open(src)
    try:
        handler = f.read()
    finally:
        f.close()
    return handler.splitByReferenceNumber()


def _abc_score(handler):
    from music21.abcFormat import translate

    return translate.abcToStreamScore(handler)


def _write(score, dst: Path) -> None:
    """Write `score` to dst through a .part file. A folder that cannot be written (disk full, no
    permission) is a DataError, which stops the export instead of being recorded as the piece's."""
    _dedupe_context(score)
    tmp = dst.with_name(dst.name + ".part")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp.touch()
        score.write("midi", fp=str(tmp))
        tmp.replace(dst)
    except OSError as err:
        _remove(tmp)
        raise DataError(f"cannot write {dst}: {err.strerror or err}") from None
    except BaseException:  # music21 could not write the piece (or the run was stopped): no half file
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # not there, or in no folder at all
        path.unlink()


def _dedupe_context(score) -> None:
    """music21's ABC reader puts one TimeSignature/KeySignature object in several measures, and its
    MIDI writer then refuses the score ("already found in this Stream", ~1 tune in 4 of essen):
    every second appearance becomes a copy."""
    seen: set[int] = set()
    for st in score.recurse(streamsOnly=True, includeSelf=True):
        for el in list(st.getElementsByClass(("MetronomeMark", "TimeSignature", "KeySignature"))):
            if id(el) in seen:
                st.replace(el, copy.deepcopy(el))
            else:
                seen.add(id(el))


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split())[:200]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class _time_limit:
    """SIGALRM after `seconds` (music21 is pure Python, so the alarm interrupts it); a no-op where
    there is no SIGALRM (Windows) or off the main thread."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.armed = hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> None:
        if self.armed:
            self.old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def _fire(self, signum, frame) -> None:
        raise PieceTooSlow(f"took over {self.seconds:g} s")

    def __exit__(self, *exc) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
