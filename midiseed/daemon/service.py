"""`midiseed serve`: ports, engine and performer wired together, one thread owning time.

The main thread polls the input every half millisecond (rtmidi queues it without Python, see
ports.py), handles it, sends what is due and sleeps until the next deadline or poll. Every way
out (SIGTERM, SIGINT, an exception here or in any thread, a port that fails) goes through
`Performer.panic()` first.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from midiseed.daemon.config import Config
from midiseed.daemon.core import Performer
from midiseed.daemon.ports import Ports, choose_backend
from midiseed.daemon.recorder import Recorder
from midiseed.daemon.status import StatusServer, snapshot, socket_path
from midiseed.daemon.tempo import InternalTempo, MidiClockTempo
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import Decoding

log = logging.getLogger("midiseed.serve")
# what a reload cannot change: the ports and the time source live as long as the process
RESTART_KEYS = (
    "backend",
    "client_name",
    "in_port",
    "out_port",
    "connect_from",
    "connect_to",
    "clock",
    "realtime",
)
REALTIME_PRIORITY = 20  # below JACK's own (usually 70+), above everything that is not real-time
FLUSH_SECONDS = 0.1  # for the MIDI system to deliver the last note-offs before the ports close
RECONNECT_SECONDS = 1.0  # how often named ports are looked for
POLL_SECONDS = 0.0005  # input is read at least this often while playing or just played to
IDLE_POLL_SECONDS = 0.002  # ... and this often after IDLE_AFTER seconds of nothing
IDLE_AFTER = 5.0
SPIN_SECONDS = 0.0002  # the last stretch before a due note is spun out: sleeps overshoot


class Service:
    """Builds the daemon from a Config; `run()` blocks until stopped and returns the exit status."""

    def __init__(
        self,
        cfg: Config,
        clock=time.monotonic,
        generator=None,
        open_ports=None,
        reload_config: Callable[[], Config] | None = None,
        make_generator: Callable[[Config], Generator] | None = None,
    ) -> None:
        """`generator`, `make_generator(cfg)` and `open_ports(backend)` replace the real
        ones in tests; `reload_config` gives the configuration to switch to on SIGHUP or the reload CC."""
        self.make_generator = make_generator or self._generator
        self.cfg = cfg
        self.reload_config = reload_config
        self.reload_requested = False
        self.view: LiveView | None = None
        self.clock = clock
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.generator = generator or self.make_generator(cfg)
        spb = self.generator.codec.grid.steps_per_beat
        if cfg.clock == "midi":
            self.tempo = MidiClockTempo(spb, cfg.bpm)
        else:
            self.tempo = InternalTempo(cfg.bpm, spb, clock())
        if open_ports is None:
            self.backend = choose_backend(cfg.backend)
            self.ports = Ports(
                self.backend,
                cfg.client_name,
                cfg.in_port,
                cfg.out_port,
                cfg.connect_from,
                cfg.connect_to,
            )
        else:
            self.backend = cfg.backend
            self.ports = open_ports(cfg.backend)
        # more models to switch to by CC: loaded now, so a switch costs nothing on stage
        self.generators = [self.generator] + [self.make_generator(replace(cfg, model=m)) for m in cfg.models]
        self.started = time.monotonic()
        self.recorder = Recorder(Path(cfg.record), clock()) if cfg.record else None
        self.performer = Performer(cfg, self.generator, self.tempo, self._send)
        channels = ", ".join(str(c) for c in cfg.in_channels) or "all"
        log.info(
            "listening on %s:%s (channels %s), playing on %s:%s channel %d; mode %s; tempo %s",
            self.backend,
            cfg.in_port,
            channels,
            self.backend,
            cfg.out_port,
            cfg.out_channel,
            cfg.mode,
            f"{cfg.bpm:g} bpm (internal)" if cfg.clock == "internal" else "from MIDI clock",
        )

    @staticmethod
    def _generator(cfg: Config) -> Generator:
        engine = Engine(cfg.model or None, provider=cfg.provider)
        log.info("model %s (%s preset) on %s", engine.path, engine.info.preset, engine.provider)
        return Generator(engine, Decoding(cfg.temperature, cfg.top_k, cfg.no_repeat), seed=cfg.random_seed)

    def _status(self) -> dict:
        return snapshot(self.performer, self.tempo, self.started, self.cfg.model or "default")

    def _select_model(self, index: int) -> None:
        index = min(index, len(self.generators) - 1)
        if self.generators[index] is self.performer.gen:
            return
        self.performer.cancel()
        self.performer.gen = self.generators[index]
        names = [self.cfg.model or "default", *self.cfg.models]
        log.info("answering with model %d: %s", index, names[index])

    def request_reload(self, *_args) -> None:
        self.reload_requested = True

    def _reload(self) -> None:
        """Switch to the re-read config (and its model) without closing the ports or losing the tempo;
        anything wrong with the new ones is logged and the running ones stay."""
        self.reload_requested = False
        if self.reload_config is None:
            return
        try:
            new = self.reload_config()
            fixed = [k for k in RESTART_KEYS if getattr(new, k) != getattr(self.cfg, k)]
            if fixed:
                raise ValueError(f"{', '.join(fixed)} can only change with a restart")
            if new != self.cfg:
                generators = [self.make_generator(replace(new, model=m)) for m in (new.model, *new.models)]
            else:
                generators = self.generators
        except Exception as err:  # a bad file or model must not stop the music
            log.error("reload refused, keeping the running config and model: %s", err)
            return
        self.performer.cancel()
        self.generators = generators
        self.generator = generators[0]
        old = self.performer
        self.performer = Performer(new, self.generator, self.tempo, self._send, tracker=old.tracker)
        # counters and timings describe the whole run, not the time since the last reload
        self.performer.stats, self.performer.step_times = old.stats, old.step_times
        self.performer.listener.dropped = old.listener.dropped
        if isinstance(self.tempo, InternalTempo) and new.bpm != self.tempo.bpm:
            self.tempo.set_bpm(new.bpm, self.clock())
        self.cfg = new
        if self.view is not None:
            self.view.performer = self.performer
        log.info("reloaded: mode %s, %g bpm, model %s", new.mode, new.bpm, new.model or "default")

    def _send(self, message: list[int]) -> None:
        self.ports.send(message)
        if self.recorder is not None:
            self.recorder.add("played", message, self.clock())

    def stop(self, *_args) -> None:
        self.stopping.set()

    def _wait(self, last_input: float) -> None:
        """Sleep until the next due note or input poll. Only a due note is worth spinning the last
        0.2 ms for (sleeps overshoot by ~0.1 ms); a poll is not: spinning for it burnt 40% of a core."""
        now = self.clock()
        busy = self.performer.cursor is not None or now - last_input < IDLE_AFTER
        poll = now + (POLL_SECONDS if busy else IDLE_POLL_SECONDS)
        due = self.performer.next_deadline(now)
        if poll < due - SPIN_SECONDS:
            time.sleep(poll - now)
            return
        if due - now > SPIN_SECONDS:
            time.sleep(due - now - SPIN_SECONDS)
        while self.clock() < due:
            pass

    def _thread_failed(self, args) -> None:
        self.failure = args.exc_value
        log.error("thread %s failed: %s", args.thread.name if args.thread else "?", args.exc_value)
        self.stop()

    def _realtime(self) -> None:
        if not self.cfg.realtime or not hasattr(os, "sched_setscheduler"):
            return
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(REALTIME_PRIORITY))
            log.info("running with real-time priority (SCHED_FIFO %d)", REALTIME_PRIORITY)
        except OSError as err:
            log.info("no real-time priority (%s): timing may suffer when the machine is busy", err.strerror)

    def run(self) -> int:
        self._realtime()
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self.request_reload)
        threading.excepthook = self._thread_failed
        status = 0
        view = self.view = LiveView(self.performer, self.tempo) if sys.stderr.isatty() else None
        status_server = None
        try:
            status_server = StatusServer(
                socket_path(self.cfg.status_socket, self.cfg.client_name), self._status
            )
        except OSError as err:
            log.warning("no status socket: %s", err)
        last_status = last_look = last_input = self.clock()
        try:
            while not self.stopping.is_set():
                now = self.clock()
                for message in self.ports.poll():
                    last_input = now
                    self.performer.handle(message, now)
                    if self.recorder is not None:
                        self.recorder.add("heard", message, now)
                if self.reload_requested or self.performer.reload_asked:
                    self.performer.reload_asked = False
                    self._reload()
                if self.performer.model_asked is not None:
                    self._select_model(self.performer.model_asked)
                    self.performer.model_asked = None
                self.performer.tick(self.clock())
                if view is not None:
                    view.update()
                if self.recorder is not None:
                    self.recorder.flush(self.clock())
                if self.clock() - last_look >= RECONNECT_SECONDS:
                    last_look = self.clock()
                    self.ports.maintain()
                if self.cfg.status_seconds and self.clock() - last_status >= self.cfg.status_seconds:
                    last_status = last_look = last_input = self.clock()
                    log.info(status_line(self.performer, self.tempo))
                self._wait(last_input)
            if self.failure is not None:
                status = 1
        except Exception:
            log.exception("stopping after an error")
            status = 1
        finally:
            try:
                self.performer.panic()
                # rtmidi hands messages to JACK/ALSA from its own buffer: closing at once can lose the offs
                time.sleep(FLUSH_SECONDS)
            except Exception as err:  # the port itself may be what failed
                log.error("could not send all notes off: %s", err)
                status = status or 1
            self.ports.close()
            if status_server is not None:
                status_server.close()
            if self.recorder is not None:
                self.recorder.flush(self.clock(), force=True)
            if view is not None:
                view.close()
            log.info("stopped: %s", status_line(self.performer, self.tempo))
        return status


def status_line(performer: Performer, tempo) -> str:
    steps = sorted(performer.step_times)
    p99 = steps[int(len(steps) * 0.99)] * 1000 if steps else 0.0
    return (
        f"notes in {performer.stats['notes in']}, out {performer.tracker.sent_on}, "
        f"answers {performer.stats['answers']}, dropped {performer.dropped}, "
        f"event p99 {p99:.2f} ms, tempo {tempo.bpm:.1f} bpm ({tempo.source})"
    )


class LiveView:
    """On a terminal: one line, redrawn, of what is heard and played."""

    NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")

    def __init__(self, performer: Performer, tempo) -> None:
        self.performer, self.tempo = performer, tempo
        self.last = 0.0

    def _name(self, pitches: list[int]) -> str:
        return " ".join(f"{self.NAMES[p % 12]}{p // 12 - 1}" for p in pitches) or "-"

    def update(self) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        p = self.performer
        sys.stderr.write(
            f"\r\x1b[2K{p.mode} | {self.tempo.bpm:5.1f} bpm | heard {self._name(p.last_heard):4} | "
            f"playing {self._name(sorted(q for _, q in p.tracker.sounding)):12} | "
            f"answers {p.stats['answers']} | dropped {p.dropped}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
