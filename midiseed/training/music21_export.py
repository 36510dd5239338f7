"""`midiseed data music21`: pieces of the corpus bundled with music21, written as .mid files."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from midiseed.training.corpus import DataError

log = logging.getLogger(__name__)


def export_music21(
    out: Path, composer: str = "bach", limit: int | None = None, workers: int | None = None
) -> list[Path]:
    """Write pieces of music21's bundled corpus as .mid files; returns the files written."""
    from music21 import corpus as m21corpus

    paths = [
        p for p in m21corpus.getComposer(composer) if Path(p).suffix in {".mxl", ".xml", ".krn", ".musicxml"}
    ]
    if not paths:
        raise DataError(f"music21's corpus has no pieces by {composer!r} (try bach, beethoven, mozart)")
    paths = sorted(paths, key=lambda p: Path(p).name)[: limit or None]
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p), str(out / (Path(p).stem + ".mid"))) for p in paths]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        done = [_export_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            done = list(pool.map(_export_one, jobs))
    return [Path(p) for p in done if p]


def _export_one(job: tuple[str, str]) -> str | None:
    from music21 import converter

    src, dst = job
    try:
        converter.parse(src).write("midi", fp=dst)
        return dst
    except Exception as err:  # one bad score must not stop the export
        log.warning("skipped %s: %s", src, err)
        return None
