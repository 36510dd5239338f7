"""`midiseed bench`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import app, setup_logging, user_errors


@app.command()
@user_errors
def bench(
    model: Annotated[
        str | None, typer.Option(help="ONNX model: a path or a shipped name (default: the shipped one).")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(help="MIDI folder for the data figures (default: data/music21/bach).")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fewer repetitions (about a minute).")] = False,
    jack: Annotated[
        bool, typer.Option(help="Measure through real JACK ports (starts a dummy server).")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of the table.")] = False,
    save: Annotated[Path | None, typer.Option(help="Also write the JSON results here.")] = None,
) -> None:
    """Measure step latency, the seed approach side by side, data speed, and live timing on JACK."""
    setup_logging()
    import json

    from midiseed.bench import format_table, run_bench

    default_data = Path(__file__).resolve().parents[2] / "data" / "music21" / "bach"
    results = run_bench(
        model, quick=quick, jack=jack, data_dir=data or (default_data if default_data.is_dir() else None)
    )
    text = json.dumps(results, indent=1)
    if save is not None:
        save.write_text(text)
    typer.echo(text if as_json else format_table(results))
