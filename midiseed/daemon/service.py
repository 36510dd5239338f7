"""`midiseed serve`: ports, engine and performer wired together, one thread owning time.

The main thread sleeps until the next due note, the next timer or the next input, whichever is
first: rtmidi's callback queues each message and wakes it (ports.py, clock.py). It then handles
what arrived, carries out what the performer asks (`Command`), sends what is due, and sleeps
again. Every way out (SIGTERM, SIGINT, an exception here or in any thread, a port that fails)
goes through `Performer.panic()` first. All time goes through the injected clock, so the tests
run this loop on made-up time.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from midiseed.daemon import jackports
from midiseed.daemon.clock import Clock, SystemClock
from midiseed.daemon.config import Config, file_pitch_guard
from midiseed.daemon.core import Command, Performer
from midiseed.daemon.ports import Ports, choose_backend
from midiseed.daemon.recorder import Recorder
from midiseed.daemon.status import Stats, StatusServer, live_line, snapshot, socket_path, status_line
from midiseed.daemon.tempo import InternalTempo, MidiClockTempo
from midiseed.runtime.engine import Engine, ModelError, model_path
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
    "record",  # the recording is opened at start
    "status_socket",  # `midiseed status` finds the daemon by it
)
REALTIME_PRIORITY = 20  # below JACK's own (usually 70+), above everything that is not real-time
FLUSH_SECONDS = 0.1  # for the MIDI system to deliver the last note-offs before the ports close
RECONNECT_SECONDS = 1.0  # how often named ports are looked for
SPIN_SECONDS = 0.0002  # the last stretch before a due note is spun out: sleeps overshoot
VIEW_SECONDS = 0.2  # the terminal's live view is redrawn at most this often
# How long another thread may wait for the GIL before the main thread must hand it over. rtmidi's
# input callback takes the GIL inside JACK's real-time thread: Python's default (5 ms) would let a
# beat of generation hold up the whole JACK graph for several periods.
SWITCH_SECONDS = 0.0001

OpenPorts = Callable[[str, Callable[[], None]], Ports]


def log_models(generators: list[Generator]) -> None:
    """An INFO line per model loaded: its file, preset and execution provider."""
    for gen in generators:
        engine = getattr(gen, "engine", None)  # (the tests' fake generators have none)
        if engine is not None:
            log.info("model %s (%s preset) on %s", engine.path, engine.info.preset, engine.provider)


class Service:
    """Builds the daemon from a Config; `run()` blocks until stopped and returns the exit status."""

    def __init__(
        self,
        cfg: Config,
        clock: Clock | None = None,
        generator: Generator | None = None,
        open_ports: OpenPorts | None = None,
        reload_config: Callable[[], Config] | None = None,
        make_generator: Callable[[Config], Generator] | None = None,
    ) -> None:
        """`clock`, `generator`, `make_generator(cfg)` and `open_ports(backend, wake)` replace the
        real ones in tests; `reload_config` gives the configuration to switch to on SIGHUP or the
        reload CC."""
        self.make_generator = make_generator or self._generator
        self.cfg = cfg
        self.reload_config = reload_config
        self.reload_requested = False
        self.clock: Clock = clock or SystemClock()
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.stats = Stats()  # the whole run's counters: every Performer gets this one
        generator = generator or self.make_generator(cfg)
        # Everything that can fail on the user's input comes before the ports open: a bad --record
        # folder or second model must not leave ports open behind its UserError.
        # More models to switch to by CC: loaded now, so a switch costs nothing on stage.
        self.generators = [generator] + [self.make_generator(replace(cfg, model=m)) for m in cfg.models]
        self.model_files = model_files(cfg)  # a reload reads a model file again when it has changed
        self.model_index = 0
        self.recorder = Recorder(Path(cfg.record), self.clock.now()) if cfg.record else None
        spb = generator.codec.grid.steps_per_beat
        if cfg.clock == "midi":
            self.tempo = MidiClockTempo(spb, cfg.bpm)
        else:
            self.tempo = InternalTempo(cfg.bpm, spb, self.clock.now())
        self.backend = choose_backend(cfg.backend) if open_ports is None else cfg.backend
        # the extension stamps what arrives on time.monotonic, the clock of a `wake_fd` (SystemClock)
        native = self.backend == "jack" and jackports.available() and hasattr(self.clock, "wake_fd")
        if open_ports is None and native:  # one JACK client, no Python in JACK's thread
            self.ports = jackports.JackPorts(
                cfg.client_name,
                cfg.in_port,
                cfg.out_port,
                cfg.connect_from,
                cfg.connect_to,
                wake_fd=self.clock.wake_fd(),
            )
        elif open_ports is None:
            self.ports = Ports(
                self.backend,
                cfg.client_name,
                cfg.in_port,
                cfg.out_port,
                cfg.connect_from,
                cfg.connect_to,
                wake=self.clock.wake,
                now=self.clock.now,
            )
        else:
            self.ports = open_ports(cfg.backend, self.clock.wake)
        # only now that nothing on the command line can be refused: its error is the one line printed
        log_models(self.generators)
        self.started = self.heard_at = self.clock.now()
        # the loop's periodic jobs (run() starts them afresh); a reload may change their periods
        self.timers = Timers(self.started, cfg.status_seconds, sys.stderr.isatty())
        self.performer = Performer(
            cfg, generator, self.tempo, self._send, stats=self.stats, now=self.clock.now
        )
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
        decoding = Decoding(
            cfg.temperature,
            cfg.top_k,
            cfg.no_repeat,
            loop_guard=cfg.loop_guard,
            memory=cfg.memory,
            pitch_guard=file_pitch_guard(cfg, cfg.mode),
            anchor=cfg.anchor,
        )
        return Generator(engine, decoding, seed=cfg.random_seed)

    # ---- what the status socket, the log and the live view show -------------------------------
    def status(self) -> dict:
        """The run's figures (status.snapshot): the socket's answer and every status line."""
        model = ([self.cfg.model or "default", *self.cfg.models])[self.model_index]
        return snapshot(self.performer, self.tempo, self.stats, self.clock.now() - self.started, model)

    # ---- commands ------------------------------------------------------------------------------
    def _obey(self, command: Command) -> None:
        if command.kind == "reload":
            self._reload()
        elif command.kind == "model":
            self._select_model(command.value)

    def _select_model(self, index: int) -> None:
        index = min(index, len(self.generators) - 1)
        if index == self.model_index:
            return
        self.model_index = index
        self.performer.use(self.generators[index])
        names = [self.cfg.model or "default", *self.cfg.models]
        log.info("answering with model %d: %s", index, names[index])

    def request_reload(self, *_args) -> None:
        """SIGHUP: reload at the top of the next turn of the loop."""
        self.reload_requested = True
        self.clock.wake()

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
            files = model_files(new)
            if new == self.cfg and files == self.model_files:
                log.info("reloaded: the config and its model files are as they were; nothing changes")
                return  # and nothing stops: the answer or stream playing goes on
            generators = [self.make_generator(replace(new, model=m)) for m in (new.model, *new.models)]
        except Exception as err:  # a bad file or model must not stop the music
            log.error("reload refused, keeping the running config and model: %s", err)
            return
        self.model_files = files
        log_models(generators)  # which files, presets and provider the reload loaded
        old = self.performer
        old.cancel()
        same_models = (new.model, *new.models) == (self.cfg.model, *self.cfg.models)
        self.generators, self.model_index = generators, self.model_index if same_models else 0
        gen = generators[self.model_index]
        self.performer = Performer(  # the old tracker knows what sounds; the stats are the run's
            new, gen, self.tempo, self._send, old.tracker, self.stats, now=self.clock.now
        )
        kept = self.performer.keep_live(old)
        self.performer.listener.keep_keys(old.listener)  # keys down now: their note-offs will come
        # a new bpm in the file, or following the player turned off: the file's tempo (a tempo
        # followed from the player stays over a reload that changes neither)
        tempo = self.tempo
        changed = new.bpm != self.cfg.bpm or not new.follow_tempo
        if isinstance(tempo, InternalTempo) and changed and (tempo.bpm != new.bpm or tempo.followed):
            tempo.set_bpm(new.bpm, self.clock.now())
        if new.log_level != self.cfg.log_level:
            logging.getLogger().setLevel(new.log_level.upper())
        if new.status_seconds != self.cfg.status_seconds:
            self.timers.every_so_often("status", new.status_seconds, self.clock.now())
        self.cfg = new
        names = [new.model or "default", *new.models]
        log.info(
            "reloaded: mode %s, %g bpm (%s), model %s; kept as set live: %s",
            self.performer.mode,
            round(self.tempo.bpm, 1),  # a tempo followed from the player stays
            self.tempo.source,
            names[self.model_index],
            ", ".join(kept) or "nothing",
        )

    # ---- the loop ------------------------------------------------------------------------------
    def _send(self, message: list[int]) -> None:
        self.ports.send(message)
        if self.recorder is not None:
            self.recorder.add("played", message, self.clock.now())

    def stop(self, *_args) -> None:
        """SIGTERM, SIGINT, a failed thread: leave the loop at once."""
        self.stopping.set()
        self.clock.wake()

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

    def _turn(self) -> None:
        """One turn of the loop: input, commands, due notes, timers; then sleep until the next thing."""
        timers = self.timers  # (a reload may change their periods)
        now = self.clock.now()
        for arrived, message in self.ports.poll():
            # each message at the time it arrived, not when this turn got to it (a chord played
            # while a beat was being generated is still one chord), but never ahead of the clock
            # nor before the message before it
            t = self.heard_at = min(max(arrived, self.heard_at), now)
            command = self.performer.handle(message, t)
            if self.recorder is not None:
                self.recorder.add("heard", message, t)
            if command is not None:
                self._obey(command)
        lost = getattr(self.ports, "dropped", (0, 0))  # the JACK extension's full ring buffers
        reasons = ("dropped: input buffer full or message over 1 KiB", "dropped: output buffer full")
        for reason, count in zip(reasons, lost):
            if count:
                self.stats[reason] = count
        if self.reload_requested:
            self._reload()
        self.performer.tick(self.clock.now())
        now = self.clock.now()
        if timers.due("look", now):
            self.ports.maintain()
        if timers.due("status", now):
            log.info(status_line(self.status()))
        if timers.due("view", now):
            timers.view_line(live_line(self.status()))
        if self.recorder is not None:
            self.recorder.flush(now)
            timers.at("record", self.recorder.next_flush())
        due = self.performer.next_deadline(now)
        note = self.performer.next_note_time()
        deadline = min(due, timers.next())
        spin = SPIN_SECONDS if note is not None and note <= deadline else 0.0
        if not self.stopping.is_set():
            self.clock.wait_until(deadline, spin)

    def _sleep(self, seconds: float) -> None:
        end = self.clock.now() + seconds
        while self.clock.now() < end:
            self.clock.wait_until(end)

    def run(self) -> int:
        """Play until stopped; 0 after a clean stop, 1 after an error (every note ended either way)."""
        self._realtime()
        handlers = {signal.SIGTERM: self.stop, signal.SIGINT: self.stop}
        if hasattr(signal, "SIGHUP"):
            handlers[signal.SIGHUP] = self.request_reload
        handlers = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}  # the old ones
        excepthook, threading.excepthook = threading.excepthook, self._thread_failed
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_SECONDS)
        status = 0
        status_server = None
        try:
            where = socket_path(self.cfg.status_socket, self.cfg.client_name)
            status_server = StatusServer(where, self.status)
        except OSError as err:
            log.warning("no status socket: %s", err)
        self.timers = Timers(self.clock.now(), self.cfg.status_seconds, sys.stderr.isatty())
        try:
            while not self.stopping.is_set():
                self._turn()
            if self.failure is not None:
                status = 1
        except Exception:
            log.exception("stopping after an error")
            status = 1
        finally:
            try:
                self.performer.panic()
                # rtmidi hands messages to JACK/ALSA from its own buffer: closing at once can lose the offs
                self._sleep(FLUSH_SECONDS)
            except Exception as err:  # the port itself may be what failed
                log.error("could not send all notes off: %s", err)
                status = status or 1
            self.ports.close()
            if status_server is not None:
                status_server.close()
            if self.recorder is not None:
                self.recorder.flush(self.clock.now(), force=True)
            self.timers.close_view()
            sys.setswitchinterval(switch)
            threading.excepthook = excepthook
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            log.info("stopped: %s", status_line(self.status()))
        return status


def model_files(cfg: Config) -> tuple:
    """Each model file the config names, as (path, size, time of last change): a model exported
    again to the same path is read again on reload (a name that does not resolve: its name)."""
    found = []
    for name in (cfg.model, *cfg.models):
        try:
            path = model_path(name or None)
            st = path.stat()
            found.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
        except (ModelError, OSError):
            found.append((str(name), None, None))
    return tuple(found)


class Timers:
    """The loop's periodic jobs (named ports, status line, live view, recording) as deadlines, so
    the loop sleeps until the first of them instead of checking them on every poll."""

    def __init__(self, now: float, status_seconds: float, view: bool) -> None:
        self.every = {"look": RECONNECT_SECONDS, "status": status_seconds}
        self.every["view"] = VIEW_SECONDS if view else 0
        self.when = {name: now + every for name, every in self.every.items() if every}
        self.view = view

    def due(self, name: str, now: float) -> bool:
        """Whether `name` is due at `now`; if so, it is due again one period later."""
        if self.when.get(name, math.inf) > now:
            return False
        self.when[name] = now + self.every[name]
        return True

    def every_so_often(self, name: str, seconds: float, now: float) -> None:
        """`name` is due every `seconds` from now on (0: never)."""
        self.every[name] = seconds
        self.when[name] = now + seconds if seconds else math.inf

    def at(self, name: str, when: float) -> None:
        """A one-off deadline (math.inf: none)."""
        self.when[name] = when

    def next(self) -> float:
        """The first deadline."""
        return min(self.when.values(), default=math.inf)

    def view_line(self, line: str) -> None:
        """Redraw the live view's one line on the terminal."""
        sys.stderr.write(f"\r\x1b[2K{line}")
        sys.stderr.flush()

    def close_view(self) -> None:
        """End the live view's line."""
        if self.view:
            sys.stderr.write("\n")
