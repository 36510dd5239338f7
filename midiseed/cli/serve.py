"""`midiseed serve`, `status`, `ports` and `panic`: the daemon and its MIDI system."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import typer

from midiseed.cli._app import app, setup_logging, user_errors
from midiseed.errors import UserError

# The default config travels inside the package, beside the shipped models.
DEFAULT_CONFIG = Path(str(files("midiseed") / "config.toml"))


@app.command()
@user_errors
def serve(
    config: Annotated[
        Path | None, typer.Option(help="A config.toml (default: the one beside midiseed).")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="ONNX model (default: the shipped one).")] = None,
    backend: Annotated[str | None, typer.Option(help="auto, alsa, jack, coremidi or windows.")] = None,
    mode: Annotated[
        str | None, typer.Option(help="respond (call and response) or continue (a stream).")
    ] = None,
    bpm: Annotated[float | None, typer.Option(help="Internal tempo.")] = None,
    clock: Annotated[
        str | None, typer.Option(help="internal, or midi to follow the DAW's MIDI clock.")
    ] = None,
    provider: Annotated[str | None, typer.Option(help="onnxruntime provider: auto, cpu or cuda.")] = None,
    record: Annotated[
        Path | None, typer.Option(help="Record every session to a .mid file in this folder.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every note (debug level).")] = False,
) -> None:
    """Run the daemon: virtual MIDI ports in and out, answering what is played, in time."""
    from midiseed.daemon import config as daemon_config

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    overrides = {
        "model": str(model) if model else None,
        "backend": backend,
        "mode": mode,
        "bpm": bpm,
        "clock": clock,
        "provider": provider,
        "log_level": "debug" if verbose else None,
        "record": str(record) if record else None,
    }
    cfg = daemon_config.override(daemon_config.load(path), **overrides)
    setup_logging(cfg.log_level == "debug")
    logging.getLogger().setLevel(cfg.log_level.upper())
    from midiseed.daemon.service import Service

    def reread() -> daemon_config.Config:
        return daemon_config.override(daemon_config.load(path), **overrides)

    raise typer.Exit(Service(cfg, reload_config=reread).run())


@app.command()
@user_errors
def status(
    config: Annotated[Path | None, typer.Option(help="The config.toml the daemon was started with.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full JSON.")] = False,
) -> None:
    """Ask a running daemon (over its local socket) what it has heard, played and dropped."""
    import json

    from midiseed.daemon import config as daemon_config
    from midiseed.daemon.status import ask, socket_path, status_line

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = daemon_config.load(path)
    where = socket_path(cfg.status_socket, cfg.client_name)
    try:
        info = ask(where)
    except (FileNotFoundError, ConnectionRefusedError) as err:
        raise UserError(f"no midiseed is running with status socket {where}") from err
    if as_json:
        typer.echo(json.dumps(info, indent=1))
        return
    typer.echo(
        f"midiseed pid {info['pid']}, up {info['uptime_s']:.0f} s, {info['mode']}: {status_line(info)}"
    )


@app.command()
@user_errors
def ports(
    config: Annotated[
        Path | None,
        typer.Option(help="The config.toml whose port names to look for (default: the shipped one)."),
    ] = None,
) -> None:
    """Where to play into midiseed and where to listen to it, and the other MIDI ports, per MIDI system."""
    from midiseed.daemon import config as daemon_config
    from midiseed.daemon.ports import list_ports

    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    cfg = daemon_config.load(path)
    client, in_port, out_port = cfg.client_name, cfg.in_port, cfg.out_port
    # what each system will call our ports once `serve` runs (rtmidi: the output is its own client;
    # JACK with midiseed's JACK extension: one client for both)
    from midiseed.daemon import jackports

    jack_out = f"{client}:{out_port}" if jackports.available() else f"{client}-out:{out_port}"
    expected = {
        "jack": (f"{client}:{in_port}", jack_out),
        "alsa": (f"{client}:{in_port}", f"{client}-out:{out_port}"),
        "coremidi": (in_port, out_port),
        "windows": (f"{in_port} (a loopMIDI port)", f"{out_port} (a loopMIDI port)"),
    }
    for backend, info in list_ports(client, in_port, out_port).items():
        if isinstance(info, str):
            typer.echo(f"{backend}: {info}")
            continue
        state = "running" if info["play_into"] else f"not running (midiseed serve --backend {backend})"
        typer.echo(f"{backend}: midiseed is {state}")
        play_into = ", ".join(info["play_into"]) or f"{expected[backend][0]} (once it runs)"
        listen_to = ", ".join(info["listen_to"]) or f"{expected[backend][1]} (once it runs)"
        typer.echo(f"  play into:    {play_into}  <- your keyboard or player")
        typer.echo(f"  listen to:    {listen_to}  -> a synth or a DAW track")
        typer.echo(f"  keyboards, players (sources): {', '.join(info['sources']) or '(none)'}")
        typer.echo(f"  synths, DAW inputs (destinations): {', '.join(info['destinations']) or '(none)'}")


@app.command()
@user_errors
def panic(
    port: Annotated[str, typer.Option(help="The port (or part of its name) that plays the stuck notes.")],
    backend: Annotated[str, typer.Option(help="auto, alsa, jack, coremidi or windows.")] = "auto",
) -> None:
    """Send all notes off to a port: for a receiver left with notes on after midiseed was killed (-9)."""
    from midiseed.daemon.ports import panic as send_panic

    sent = send_panic(backend, port)
    typer.echo(f"sent {sent} messages (sustain off, all sound off, all notes off, every note off) to {port}")
