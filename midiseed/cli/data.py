"""`midiseed data`: prepare training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import data_app, setup_logging, user_errors
from midiseed.errors import require_extra


@data_app.command("music21")
@user_errors
def data_music21(
    out: Annotated[Path, typer.Option(help="Folder to write the .mid files to (one folder a collection).")],
    collection: Annotated[
        list[str] | None,
        typer.Option(help="A collection of music21's corpus (its top folder: bach, essenFolksong, ...)."),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every collection music21 ships.")] = False,
    composer: Annotated[
        str | None, typer.Option(help="A composer; alone: that composer's pieces flat in OUT (bach).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many pieces a collection.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Processes (default: all cores).")] = None,
    piece_seconds: Annotated[
        float, typer.Option(min=1, help="Skip a piece music21 takes longer than this on (retried if raised).")
    ] = 60.0,
) -> None:
    """Write the corpus bundled with music21 as .mid files, one per piece (an ABC tune is a piece).

    With no --collection, --all or --composer: the Bach chorales, flat in OUT. A re-run skips the
    pieces already written and those recorded as failed."""
    setup_logging()
    require_extra("midiseed data music21", ("music21",))
    from midiseed.cli._progress import ProgressLine
    from midiseed.training.music21_export import collections, export_music21

    names = list(collections()) if all_ else (list(collection) if collection else None)
    line = ProgressLine()

    def progress(p) -> None:
        line.update(p.files_done, p.files_total, f"{p.written} pieces written, {p.failed} failed")

    composer = composer if names is not None or composer else "bach"  # alone, the old default
    report = export_music21(out, composer, limit, workers, names, progress, piece_seconds)
    line.close()
    for piece, why in sorted(report.failed.items()):
        typer.echo(f"skipped {piece}: {why}", err=True)
    where = f": see {out}/music21_failed.json" if report.failed else ""
    typer.echo(
        f"wrote {report.written} MIDI files to {out} ({report.existing} there or failed before, "
        f"{len(report.failed)} skipped now{where}) in {report.seconds:.1f} s"
    )


SHOWN = 20  # files skipped (and files cut) listed with their reasons after a tokenize run


@data_app.command("tokenize")
@user_errors
def data_tokenize(
    midi_dir: Annotated[Path, typer.Argument(help="Folder of .mid/.midi/.kar files, read recursively.")],
    out: Annotated[Path, typer.Option(help="Token store folder to create or update.")],
    workers: Annotated[int | None, typer.Option(min=1, help="Worker processes (default: all cores).")] = None,
    include_drums: Annotated[bool, typer.Option(help="Keep drum tracks (channel 10).")] = False,
) -> None:
    """Tokenise a MIDI folder into a token store for training; a re-run updates only what changed."""
    setup_logging()
    from midiseed.cli._progress import ProgressLine
    from midiseed.training.store import TokenStore, tokenize

    line = ProgressLine()
    # on a terminal only, as before: a log gets the summary line alone
    report = tokenize(midi_dir, out, workers, line.update if line.tty else None, include_drums)
    line.close()
    store = TokenStore.open(out)
    for what, found in (("skipped", store.skipped), ("cut", store.cuts)):
        for path, why in sorted(found.items())[:SHOWN]:
            typer.echo(f"{what} {path}: {why if isinstance(why, str) else '; '.join(why)}", err=True)
        if len(found) > SHOWN:
            typer.echo(
                f"... {len(found) - SHOWN} more {what}: every reason is in {out}/manifest-*.jsonl", err=True
            )
    typer.echo(f"tokenized {report.summary()} -> {out}")
