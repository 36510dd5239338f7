"""Fuzz the daemon's live input: a seeded stream of valid, invalid and partial MIDI into `midiseed serve`.

    python -m midiseed.bench.fuzz_live --seed 0 --messages 100000 --model PATH [--keep DIR]

Needs a JACK server (started if none runs). The stream is paced the way JACK can carry it (a few
messages, at most ~160 bytes, every 3 ms) and mixes notes, controllers (the mode, reload and
panic CCs included: they are legitimate input), other channel messages, bad data bytes,
out-of-range values, partial and over-long messages, lone data bytes, sysex (terminated, with
junk inside, and unterminated), clock and other real-time bytes, and system-common messages.
Every ~4 s the flood pauses: an 0xF7 ends any open sysex, the notes the stream left on get their
note-offs (as a real stream eventually would), and a short phrase is played; it counts as
answered when note-ons come out after it (in respond or continue mode alike) within 2.5 s, or,
failing that, within 1.5 s of an end-of-call CC. At the end: 0xF7, the panic CC and SIGTERM.
Passes when the daemon lived through it and exited 0, no note is left on at the receiver (with
jack_midi_dump installed: at both it and the Player; see midiseed.bench.soak.JackDump), its final status
line counts dropped messages, and at least 75 % of the phrases were answered.
Exit status 0 on success, 1 on failure.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from midiseed.bench.rig import DaemonProcess, Player, start_server
from midiseed.bench.soak import JackDump, _receivers_line, compare, print_failures

TICK = 0.003  # seconds between batches
PER_TICK = 4  # messages a batch ...
BYTES_PER_TICK = 160  # ... and bytes (a JACK period carries ~256)
SEGMENT_SECONDS = 4.0  # flood between two phrases
PHRASES = [[60, 64, 67, 72], [62, 65, 69], [55, 59, 62, 67], [64, 62, 60], [67, 71, 74, 79]]


class Pacer:
    """Holds a sender to PER_TICK messages / BYTES_PER_TICK bytes per TICK; late: goes on from now."""

    def __init__(self) -> None:
        self.next = time.monotonic()
        self.count = self.bytes = 0

    def before(self, size: int) -> None:
        if self.count >= PER_TICK or (self.count and self.bytes + size > BYTES_PER_TICK):
            self.next += TICK
            now = time.monotonic()
            if now > self.next + 0.05:  # this process was held up: never catch up in a burst
                self.next = now
            while (left := self.next - time.monotonic()) > 0:
                time.sleep(left)
            self.count = self.bytes = 0
        self.count += 1
        self.bytes += size


class Fuzzer:
    """Seeded random messages, and what the daemon's input will have made of them (notes left on)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n = 0
        self.offs: list[tuple[int, list[int]]] = []  # (due at message n, note-off) for valid note-ons
        self.close_sysex_at: int | None = None  # an open sysex gets its 0xF7 at this message
        self.in_sysex = False  # as rtmidi's JACK input sees it: an open sysex swallows what follows
        self.sounding: set[tuple[int, int]] = set()  # note-ons that reached the daemon, not yet off
        kinds = {
            "note": 18,
            "cc": 8,
            "channel": 6,
            "bad data": 8,
            "out of range": 4,
            "partial": 8,
            "wrong length": 2,
            "lone data": 8,
            "sysex": 5,
            "sysex junk": 1,
            "sysex open": 1,
            "clock": 10,
            "realtime": 3,
            "common": 4,
            "too long": 1,
        }
        self.kinds, self.weights = list(kinds), list(kinds.values())

    def next(self) -> list[int]:
        self.n += 1
        if self.close_sysex_at is not None and self.n >= self.close_sysex_at:
            self.close_sysex_at = None
            return [0xF7]
        if self.offs and self.offs[0][0] <= self.n:
            return self.offs.pop(0)[1]
        return self._make(self.rng.choices(self.kinds, self.weights)[0])

    def _make(self, kind: str) -> list[int]:
        r = self.rng
        ch = r.randrange(16) if r.random() < 0.5 else 0
        data = lambda: r.randrange(128)  # noqa: E731
        if kind == "note":
            pitch = r.randrange(24, 108) if r.random() < 0.9 else data()
            off = [0x80 | ch, pitch, data()] if r.random() < 0.5 else [0x90 | ch, pitch, 0]
            self.offs.append((self.n + r.choice([1, 2, 5, 20, 60]), off))
            self.offs.sort(key=lambda x: x[0])
            return [0x90 | ch, pitch, r.randrange(1, 128)]
        if kind == "cc":
            return [0xB0 | ch, data(), data()]
        if kind == "channel":
            return r.choice(
                [
                    [0xC0 | ch, data()],
                    [0xD0 | ch, data()],
                    [0xA0 | ch, data(), data()],
                    [0xE0 | ch, data(), data()],
                ]
            )
        if kind == "bad data":
            msg = [r.randrange(0x80, 0xF0), data(), data()]
            msg[r.choice([1, 2])] = r.randrange(0x80, 0x100)
            return msg
        if kind == "out of range":
            return [r.choice([0x90, 0x80, 0xB0, 0xE0]) | ch, r.randrange(128, 256), r.randrange(256)]
        if kind == "partial":
            return r.choice([[0x90 | ch], [0x90 | ch, data()], [0xB0 | ch, data()], [0xE0 | ch], [0xC0 | ch]])
        if kind == "wrong length":
            return r.choice([[0xC0 | ch, data(), data()], [0xD0 | ch, data(), data()]])
        if kind == "lone data":
            return [data() for _ in range(r.randint(1, 3))]
        if kind == "sysex":
            n = 200 if r.random() < 0.02 else r.randint(0, 60)
            return [0xF0, *(data() for _ in range(n)), 0xF7]
        if kind == "sysex junk":
            return [0xF0, data(), r.randrange(0x80, 0xF7), data(), 0xF7]
        if kind == "sysex open":
            if self.close_sysex_at is None:
                self.close_sysex_at = self.n + r.choice([1, 5, 30, 200])
            return [0xF0, *(data() for _ in range(r.randint(1, 20)))]
        if kind == "clock":
            return [0xF8]
        if kind == "realtime":
            return [r.choice([0xFA, 0xFB, 0xFC, 0xFE, 0xFF])]
        if kind == "common":
            return r.choice(
                [
                    [0xF1, data()],
                    [0xF2, data(), data()],
                    [0xF3, data()],
                    [0xF6],
                    [0xF4],
                    [0xF5],
                    [0xF9],
                    [0xFD],
                    [0xF7],
                    [0xF2, data()],
                ]
            )
        return [0x90 | ch, data(), data(), data()]  # too long: rtmidi refuses it at the sender

    def delivered(self, msg: list[int]) -> None:
        """Track what the daemon's input makes of a message that was sent."""
        status = msg[0]
        if status == 0xF0:
            self.in_sysex = msg[-1] != 0xF7
            return
        if status in (0xF1, 0xF8, 0xFE):
            return
        if self.in_sysex:
            self.in_sysex = msg[-1] != 0xF7  # swallowed as sysex data; an 0xF7 at its end closes it
            return
        if len(msg) == 3 and 0x80 <= status < 0xA0 and msg[1] < 128 and msg[2] < 128:
            if status >= 0x90 and msg[2] > 0:
                self.sounding.add((status & 0x0F, msg[1]))
            else:
                self.sounding.discard((status & 0x0F, msg[1]))

    def releases(self) -> list[list[int]]:
        """What ends the stream's loose ends: an 0xF7, then a note-off for every note left on."""
        self.offs.clear()
        self.close_sysex_at = None
        return [[0xF7]] + [[0x80 | ch, p, 0] for ch, p in sorted(self.sounding)]


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    server = start_server()
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="midiseed-fuzzlive-"))
    tmp.mkdir(parents=True, exist_ok=True)
    name = f"fuzzlive{os.getpid()}"
    daemon = DaemonProcess(tmp, Path(args.model).resolve(), name, {"log": {"status_seconds": 1}})
    daemon.wait_for_ports()
    player = Player(name)
    dump = JackDump(tmp, name)
    fuzzer = Fuzzer(rng)
    pacer = Pacer()
    sent = rejected = 0
    phrases: list[dict] = []
    failures: list[str] = []

    def send(msg: list[int]) -> bool:
        nonlocal rejected
        pacer.before(len(msg))
        try:
            player.send(msg)
        except (ValueError, RuntimeError, OverflowError, TypeError):
            rejected += 1
            return False
        return True

    def notes_after(t: float) -> list[float]:
        return [when for when, _ in player.note_ons() if when > t]

    start = time.monotonic()
    try:
        while sent < args.messages:
            segment_end = time.monotonic() + SEGMENT_SECONDS
            while sent < args.messages and time.monotonic() < segment_end:
                msg = fuzzer.next()
                sent += 1
                if send(msg):
                    fuzzer.delivered(msg)
            if daemon.proc.poll() is not None:
                failures.append(f"the daemon exited ({daemon.proc.returncode}) after {sent} messages")
                break
            for msg in fuzzer.releases():
                send(msg)
            fuzzer.sounding.clear()
            time.sleep(0.05)
            player.phrase(rng.choice(PHRASES), 0.1)
            end = time.monotonic()
            record = {"at": round(end - start, 1), "answered": None, "latency": None}
            deadline = end + 2.5
            while time.monotonic() < deadline and not notes_after(end):
                time.sleep(0.01)
            if notes_after(end):
                record["answered"] = "by itself"
            else:
                cc_t = time.monotonic()
                player.send([0xB0, 85, 127])  # end of call: answer now, whatever is still held
                while time.monotonic() < cc_t + 1.5 and not notes_after(cc_t):
                    time.sleep(0.01)
                if notes_after(cc_t):
                    record["answered"] = "after end-of-call CC"
            if record["answered"]:
                record["latency"] = notes_after(end)[0] - end
            phrases.append(record)
            pacer = Pacer()
        player.send([0xF7])
        time.sleep(0.1)
        player.send([0xB0, 119, 127])  # panic
        time.sleep(0.5)
    finally:
        elapsed = time.monotonic() - start
        alive = daemon.proc.poll() is None
        try:
            status = daemon.stop()
        except Exception as err:  # did not stop in time
            daemon.proc.kill()
            status = f"killed ({err})"
        time.sleep(0.3)
        dump.stop()
        receivers = compare(player, dump)
        left_on = set(receivers["stuck"])
        player.close()
        if server is not None:
            server.terminate()
            server.wait(10)

    log = daemon.output()
    final = [line for line in log.splitlines() if "stopped:" in line]
    dropped_lines = re.findall(r"dropped (\d+)", final[-1]) if final else []
    dropped = int(dropped_lines[-1]) if dropped_lines else None
    # a reload (SIGHUP or the reload CC, which the stream hits) starts the daemon's counters afresh:
    # add up each stretch's last count (what came in the second before a reload is not counted)
    dropped_total, current = 0, 0
    for line in log.splitlines():
        if "notes in" in line and (found := re.search(r"dropped (\d+)", line)):
            value = int(found.group(1))
            if value < current:
                dropped_total += current
            current = value
    dropped_total += current
    reloads = log.count("reloaded:")
    by_itself = sum(p["answered"] == "by itself" for p in phrases)
    answered = sum(bool(p["answered"]) for p in phrases)
    if not alive:
        failures.append("the daemon was not running at the end")
    if status != 0:
        failures.append(f"exit status {status}")
    if left_on:
        failures.append(f"notes left on at the receiver: {sorted(left_on)}")
    if dropped is None:
        failures.append("no final status line with a dropped count")
    elif dropped == 0:
        failures.append("the daemon dropped nothing")
    if not phrases or answered < 0.75 * len(phrases):
        failures.append(f"only {answered} of {len(phrases)} phrases answered")
    if "Traceback" in log:
        failures.append("a traceback in the daemon's log")

    latencies = [p["latency"] for p in phrases if p["latency"] is not None]
    print(
        f"fuzz-live: {sent} messages in {elapsed:.0f} s, dropped {dropped} (daemon count), "
        f"answered {answered}/{len(phrases)} phrases, {len(left_on)} notes left on, exit {status}"
    )
    print(
        f"  {by_itself} answered by themselves, {answered - by_itself} only after the end-of-call CC; "
        f"median first note {statistics.median(latencies) * 1000 if latencies else float('nan'):.0f} ms "
        f"after the phrase; {rejected} messages refused by rtmidi at the sender; {reloads} reloads by "
        f"CC 90, so the daemon's counters restarted: at least {dropped_total} dropped over the run; "
        f"final status: {final[-1].split('stopped: ')[-1] if final else '-'}"
    )
    print(f"  receivers: {_receivers_line(receivers)}")
    missed = [p["at"] for p in phrases if not p["answered"]]
    if missed:
        print(f"  unanswered phrases at {missed} s")
    print_failures(failures, log, 30)
    if args.keep:
        print(f"  daemon config and log kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m midiseed.bench.fuzz_live", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--model", required=True, help="an ONNX model exported by `midiseed export`")
    ap.add_argument("--keep", help="write the daemon's config and log here and keep them")
    return run(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
