"""Soak the daemon: continue mode for a long while, watching timing, memory and CPU.

    python -m midiseed.bench.soak --minutes 30 --model PATH --bpm 180 [--json PATH] [--reseed-bars 4]

Needs a JACK server (started if none runs). `midiseed serve` streams in continue mode at --bpm
on the model's grid (16ths for the shipped models), with a status line every 10 s; a player
re-seeds it with a short phrase every --reseed-bars bars and records every note-on with its
arrival time. Every 10 s the daemon's RSS (/proc/PID/status VmRSS) and CPU time (/proc/PID/stat
utime + stime) are sampled. At the end (SIGTERM) it reports:

- stuck notes: notes left on at the receiver (any: exit status 1); with jack_midi_dump installed,
  a note counts as stuck when both it and the Player saw it left on (see JackDump);
- timing: each onset's deviation from the grid, with the grid's phase fitted per re-seed segment
  (the median; the stream restarts on the grid after each re-seed), p50/p99 of |deviation| over
  the whole run and over the first and last window (5 minutes, or half the run when shorter), and
  how far the fitted phase moved from the first window to the last (a slow drift shows there);
- memory: RSS growth from the sample after the first minute to the last sample, in MB;
- CPU per note: daemon CPU seconds / notes out, first window vs last window.

One summary line, and with --json the figures. Exit status 0, or 1 on stuck notes, a daemon that
died or exited non-zero, or no notes at all.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from midiseed.bench.rig import DaemonProcess, Player, start_server, wait_for_port
from midiseed.bench.rig.player import notes_left_on

SAMPLE_SECONDS = 10.0
SEEDS = [[60, 64], [62, 65, 69], [57, 60], [64, 67, 71], [55, 62]]
CLUSTER_SECONDS = 0.015  # note-ons closer than this are one onset (a chord)
CHANNEL_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}


class JackDump:
    """A second recorder of the daemon's output: jack_midi_dump, JACK's own C client, when installed.

    On a busy machine (a non-real-time dummy JACK server, two cores, training jobs beside it) each
    receiver was seen to miss messages the daemon sent: jack_midi_dump now and then a whole burst
    (a chord's offs and ons), the Player's python-rtmidi input (1.5.8, RtMidi 5.0.0) a burst handed
    over as copies of one message. A lost note-off would look like a stuck note; a note the daemon
    really left on shows at both, so with the dump a note is stuck only when both saw it left on."""

    def __init__(self, folder: Path, daemon_name: str) -> None:
        self.proc = None
        exe = shutil.which("jack_midi_dump")
        if exe is None:
            return
        self.client = f"dump-{daemon_name}"
        self.path = folder / f"{self.client}.txt"
        line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        self.proc = subprocess.Popen(
            [*line_buffered, exe, "-a", self.client], stdout=self.path.open("w"), stderr=subprocess.STDOUT
        )
        try:
            wait_for_port(f"{self.client}:input", timeout=10)
            ports = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.split(
                "\n"
            )
            source = next(p for p in ports if p.endswith(f"{daemon_name}-out"))
            subprocess.run(["jack_connect", source, f"{self.client}:input"], check=True, timeout=10)
        except Exception:
            self.stop()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self) -> list[list[int]] | None:
        """What it saw, in order; None when jack_midi_dump is not there."""
        if self.proc is None:
            return None
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            found = re.match(r"\s*\d+:((?: [0-9a-f]{2})+)", line)
            if found:
                data = [int(x, 16) for x in found.group(1).split()]
                out.append(data[: CHANNEL_LENGTH.get(data[0] & 0xF0, len(data))])
        return out


def compare(player: Player, dump: JackDump) -> dict:
    """The two recorders side by side: counts, messages only one of them saw, notes left on
    (`stuck`: by the Player alone without the dump, else by both)."""
    with player.lock:
        got = Counter(tuple(m) for _, m in player.received)
    seen = dump.messages()
    player_on = player.left_on()
    out = {"player_messages": sum(got.values()), "player_left_on": sorted(player_on)}
    if seen is None:
        return {**out, "jack_midi_dump": "not installed", "stuck": sorted(player_on)}
    dumped = Counter(tuple(m) for m in seen)
    dump_on = notes_left_on(seen)
    return {
        **out,
        "dump_messages": len(seen),
        "only_player_saw": sum((got - dumped).values()),
        "only_dump_saw": sum((dumped - got).values()),
        "dump_left_on": sorted(dump_on),
        "stuck": sorted(player_on & dump_on),
    }


def print_failures(failures: list[str], log: str, tail: int) -> None:
    """Each failed check, then the daemon log's last `tail` lines if any failed."""
    for line in failures:
        print(f"  FAIL {line}")
    if failures:
        print("  daemon log tail:\n" + "\n".join("    " + x for x in log.splitlines()[-tail:]))


def _receivers_line(r: dict) -> str:
    if "dump_messages" not in r:
        return f"Player {r['player_messages']} messages (jack_midi_dump not installed: no cross-check)"
    return (
        f"Player {r['player_messages']} messages, jack_midi_dump {r['dump_messages']}, "
        f"{r['only_player_saw']} only the Player saw, {r['only_dump_saw']} only the dump saw; "
        f"left on: Player {len(r['player_left_on'])}, jack_midi_dump {len(r['dump_left_on'])}, "
        f"both {len(r['stuck'])}"
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    a = np.abs(np.asarray(values)) * 1000
    return {
        "n": len(a),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def onsets(note_ons: list[tuple[float, int]]) -> list[float]:
    """The first note-on of each cluster (a chord is one onset)."""
    out: list[float] = []
    for t, _ in sorted(note_ons):
        if not out or t - out[-1] > CLUSTER_SECONDS:
            out.append(t)
    return out


def _wrap(x: np.ndarray, step: float) -> np.ndarray:
    return (x + step / 2) % step - step / 2


def deviations(times: list[float], bounds: list[float], step: float, origin: float):
    """Per onset (time, deviation from its segment's grid); per segment (start, phase vs `origin`).

    A segment runs from one re-seed to the next; its phase is the median offset of its onsets from
    a grid through `origin`, so the deviation of an onset is its offset minus that median."""
    t = np.asarray(times)
    devs: list[tuple[float, float]] = []
    phases: list[tuple[float, float]] = []
    edges = [*bounds, np.inf]
    for a, b in itertools.pairwise(edges):
        seg = t[(t >= a) & (t < b)]
        if len(seg) < 3:
            continue
        offset = _wrap(seg - origin, step)
        # the median of offsets that may straddle the wrap: centre on the first one, then take it
        centred = _wrap(offset - offset[0], step)
        phase = offset[0] + float(np.median(centred))
        devs += list(zip(seg.tolist(), _wrap(offset - phase, step).tolist()))
        phases.append((float(a), float(_wrap(np.array(phase), step))))
    return devs, phases


def run(args: argparse.Namespace) -> int:
    from midiseed.runtime.engine import Engine

    spb = Engine(args.model, provider="cpu").codec.grid.steps_per_beat
    step = 60.0 / (args.bpm * spb)
    server = start_server()
    tmp = Path(tempfile.mkdtemp(prefix="midiseed-soak-"))
    name = f"soak{os.getpid()}"
    settings = {
        "performance": {"mode": "continue"},
        "timing": {"bpm": args.bpm},
        "log": {"status_seconds": 10},
    }
    daemon = DaemonProcess(tmp, Path(args.model).resolve(), name, settings)
    daemon.wait_for_ports()
    player = Player(name)
    dump = JackDump(tmp, name)
    pid = daemon.proc.pid
    duration = args.minutes * 60
    reseed_every = args.reseed_bars * 4 * 60.0 / args.bpm
    samples: list[dict] = []
    bounds: list[float] = []
    failures: list[str] = []

    def sample(now: float) -> None:
        try:
            rss, cpu = round(rss_mb(pid), 2), cpu_seconds(pid)
        except (OSError, IndexError, ValueError):
            return  # the daemon is gone: the loop says so
        with player.lock:
            out = sum(1 for _, m in player.received if m[0] & 0xF0 == 0x90 and m[2] > 0)
        samples.append({"t": round(now - start, 2), "rss_mb": rss, "cpu_s": cpu, "notes_out": out})

    start = time.monotonic()
    sample(start)
    k = 0
    try:
        next_reseed, next_sample = start, start + SAMPLE_SECONDS
        while (now := time.monotonic()) < start + duration:
            if daemon.proc.poll() is not None:
                failures.append(f"the daemon exited ({daemon.proc.returncode}) after {now - start:.0f} s")
                break
            if now >= next_reseed:
                bounds.append(time.monotonic())
                player.phrase(SEEDS[k % len(SEEDS)], 0.08)
                k += 1
                next_reseed += reseed_every
            if now >= next_sample:
                sample(now)
                next_sample += SAMPLE_SECONDS
            time.sleep(0.02)
        if daemon.proc.poll() is None:
            sample(time.monotonic())
    finally:
        end = time.monotonic()
        try:
            status = daemon.stop()
        except Exception as err:
            daemon.proc.kill()
            status = f"killed ({err})"
        time.sleep(0.3)
        dump.stop()
        receivers = compare(player, dump)
        note_ons = player.note_ons()
        player.close()
        if server is not None:
            server.terminate()
            server.wait(10)

    stuck = receivers["stuck"]
    log = daemon.output()
    status_lines = [line for line in log.splitlines() if "dropped" in line and "notes in" in line]
    shutil.rmtree(tmp, ignore_errors=True)

    times = [t for t in onsets(note_ons) if t <= end]
    window = min(300.0, (end - start) / 2)
    origin = times[0] if times else start
    devs, phases = deviations(times, bounds, step, origin)
    first = [d for t, d in devs if t < start + window]
    last = [d for t, d in devs if t >= end - window]
    first_phase = [p for t, p in phases if t < start + window]
    last_phase = [p for t, p in phases if t >= end - window]
    shift = (
        float(_wrap(np.array(np.median(last_phase) - np.median(first_phase)), step)) * 1000
        if first_phase and last_phase
        else None
    )

    def at(seconds: float) -> dict:
        return min(samples, key=lambda s: abs(s["t"] - seconds))

    def cpu_per_note(a: dict, b: dict) -> float | None:
        notes = b["notes_out"] - a["notes_out"]
        return round((b["cpu_s"] - a["cpu_s"]) / notes * 1000, 3) if notes > 0 else None

    after_minute = at(60.0) if len(samples) > 1 else samples[0]
    final = samples[-1]
    figures = {
        "minutes": args.minutes,
        "seconds_run": round(end - start, 1),
        "bpm": args.bpm,
        "steps_per_beat": spb,
        "step_ms": round(step * 1000, 3),
        "notes_out": len(note_ons),
        "onsets": len(times),
        "reseeds": len(bounds),
        "segments_fitted": len(phases),
        "window_minutes": round(window / 60, 2),
        "deviation": {
            "all": percentiles([d for _, d in devs]),
            "first_window": percentiles(first),
            "last_window": percentiles(last),
            "over_10ms": sum(abs(d) > 0.010 for _, d in devs),
            "phase_shift_first_to_last_ms": None if shift is None else round(shift, 3),
        },
        "rss_mb": {
            "start": samples[0]["rss_mb"],
            "after_first_minute": after_minute["rss_mb"],
            "last": final["rss_mb"],
            "growth_after_first_minute": round(final["rss_mb"] - after_minute["rss_mb"], 2),
        },
        "cpu_ms_per_note": {
            "first_window": cpu_per_note(samples[0], at(window)),
            "last_window": cpu_per_note(at(final["t"] - window), final),
            "whole_run": cpu_per_note(samples[0], final),
        },
        "samples": samples,
        "last_status_line": status_lines[-1].split("INFO ")[-1] if status_lines else None,
        "stuck_notes": stuck,
        "receivers": receivers,
        "exit_status": status,
    }
    if stuck:
        failures.append(f"stuck notes at the receiver: {stuck}")
    if status != 0:
        failures.append(f"daemon exit status {status}")
    if not note_ons:
        failures.append("no notes came out")
    figures["failures"] = failures

    d, r, c = figures["deviation"], figures["rss_mb"], figures["cpu_ms_per_note"]
    w = f"{figures['window_minutes']:g} min"
    print(
        f"soak: {args.minutes:g} min at {args.bpm:g} bpm, {len(note_ons)} notes out, {len(bounds)} re-seeds; "
        f"|deviation| p50 {d['all']['p50_ms']} ms p99 {d['all']['p99_ms']} ms "
        f"(first {w} p99 {d['first_window']['p99_ms']}, last {w} p99 {d['last_window']['p99_ms']}; "
        f"phase moved {d['phase_shift_first_to_last_ms']} ms); "
        f"RSS {r['after_first_minute']:.1f} -> {r['last']:.1f} MB ({r['growth_after_first_minute']:+.2f} MB "
        f"after the first minute); CPU/note {c['first_window']} ms first {w} vs {c['last_window']} ms last; "
        f"{len(stuck)} stuck notes, exit {status}"
    )
    print(f"  receivers: {_receivers_line(receivers)}")
    print_failures(failures, log, 20)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m midiseed.bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--model", required=True, help="an ONNX model exported by `midiseed export`")
    ap.add_argument("--bpm", type=float, default=180.0)
    ap.add_argument(
        "--reseed-bars", type=float, default=4.0, help="a re-seeding phrase this often (4/4 bars)"
    )
    ap.add_argument("--json", help="write the figures here")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
