"""What the live daemon costs on JACK ports: ``cold_start``, ``reaction``, ``jitter``, ``clock``."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from midiseed.bench.rig import DaemonProcess, JackServer, Player, PortWatch, sleep_until
from midiseed.bench.stats import _round, clock_delays, grid_deviations, latency_stats, onset_groups

COLD_START_GOAL_S = 1.5
RSS_GOAL_MB = 150.0
SEED = (55, 60, 64, 67)  # the chord that starts a stream
EXTRA_DELAY_GOAL_MS = 1.0  # reaction: over one JACK period; jitter: |deviation|; clock: over the JACK hops


def _unique(label: str) -> str:
    return f"mbench{os.getpid()}-{label}"


@contextmanager
def running_daemon(
    tmp: Path, model: Path, name: str, settings: dict[str, dict[str, Any]], watch: PortWatch
) -> Iterator[tuple[DaemonProcess, Player]]:
    """A daemon with its ports up and a player connected to it; both always stopped on the way out."""
    daemon = DaemonProcess(tmp, model, name, settings)
    player = None
    try:
        daemon.wait_for_ports(watch)
        player = Player(name)
        yield daemon, player
    finally:
        if player is not None:
            player.close()
        daemon.stop()


def measure_jack_hop(tag: str, count: int = 50, spacing_s: float = 0.01) -> list[float]:
    """One JACK hop with nothing in between: an rtmidi output in this process straight into an
    rtmidi input in this process; seconds from send to arrival, per message."""
    import rtmidi

    arrivals: list[float] = []
    rec = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=f"{tag}-hop-rec")
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=f"{tag}-hop-send")
    try:
        rec.open_virtual_port(f"{tag}-hop-in")
        rec.set_callback(lambda event, _data=None: arrivals.append(time.monotonic()))
        deadline = time.monotonic() + 5
        while not any(f"{tag}-hop-in" in p for p in out.get_ports()):
            if time.monotonic() > deadline:
                raise RuntimeError("the loopback port did not appear")
            time.sleep(0.01)
        out.open_port(Player._index(out.get_ports(), f"{tag}-hop-in"))
        time.sleep(0.2)
        hops = []
        for i in range(count):
            before = len(arrivals)
            t0 = time.monotonic()
            out.send_message([0x90, 60 + i % 12, 64])
            sleep_until(t0 + spacing_s)
            if len(arrivals) > before:
                hops.append(arrivals[before] - t0)
        return hops
    finally:
        rec.cancel_callback()
        time.sleep(0.02)
        for port in (rec, out):
            port.close_port()
            port.delete()


# ---- 6. cold_start -------------------------------------------------------------------------------


def bench_cold_start(model: Path, tmp: Path, watch: PortWatch, runs: int = 3) -> dict[str, Any]:
    """Launch -> output port visible in JACK, and the daemon's peak RSS after ~1 s of idling."""
    starts, rss = [], []
    for i in range(runs):
        daemon = DaemonProcess(tmp, model, _unique(f"cold{i}"), {})
        try:
            starts.append(daemon.wait_for_ports(watch))
            time.sleep(1.0)
            rss.append(daemon.peak_rss_mb())
        finally:
            daemon.stop()
    start_s, rss_mb = float(np.median(starts)), float(np.median(rss))
    return {
        "seconds": _round(start_s),
        "seconds_each": [_round(s) for s in starts],
        "peak_rss_mb": _round(rss_mb),
        "peak_rss_mb_each": [_round(r) for r in rss],
        "how": (
            f"median of {runs}: `python -m midiseed serve` launched -> its output port listed by JACK "
            "(polled every 5 ms); VmHWM after the ports are up and 1 s idle"
        ),
        "summary": f"{start_s:.2f} s to ports, peak RSS {rss_mb:.0f} MB",
        "goal": f"<= {COLD_START_GOAL_S:g} s, <= {RSS_GOAL_MB:g} MB",
        "met": start_s <= COLD_START_GOAL_S and rss_mb <= RSS_GOAL_MB,
    }


# ---- 7. reaction ---------------------------------------------------------------------------------


def bench_reaction(model: Path, tmp: Path, watch: PortWatch, jack: JackServer, quick: bool) -> dict[str, Any]:
    """Note in -> first answering note-on back, in continue mode with no chord window and no quantising."""
    notes = 20 if quick else 50
    # 20 bpm: a grid step is 0.75 s, so between two played notes (300 ms) only the reaction itself plays
    settings = {
        "performance": {"mode": "continue"},
        "timing": {"chord_ms": 0, "quantize_start": False, "bpm": 20},
    }
    latencies, missed = [], 0
    with running_daemon(tmp, model, _unique("react"), settings, watch) as (_daemon, player):
        time.sleep(0.3)
        for i in range(notes):
            pitch = 60 + (i * 5) % 12
            t_send = player.send([0x90, pitch, 100])
            sleep_until(t_send + 0.15)
            player.send([0x80, pitch, 0])
            sleep_until(t_send + 0.3)
            answers = player.note_on_times(after=t_send)
            if answers:
                latencies.append(answers[0] - t_send)
            else:
                missed += 1
    hops = measure_jack_hop(_unique("rhop"))
    if not latencies:
        raise RuntimeError(f"the daemon answered none of {notes} notes")
    stats = latency_stats(latencies)
    period = jack.period_s
    out: dict[str, Any] = {
        **stats,
        "missed": missed,
        "jack": jack.describe(),
        "jack_period_ms": _round(period * 1000) if period else None,
        "jack_hop": latency_stats(hops) if hops else None,
        "how": (
            f"{notes} single note-ons 300 ms apart, continue mode, chord_ms 0, quantize_start false; "
            "note-on sent -> first answering note-on stamped in the player's rtmidi callback (two JACK "
            "hops + a beat of generation); jack_hop = one bare JACK hop measured alongside"
        ),
        "summary": f"p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms ({jack.describe()})",
    }
    if period:
        limit = period * 1000 + EXTRA_DELAY_GOAL_MS
        out["goal"] = f"p99 <= JACK period + 1 ms = {limit:.2f} ms"
        out["met"] = stats["p99_ms"] <= limit
    else:
        out["goal"] = "p99 <= JACK period + 1 ms (period unknown)"
        out["met"] = None
    if missed:
        out["summary"] += f"; {missed} notes got no answer"
    return out


# ---- 8. jitter -----------------------------------------------------------------------------------


def bench_jitter(model: Path, tmp: Path, watch: PortWatch, quick: bool) -> dict[str, Any]:
    """A steady stream at 120 and 180 bpm: each onset's distance from the ideal sixteenth grid."""
    from midiseed.runtime.engine import read_info

    steps_per_beat = read_info(model).codec.grid.steps_per_beat
    seconds = 10.0 if quick else 60.0
    out: dict[str, Any] = {}
    every: list[np.ndarray] = []
    for bpm in (120, 180):
        step_s = 60.0 / (bpm * steps_per_beat)
        settings = {"performance": {"mode": "continue"}, "timing": {"bpm": bpm}}
        with running_daemon(tmp, model, _unique(f"jit{bpm}"), settings, watch) as (_daemon, player):
            # a chord over an octave: the answer follows the phrase's voices and register, and a single
            # note is answered by a single line that may hold one pitch for bars (few onsets to time)
            t_seed = player.send([0x90, 55, 100])
            for pitch in SEED[1:]:
                player.send([0x90, pitch, 100])
            sleep_until(t_seed + 0.1)
            for pitch in SEED:
                player.send([0x80, pitch, 0])
            sleep_until(t_seed + seconds)
            arrivals = player.note_on_times(after=t_seed)
        onsets = onset_groups(arrivals, step_s / 4)
        if len(onsets) < 3:
            raise RuntimeError(f"only {len(onsets)} onsets at {bpm} bpm in {seconds:g} s")
        dev = np.abs(grid_deviations(onsets, step_s))
        every.append(dev)
        out[f"bpm_{bpm}"] = {**latency_stats(dev), "onsets": len(onsets), "step_ms": _round(step_s * 1000)}
    stats = latency_stats(np.concatenate(every))
    parts = ", ".join(f"{k[4:]} bpm p50 {v['p50_ms']} / p99 {v['p99_ms']} ms" for k, v in out.items())
    out.update(
        stats,
        how=(
            f"continue mode, one seed chord (G3 C4 E4 G4), {seconds:g} s at 120 then 180 bpm; note-on "
            "arrivals grouped into onsets; |deviation| from the nearest sixteenth relative to the first "
            "onset, phase fitted as the median offset"
        ),
        summary=f"all: p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms ({parts})",
        goal=f"p99 |deviation| <= {EXTRA_DELAY_GOAL_MS:g} ms",
        met=stats["p99_ms"] <= EXTRA_DELAY_GOAL_MS,
    )
    return out


# ---- 9. clock ------------------------------------------------------------------------------------


def bench_clock(
    model: Path, tmp: Path, watch: PortWatch, quick: bool, reaction: dict[str, Any] | None
) -> dict[str, Any]:
    """Follow a MIDI clock ramping 90 -> 150 bpm: each answer note-on against the pulse it belongs on."""
    from midiseed.daemon.tempo import CLOCKS_PER_BEAT
    from midiseed.runtime.engine import read_info

    pulses_per_step = CLOCKS_PER_BEAT // read_info(model).codec.grid.steps_per_beat
    seconds = 8.0 if quick else 20.0
    settings = {"performance": {"mode": "continue"}, "timing": {"clock": "midi"}}
    pulses: list[float] = []
    lateness: list[float] = []  # each pulse's send time minus its scheduled time: the rig's own error
    with running_daemon(tmp, model, _unique("clock"), settings, watch) as (daemon, player):
        player.send([0xFA])  # Start: the next pulse is pulse 0
        start = time.monotonic() + 0.05
        target, t_note = start, None
        i = 0
        while target - start < seconds:
            sleep_until(target)
            pulses.append(player.send([0xF8]))
            lateness.append(pulses[-1] - target)
            if i == CLOCKS_PER_BEAT:  # one beat in, play a chord to start the stream (see bench_jitter)
                t_note = player.send([0x90, SEED[0], 100])
                for pitch in SEED[1:]:
                    player.send([0x90, pitch, 100])
            elif i == CLOCKS_PER_BEAT + 12:
                for pitch in SEED:
                    player.send([0x80, pitch, 0])
            bpm = 90.0 + 60.0 * min(1.0, (target - start) / seconds)
            target += 60.0 / (bpm * CLOCKS_PER_BEAT)
            i += 1
        time.sleep(0.05)
        arrivals = player.note_on_times(after=t_note if t_note is not None else start)
        player.send([0xFC])  # Stop
    status = daemon.final_status()
    dropped = status.get("dropped")
    hops = measure_jack_hop(_unique("chop"))
    if not arrivals:
        raise RuntimeError(
            f"the daemon played nothing while following the clock (its counts: {status or daemon.tail()})"
        )
    delays = clock_delays(arrivals, pulses, pulses_per_step)
    stats = latency_stats(delays)
    hop = latency_stats(hops) if hops else None
    out: dict[str, Any] = {
        **stats,
        "pulses": len(pulses),
        "pulse_lateness": latency_stats(lateness),
        "pulses_late_over_1ms": int(np.sum(np.asarray(lateness) > 0.001)),
        "daemon_dropped": int(dropped) if dropped and dropped.isdigit() else dropped,
        "jack_hop": hop,
        "reaction_p50_ms": reaction.get("p50_ms") if reaction else None,
        "how": (
            f"Start, then 24 ppqn ramping 90 -> 150 bpm over {seconds:g} s (sleep, then spin the last ms), "
            f"one chord to start the stream; each answer note-on minus the send time of the nearest pulse "
            f"with index % {pulses_per_step} == 0; additional = that minus two bare JACK hops (p50, "
            "measured alongside): the pulse in and the note out; pulse_lateness = the player's own error"
        ),
        "goal": f"p99 additional delay <= {EXTRA_DELAY_GOAL_MS:g} ms",
    }
    summary = f"p50 {stats['p50_ms']} ms, p99 {stats['p99_ms']} ms after the pulse ({len(delays)} notes)"
    if hop:
        extra = latency_stats(delays - 2 * hop["p50_ms"] / 1000)
        out["additional"] = extra
        out["met"] = extra["p99_ms"] <= EXTRA_DELAY_GOAL_MS
        summary += (
            f"; additional p50 {extra['p50_ms']} / p99 {extra['p99_ms']} ms (hop p50 {hop['p50_ms']} ms)"
        )
    else:
        out["met"] = None
    late = out["pulse_lateness"]
    if late["p99_ms"] > EXTRA_DELAY_GOAL_MS:
        summary += (
            f"; NB the player's own pulses were late (p99 {late['p99_ms']} ms, "
            f"{out['pulses_late_over_1ms']} over 1 ms: the machine is busy), so pulses may have been lost "
            "on the way and these figures overstate the daemon's delay"
        )
    if dropped and dropped != "0":
        summary += f"; the daemon dropped {dropped} messages (pulses taken for a flood lose the count)"
    if reaction and reaction.get("p50_ms") is not None:
        summary += f"; reaction round trip p50 {reaction['p50_ms']} ms"
    out["summary"] = summary
    return out
