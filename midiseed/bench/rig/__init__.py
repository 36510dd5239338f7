"""One JACK rig for the tests, the bench, the soak, the fuzzer and the scripts: a JACK dummy
server (server.py), `midiseed serve` in its own process (daemon.py), and a player client in this
one (player.py).

    python -m midiseed.bench.rig jackd [--log FILE]

starts the server the way every other user here does (the scripts call it) and prints its PID,
or nothing when a server already answers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from midiseed.bench.rig.daemon import DaemonProcess, daemon_config
from midiseed.bench.rig.player import Player, sleep_until
from midiseed.bench.rig.server import (
    DRIVER,
    MODES,
    PERIOD,
    JackServer,
    PortWatch,
    jack_answers,
    jack_tool,
    launch_jackd,
    start_server,
    wait_for_port,
)
from midiseed.bench.stats import Skip

__all__ = [
    "DRIVER",
    "MODES",
    "PERIOD",
    "DaemonProcess",
    "JackServer",
    "Player",
    "PortWatch",
    "daemon_config",
    "jack_answers",
    "jack_tool",
    "launch_jackd",
    "main",
    "sleep_until",
    "start_server",
    "wait_for_port",
]


def main(argv: list[str] | None = None) -> int:
    """`python -m midiseed.bench.rig jackd`: for the scripts, which share this JACK setup."""
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.rig", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    jackd = sub.add_parser("jackd", help="start JACK_DEFAULT_SERVER's server if none answers; print its PID")
    jackd.add_argument("--log", type=Path, help="jackd's output goes here")
    args = ap.parse_args(argv)
    if jack_answers():
        return 0
    try:
        proc = launch_jackd(args.log, detach=True)  # outlives this process: the script stops it
    except Skip as err:
        print(f"could not start a JACK server: {err}", file=sys.stderr)
        return 1
    print(proc.pid)
    return 0
