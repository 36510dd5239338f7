"""What the daemon costs in CPU: idle, and streaming at 120 bpm in continue mode.

CPU is read from /proc/PID/stat (utime + stime, in clock ticks) at the start and end of a window
of wall time; the figure is the share of one core. With a baseline source tree (an older commit
unpacked with `git archive`), its daemon is measured in the same run, interleaved with ours, so
the machine's load falls on both alike:

    python -m midiseed.bench.cpu --baseline /tmp/midiseed-6701c81 [--repeats 5] [--seconds 10]

Each repeat also measures the floor: the JACK threads of `jack_midi_dump` (JACK's own example
client, C, one MIDI input port, nothing else) idling on the same server for the same window. Every
JACK client's process thread wakes once a period (750 times a second at 48 kHz and 64 frames)
whether or not MIDI arrives. python-rtmidi opens one client per port; on JACK the daemon holds
both ports in one (`midiseed/daemon/_jackmidi.c`), so it can idle close to the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from midiseed.bench.rig import DaemonProcess, JackServer, Player, PortWatch
from midiseed.bench.rig.daemon import thread_cpu
from midiseed.bench.stats import Skip, _round, resolve_model

CPU_IDLE_GOAL = 1.0  # % of one core
CPU_STREAM_GOAL = 5.0  # % of one core, streaming at 120 bpm in continue mode
SEED = (55, 60, 64, 67)
SETTLE_SECONDS = 1.0  # after the ports are up (and after the seed note): start-up is not the figure
KINDS = {
    "idle": {},
    "streaming": {"performance": {"mode": "continue"}, "timing": {"bpm": 120}},
}


def _one(model: Path, tmp: Path, watch: PortWatch, name: str, kind: str, seconds: float, source: Path | None):
    """One daemon, one window: ({"total", "main", "jack", "other"} as % of a core, note-ons played)."""
    if not Path("/proc/self/stat").exists():
        raise Skip("no /proc here: CPU time is read from /proc/PID/stat")
    daemon = DaemonProcess(tmp, model, name, KINDS[kind], source)
    player = None
    try:
        daemon.wait_for_ports(watch)
        player = Player(name)  # connected in both kinds, as a keyboard would be
        if kind == "streaming":
            # a chord over an octave: the answer follows the phrase's voices and register, and one
            # note would be answered by a single line (fewer notes than the old daemon played)
            t = time.monotonic()
            for pitch in SEED:
                player.send([0x90, pitch, 100])
            time.sleep(0.1)
            for pitch in SEED:
                player.send([0x80, pitch, 0])
        time.sleep(SETTLE_SECONDS)
        cpu0, threads0, t0 = daemon.cpu_seconds(), daemon.thread_cpu_seconds(), time.monotonic()
        time.sleep(seconds)
        cpu1, threads1, t1 = daemon.cpu_seconds(), daemon.thread_cpu_seconds(), time.monotonic()
        if kind == "streaming" and not player.note_on_times(after=t):
            raise RuntimeError(f"daemon {name} did not stream: {daemon.tail()}")
        share = {k: 100.0 * (threads1[k] - threads0[k]) / (t1 - t0) for k in threads0}
        share["total"] = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        return share, len(player.note_on_times(after=t0))
    finally:
        if player is not None:
            player.close()
        daemon.stop()


def _floor(seconds: float) -> float | None:
    """% of a core that the JACK threads of `jack_midi_dump` (one bare native JACK MIDI client) use
    idling on the server for `seconds`; None when it is not installed or does not come up."""
    if not shutil.which("jack_midi_dump"):
        return None
    proc = subprocess.Popen(["jack_midi_dump"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE_SECONDS)
        if proc.poll() is not None:
            return None

        def cpu() -> float:  # its JACK threads only: its main thread polls for output to print
            return sum(seconds for tid, _, seconds in thread_cpu(proc.pid) if tid != proc.pid)

        c0, t0 = cpu(), time.monotonic()
        time.sleep(seconds)
        return 100.0 * (cpu() - c0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def bench_cpu(
    model: Path,
    tmp: Path,
    watch: PortWatch,
    server: JackServer,
    quick: bool,
    baseline: Path | None = None,
    repeats: int | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Median % of a core, idle and streaming, for our daemon (and the baseline's, interleaved)."""
    repeats = repeats or (1 if quick else 3)
    seconds = seconds or (5.0 if quick else 10.0)
    versions: dict[str, Path | None] = {"now": None}
    if baseline is not None:
        versions["before"] = baseline
    runs: dict[str, dict[str, list[dict[str, float]]]] = {v: {k: [] for k in KINDS} for v in versions}
    notes: dict[str, list[int]] = {v: [] for v in versions}
    xruns: dict[str, int | None] = dict.fromkeys(versions, 0)
    floors: list[float] = []
    for r in range(repeats):
        floor = _floor(seconds)
        if floor is not None:
            floors.append(floor)
        for version, source in versions.items():  # interleaved: the machine's load falls on both
            for kind in KINDS:
                before = server.xruns()
                name = f"mcpu{os.getpid()}-{version}{kind}{r}"
                share, played = _one(model, tmp, watch, name, kind, seconds, source)
                after = server.xruns()
                runs[version][kind].append(share)
                if kind == "streaming":
                    notes[version].append(played)
                    if before is None or after is None:
                        xruns[version] = None
                    elif xruns[version] is not None:
                        xruns[version] += after - before
    out: dict[str, Any] = {}
    for version in versions:
        row: dict[str, Any] = {}
        for kind, shares in runs[version].items():
            row[f"{kind}_pct"] = _round(float(np.median([s["total"] for s in shares])))
            row[f"{kind}_pct_each"] = [_round(s["total"]) for s in shares]
            row[f"{kind}_by_thread_pct"] = {
                p: _round(float(np.median([s[p] for s in shares]))) for p in ("main", "jack", "other")
            }
        row["notes_per_s"] = _round(float(np.median(notes[version])) / seconds)
        row["xruns_streaming"] = xruns[version]
        out[version] = row
    now = out["now"]
    floor = _round(float(np.median(floors))) if floors else None

    def line(row: dict[str, Any]) -> str:
        own = {k: row[f"{k}_by_thread_pct"]["main"] + row[f"{k}_by_thread_pct"]["other"] for k in KINDS}
        return (
            f"idle {row['idle_pct']}%, streaming {row['streaming_pct']}% of a core "
            f"({row['notes_per_s']} notes/s; JACK's own threads in the daemon: idle "
            f"{row['idle_by_thread_pct']['jack']}%, streaming {row['streaming_by_thread_pct']['jack']}%; "
            f"the rest: {_round(own['idle'])}% / {_round(own['streaming'])}%)"
        )

    summary = line(now)
    if floor is not None:
        summary += f"; floor (JACK's threads of one bare native MIDI client, jack_midi_dump, idle): {floor}%"
    if "before" in out:
        summary += f"; before: {line(out['before'])}"
    if now["xruns_streaming"] is not None:
        summary += f"; jackd xruns while streaming: {now['xruns_streaming']}"
        if "before" in out:
            summary += f" (before: {out['before']['xruns_streaming']})"
    out.update(
        how=(
            f"median of {repeats}: /proc/PID/stat utime+stime over {seconds:g} s of wall time, "
            f"{SETTLE_SECONDS:g} s after the ports are up (a player connected); streaming = continue "
            f"mode at 120 bpm after a seed chord {list(SEED)}; by thread: the main loop, JACK's process "
            "threads (real-time, rt_priority not 20), the rest"
            + ("; the baseline's daemon interleaved with ours" if baseline else "")
        ),
        summary=summary,
        floor_idle_pct=floor,
        floor_idle_pct_each=[_round(f) for f in floors],
        goal=f"idle <= {CPU_IDLE_GOAL:g}%, streaming <= {CPU_STREAM_GOAL:g}% of a core",
        met=now["idle_pct"] <= CPU_IDLE_GOAL and now["streaming_pct"] <= CPU_STREAM_GOAL,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m midiseed.bench.cpu`: the CPU section alone, optionally beside a baseline tree."""
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.cpu", description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="ONNX model (default: the shipped one)")
    ap.add_argument("--baseline", type=Path, help="another midiseed source tree to measure side by side")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    model = resolve_model(args.model)
    with (
        tempfile.TemporaryDirectory(prefix="midiseed-cpu-") as name,
        JackServer(Path(name) / "jackd.log") as server,
    ):
        watch = PortWatch(f"mcpu{os.getpid()}-watch")
        try:
            result = bench_cpu(
                model, Path(name), watch, server, False, args.baseline, args.repeats, args.seconds
            )
        finally:
            watch.close()
        result["jack"] = server.describe()
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
