"""`midiseed data`: prepare training data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import data_app, setup_logging, user_errors


@data_app.command("music21")
@user_errors
def data_music21(
    out: Annotated[Path, typer.Option(help="Folder to write the .mid files to.")],
    composer: Annotated[str, typer.Option(help="A composer in music21's bundled corpus.")] = "bach",
    limit: Annotated[int | None, typer.Option(min=1, help="Write at most this many pieces.")] = None,
) -> None:
    """Write pieces from the corpus bundled with music21 as .mid files (offline training data)."""
    setup_logging()
    from midiseed.training.music21_export import export_music21

    written = export_music21(out, composer, limit)
    typer.echo(f"wrote {len(written)} MIDI files to {out}")
