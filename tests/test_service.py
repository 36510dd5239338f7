"""The service loop on a fake clock and fake ports: no sleeps. It sleeps until something is due,
wakes for input at once, obeys SIGTERM in the turn it arrives, and every way out ends every note."""

import heapq
import itertools
import os
import signal
import threading
from dataclasses import replace

import pytest

from midiseed.daemon.config import Config, file_pitch_guard
from midiseed.daemon.service import FLUSH_SECONDS, SPIN_SECONDS, Service
from midiseed.runtime.codec import Event
from tests.test_daemon_unit import FakeGenerator


class FakeClock:
    """Made-up time. `wait_until` jumps to the deadline, or to the first scripted event before it
    (which runs, and may wake the loop, as an input or a signal would)."""

    def __init__(self) -> None:
        self.t = 0.0
        self.script: list = []
        self.order = itertools.count()
        self.woken = False
        self.waits: list[tuple[float, float, float]] = []  # (now, deadline, spin) of every wait

    def now(self) -> float:
        return self.t

    def at(self, t: float, fn, *args) -> None:
        heapq.heappush(self.script, (t, next(self.order), fn, args))

    def wake(self) -> None:
        self.woken = True

    def wait_until(self, deadline: float, spin: float = 0.0) -> None:
        self.waits.append((self.t, deadline, spin))
        assert len(self.waits) < 100_000, "the loop never stopped"
        if not self.woken and self.script and self.script[0][0] <= deadline:
            t, _, fn, args = heapq.heappop(self.script)
            self.t = max(self.t, t)
            fn(*args)
        elif not self.woken:
            self.t = max(self.t, deadline)
        self.woken = False


class FakePorts:
    def __init__(self, clock: FakeClock, wake) -> None:
        self.clock, self.wake = clock, wake
        self.inbox: list[tuple[float, list[int]]] = []
        self.sent: list[tuple[float, list[int]]] = []
        self.closed = False
        self.fail_sends = False

    def feed(self, message: list[int], arrived: float | None = None) -> None:
        """What a test plays into the daemon (rtmidi's callback: stamp, queue, then wake)."""
        self.inbox.append((self.clock.now() if arrived is None else arrived, message))
        self.wake()

    def poll(self) -> list[tuple[float, list[int]]]:
        out, self.inbox = self.inbox, []
        return out

    def send(self, message: list[int]) -> None:
        if self.fail_sends:
            raise OSError("port went away")
        self.sent.append((self.clock.now(), message))

    def close(self) -> None:
        self.closed = True

    def maintain(self) -> None:
        pass

    def ons(self) -> list[tuple[float, int]]:
        return [(t, m[1]) for t, m in self.sent if m[0] & 0xF0 == 0x90]

    def left_on(self) -> set[int]:
        on: set[int] = set()
        for _, m in self.sent:
            if m[0] & 0xF0 == 0x90:
                on.add(m[1])
            elif m[0] & 0xF0 == 0x80:
                on.discard(m[1])
        return on

    def last(self) -> list[int]:
        return self.sent[-1][1]


class Exploding(FakeGenerator):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.left = after

    def next_event(self, require_notes: bool = False):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("inference failed")
        return super().next_event(require_notes)


@pytest.fixture
def sock(tmp_path):
    return str(tmp_path / "status.sock")  # never the socket of a daemon running on this machine


def start(
    generator, sock: str, make_generator=None, reload_config=None, **cfg
) -> tuple[Service, FakePorts, FakeClock]:
    """A service at 120 bpm (a step is 0.125 s) on a fake clock; realtime off: run() happens in
    the test process itself, which must not become SCHED_FIFO. `make_generator` makes every
    model's generator when `generator` is None (at start and at each reload); `reload_config`
    gives the config a reload switches to."""
    clock = FakeClock()
    holder = {}

    def open_ports(backend, wake):
        holder["ports"] = FakePorts(clock, wake)
        return holder["ports"]

    settings = replace(Config(), realtime=False, status_socket=sock, **cfg)
    service = Service(
        settings,
        clock=clock,
        generator=generator,
        open_ports=open_ports,
        make_generator=make_generator,
        reload_config=reload_config,
    )
    return service, holder["ports"], clock


def counting_generators() -> tuple[list[Config], object]:
    """(the configs a generator was made for, a `make_generator` that records them)."""
    made: list[Config] = []

    def make_generator(cfg: Config) -> FakeGenerator:
        made.append(cfg)
        return FakeGenerator()

    return made, make_generator


def file_generator(cfg: Config) -> FakeGenerator:
    """A fake generator whose decoding is what Service._generator takes from the file: its
    temperature, and its pitch guard for the file's mode."""
    gen = FakeGenerator()
    gen.decoding = replace(
        gen.decoding, temperature=cfg.temperature, pitch_guard=file_pitch_guard(cfg, cfg.mode)
    )
    return gen


def play_phrase(clock: FakeClock, ports: FakePorts, t: float = 0.1, length: float = 0.2) -> None:
    """C4 then E4, `length` s each: the last release at t + 2 * length."""
    for i, pitch in enumerate((60, 64)):
        clock.at(t + length * i, ports.feed, [0x90, pitch, 90])
        clock.at(t + length * i + length, ports.feed, [0x80, pitch, 0])


def test_answer_notes_go_out_exactly_when_due_and_only_a_due_note_is_spun_for(sock):
    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4)
    play_phrase(clock, ports, 0.0, 0.25)  # two eighths: a beat of silence ends at 1.0 s, on their beat
    clock.at(3.0, service.stop)
    assert service.run() == 0
    # the answer starts on the player's next beat; then SCRIPT: C4 for 4 steps, D4+E4
    assert ports.ons()[:3] == [(1.0, 60), (1.5, 62), (1.5, 64)]
    spun_for = {deadline for _, deadline, spin in clock.waits if spin == SPIN_SECONDS}
    sent_at = {t for t, _ in ports.sent}
    assert {1.5, 2.0} <= spun_for <= sent_at  # 1.0 came from the silence's deadline
    assert any(spin == 0.0 for _, _, spin in clock.waits)


def test_input_wakes_the_loop_at_once_and_is_handled_at_its_arrival_time(sock):
    service, ports, clock = start(FakeGenerator(), sock, mode="continue", chord_ms=0, quantize_start=False)
    clock.at(0.3217, ports.feed, [0x90, 62, 100])
    clock.at(1.0, service.stop)
    turns = []
    handle = service.performer.handle
    service.performer.handle = lambda m, t: turns.append(t) or handle(m, t)
    assert service.run() == 0
    assert turns == [0.3217]
    assert ports.ons()[0] == (0.3217, 60)  # re-seeded and answering in the same turn


def read_late(ports: FakePorts, *stamped: tuple[float, list[int]]) -> None:
    """Messages that arrived at their own times, read only now (the loop was busy)."""
    for arrived, message in stamped:
        ports.feed(message, arrived)


def test_a_chord_read_late_is_still_one_chord_at_the_time_it_was_played(sock):
    """The ports stamp each message as it arrives. A chord whose first note was read at once and
    whose other two came while the loop was busy (read 60 ms late, past the 30 ms chord window)
    is one chord, struck when it was played; the turn's own time would split it in two."""
    service, ports, clock = start(FakeGenerator(), sock, answer_beats=2)
    clock.at(0.500, ports.feed, [0x90, 60, 90])
    clock.at(0.561, read_late, ports, (0.502, [0x90, 64, 90]), (0.504, [0x90, 67, 90]))
    for pitch in (60, 64, 67):
        clock.at(1.0, ports.feed, [0x80, pitch, 0])
    clock.at(0.9, lambda: None)  # a turn before the releases, in which the 60 ms are long over
    clock.at(4.0, service.stop)
    heard = []
    handle = service.performer.handle
    service.performer.handle = lambda m, t: heard.append(t) or handle(m, t)
    assert service.run() == 0
    assert heard[:3] == [0.500, 0.502, 0.504]
    assert service.performer.gen.primed == [[Event((60, 64, 67), (False,) * 3, 4)]]  # 0.5 s: 4 steps


def test_a_stamp_never_runs_ahead_of_the_clock_nor_back_before_the_message_before(sock):
    service, ports, clock = start(FakeGenerator(), sock, mode="continue")
    clock.at(0.5, read_late, ports, (0.7, [0x90, 60, 90]), (0.3, [0x80, 60, 0]))
    clock.at(1.0, service.stop)
    heard = []
    handle = service.performer.handle
    service.performer.handle = lambda m, t: heard.append(t) or handle(m, t)
    assert service.run() == 0
    assert heard == [0.5, 0.5]  # a stamp from a clock ahead of ours, then one behind its predecessor


def test_an_idle_daemon_sleeps_instead_of_polling(sock):
    service, _ports, clock = start(FakeGenerator(), sock)
    clock.at(60.0, service.stop)
    assert service.run() == 0
    # nothing to do for a minute: a turn every 50 ms at most (the performer's own check), not the
    # 0.5-2 ms input poll of old (30,000-120,000 turns)
    assert len(clock.waits) <= 60 * 21
    assert all(deadline > now for now, deadline, _ in clock.waits)  # never a wait for a past deadline


def test_streaming_wakes_for_each_due_note_not_in_between(sock):
    service, ports, clock = start(FakeGenerator(), sock, mode="continue")
    clock.at(0.1, ports.feed, [0x90, 62, 100])
    clock.at(0.2, ports.feed, [0x80, 62, 0])
    clock.at(10.0, service.stop)
    assert service.run() == 0
    assert len(ports.ons()) >= 28  # a steady stream: SCRIPT is 3 note-ons every 8 steps (1 s)
    assert len(clock.waits) <= 10 * 30
    assert all(deadline > now for now, deadline, _ in clock.waits)


def test_sigterm_is_obeyed_in_the_turn_it_arrives_and_ends_every_note(sock):
    service, ports, clock = start(FakeGenerator(), sock, mode="continue", answer_beats=64)
    clock.at(0.1, ports.feed, [0x90, 62, 100])
    clock.at(2.0, os.kill, os.getpid(), signal.SIGTERM)  # the real signal, to this process
    clock.at(30.0, pytest.fail, "SIGTERM was not obeyed")
    before = signal.getsignal(signal.SIGTERM)
    assert service.run() == 0
    assert clock.t <= 2.0 + FLUSH_SECONDS  # the flush wait is all that follows the signal
    assert all(t <= 2.0 for t, m in ports.sent if m[0] & 0xF0 == 0x90)
    assert ports.ons() and ports.left_on() == set()
    assert ports.last() == [0xB0, 123, 0] and ports.closed
    assert signal.getsignal(signal.SIGTERM) is before  # run() put the old handler back


def test_an_exception_in_the_loop_ends_every_note_and_exits_1(sock):
    service, ports, clock = start(Exploding(after=3), sock, answer_beats=64)
    play_phrase(clock, ports)
    clock.at(30.0, service.stop)
    assert service.run() == 1
    assert ports.ons() and ports.left_on() == set()
    assert ports.last() == [0xB0, 123, 0]
    assert clock.t < 30.0


def test_an_exception_in_another_thread_stops_the_daemon_cleanly(sock):
    service, ports, clock = start(FakeGenerator(), sock, answer_beats=64)
    play_phrase(clock, ports)

    def boom():
        raise ValueError("a helper thread failed")

    def helper_fails():
        thread = threading.Thread(target=boom)
        thread.start()
        thread.join()

    clock.at(1.7, helper_fails)
    clock.at(30.0, service.stop)
    assert service.run() == 1
    assert clock.t <= 1.7 + FLUSH_SECONDS
    assert ports.ons() and ports.left_on() == set()
    assert ports.last() == [0xB0, 123, 0]


def test_a_port_that_fails_stops_the_daemon_with_an_error(sock):
    service, ports, clock = start(FakeGenerator(), sock, answer_beats=64)
    play_phrase(clock, ports)
    clock.at(1.6, setattr, ports, "fail_sends", True)
    clock.at(30.0, service.stop)
    assert service.run() == 1
    assert ports.closed and clock.t < 30.0


def test_reload_switches_config_and_model_keeps_ports_counters_and_refuses_bad_ones(sock):
    from midiseed.daemon.config import ConfigError

    base = replace(Config(), realtime=False, status_socket=sock)
    offers = [
        replace(base, mode="continue", bpm=200),
        ConfigError("config.toml: [timing] bpm must be in 20..400, got 9000"),
        replace(base, mode="respond", bpm=200, in_port="elsewhere"),
    ]

    def reread():
        offer = offers.pop(0)
        if isinstance(offer, Exception):
            raise offer
        return offer

    made, make_generator = counting_generators()
    service, _, _ = start(FakeGenerator(), sock, make_generator, reread)
    first_ports, first_stats = service.ports, service.stats
    service.performer.handle([0x90, 60, 90], 0.0)
    service.performer.handle([0x90, 64, 90], 0.0)
    service.performer.handle([0x90, 64, 90], 0.0)  # struck again: its old release still to come
    service._reload()
    assert service.performer.mode == "continue" and service.tempo.bpm == 200
    assert service.performer.stats is first_stats and service.status()["notes_in"] == 3
    service.performer.handle([0x80, 60, 0], 0.5)  # the key held through the reload is let go
    service.performer.handle([0x80, 64, 0], 0.0)  # the old E's release: the new E is still down
    assert service.performer.listener.held.keys() == {(0, 64)}
    service.performer.handle([0x80, 64, 0], 0.6)
    assert not service.performer.listener.held
    assert not service.stats.input_dropped  # a key struck again is read, not dropped
    assert len(made) == 1 and service.ports is first_ports
    service._reload()  # a bad file: logged, the running config stays
    assert service.cfg.mode == "continue"
    service._reload()  # a port change needs a restart: refused
    assert service.cfg.in_port == "midiseed-in" and service.cfg.mode == "continue"


def test_reload_of_an_unchanged_setup_goes_on_playing_and_a_model_exported_again_is_read_again(
    sock, tmp_path
):
    import os
    import shutil

    from midiseed.runtime.engine import DEFAULT_MODEL

    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    made, make_generator = counting_generators()
    service, _, _ = start(
        None, sock, make_generator, lambda: replace(service.cfg), model=str(model), answer_beats=16
    )
    service.performer.handle([0x90, 60, 90], 0.0)
    service.performer.handle([0x80, 60, 0], 0.4)
    service.performer.tick(1.5)  # answering
    performer, plan = service.performer, list(service.performer.plan)
    assert plan and len(made) == 1
    service._reload()  # the same file, the same model: nothing to do, and the answer plays on
    assert service.performer is performer and performer.plan == plan and len(made) == 1
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))  # exported again
    service._reload()
    assert len(made) == 2 and service.performer is not performer  # read again, as SIGHUP promises


def test_reload_applies_the_log_settings_it_can_and_refuses_the_ones_that_need_a_restart(sock, tmp_path):
    import logging

    base = replace(Config(), realtime=False, status_socket=sock)
    offers = [
        replace(base, log_level="warning", status_seconds=2.0),
        replace(base, log_level="warning", status_seconds=2.0, record=str(tmp_path)),
        replace(base, log_level="warning", status_seconds=2.0, status_socket=sock + "2"),
    ]
    service, _, clock = start(FakeGenerator(), sock, lambda cfg: FakeGenerator(), lambda: offers.pop(0))
    level = logging.getLogger().level
    try:
        service._reload()  # said "reloaded", and went on logging at info without a status line
        assert logging.getLogger().level == logging.WARNING
        assert service.timers.when["status"] == clock.now() + 2.0
        for _ in range(2):
            service._reload()  # recording and the status socket are set up at start: refused
            assert (service.cfg.record, service.cfg.status_socket) == ("", sock)
    finally:
        logging.getLogger().setLevel(level)


def test_start_and_reload_log_each_model_s_file_preset_and_provider(sock, caplog):
    """The model lines moved after the start-up checks (so a refusal prints alone); a reload that
    loads other models logs theirs too, so an operator sees which file and provider it took."""
    import types

    def with_engine(cfg: Config) -> FakeGenerator:
        gen = FakeGenerator()
        info = types.SimpleNamespace(preset="tiny")
        path = f"/models/{cfg.model or 'default'}.onnx"
        gen.engine = types.SimpleNamespace(path=path, info=info, provider="CPU")
        return gen

    base = replace(Config(), realtime=False, status_socket=sock)
    with caplog.at_level("INFO", logger="midiseed.serve"):
        service, _, _ = start(None, sock, with_engine, lambda: replace(base, model="b"))
        service._reload()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model ")]
    assert lines == [f"model /models/{name}.onnx (tiny preset) on CPU" for name in ("default", "b")]


def test_a_tempo_followed_from_the_player_stays_over_a_reload_unless_the_file_changes_it(sock):
    base = replace(Config(), realtime=False, status_socket=sock)
    offers = [replace(base, mode="continue"), replace(base, bpm=150), replace(base, follow_tempo=False)]
    service, _, clock = start(FakeGenerator(), sock, lambda cfg: FakeGenerator(), lambda: offers.pop(0))
    tempo = service.tempo
    tempo.set_bpm(100, clock.now(), followed=True)  # as an answer to a phrase at 100 bpm leaves it
    service._reload()  # bpm and following as they were: the player's tempo goes on
    assert (tempo.bpm, tempo.source) == (100, "the player's")
    service._reload()  # the file's tempo changed: it is the tempo now
    assert (tempo.bpm, tempo.source) == (150, "internal")
    tempo.set_bpm(100, clock.now(), followed=True)
    service._reload()  # following turned off: back to the file's tempo
    assert (tempo.bpm, tempo.source) == (120, "internal")
    assert not service.performer.listener.follow_tempo


def test_reload_cc_asks_the_service_to_reload(sock):
    service, ports, clock = start(FakeGenerator(), sock)
    calls = []
    service.reload_config = lambda: calls.append(clock.t) or replace(service.cfg, bpm=150)
    service.make_generator = lambda cfg: FakeGenerator()
    clock.at(0.25, ports.feed, [0xB0, 90, 127])
    clock.at(1.0, service.stop)
    assert service.run() == 0
    assert calls == [0.25] and service.tempo.bpm == 150


def test_sighup_reloads_between_turns(sock):
    service, _ports, clock = start(FakeGenerator(), sock)
    calls = []
    service.reload_config = lambda: calls.append(clock.t) or replace(service.cfg, mode="continue")
    service.make_generator = lambda cfg: FakeGenerator()
    clock.at(0.5, os.kill, os.getpid(), signal.SIGHUP)
    clock.at(1.0, service.stop)
    assert service.run() == 0
    assert calls == [0.5] and service.performer.mode == "continue"


def test_model_cc_switches_between_loaded_models(sock):
    made = []

    def make_generator(cfg):
        made.append(cfg.model)
        return FakeGenerator()

    service, ports, clock = start(None, sock, make_generator, models=("second.onnx",))
    assert made == ["", "second.onnx"]  # both loaded at start
    clock.at(0.02, ports.feed, [0xB0, 87, 127])  # temperature 2, set live on the first model
    clock.at(0.05, ports.feed, [0xB0, 91, 1])
    clock.at(0.3, service.stop)
    assert service.run() == 0
    assert service.performer.gen is service.generators[1]
    assert service.status()["model"] == "second.onnx"
    assert service.generators[1].decoding.temperature == 2.0  # the live setting came along


def test_reload_keeps_what_was_set_live_unless_the_file_changed_that_setting(sock):
    """A player's CC settings (mode, steering, decoding, the model picked) outlive a reload; a
    setting the re-read file itself changed takes the file's value."""
    made = []

    def make_generator(cfg):
        made.append(file_generator(cfg))
        return made[-1]

    service, ports, clock = start(None, sock, make_generator, models=("second.onnx",))
    base = service.cfg
    on_file = [replace(base, bpm=150, temperature=0.5), replace(base, bpm=150, temperature=0.5, voices=3)]
    service.reload_config = lambda: on_file.pop(0)
    for i, (cc, value) in enumerate([(91, 1), (86, 127), (102, 1), (103, 40), (87, 127), (107, 0)]):
        clock.at(0.01 * (i + 1), ports.feed, [0xB0, cc, value])
    clock.at(0.2, service._reload)  # the file changed the tempo and the temperature only
    clock.at(0.3, lambda: checks.append(state(service)))
    clock.at(0.4, service._reload)  # now the file sets voices too
    clock.at(0.5, lambda: checks.append(state(service)))
    clock.at(0.6, service.stop)
    checks: list[tuple] = []

    def state(s):
        p = s.performer
        return (
            s.model_index,
            p.gen is s.generators[1],
            p.mode,
            p.steer,
            p.gen.decoding.temperature,
            p.gen.decoding.pitch_guard,
        )

    assert service.run() == 0
    assert len(made) == 6  # two models loaded at start and at each reload
    assert checks[0] == (1, True, "continue", (1, 40, 0), 0.5, False)  # the stream's guard, off by CC
    assert checks[1] == (1, True, "continue", (3, 40, 0), 0.5, False)
    assert service.tempo.bpm == 150
    info = service.status()  # what `midiseed status --json` shows of them
    assert info["steering"] == {"voices": 3, "low": 40, "high": 0} and info["mode"] == "continue"
    assert info["in_force"] == {"voices": 3, "low": 40, "high": 127, "bass": 127, "anchored": False}
    assert info["decoding"]["pitch_guard"] is False and info["decoding"]["temperature"] == 0.5


def test_reload_in_continue_mode_keeps_the_stream_s_pitch_guard_as_the_file_or_the_player_set_it(sock):
    service, ports, clock = start(None, sock, file_generator)
    base = service.cfg
    service.reload_config = lambda: replace(base, bpm=150)
    states = []
    clock.at(0.01, ports.feed, [0xB0, 86, 127])  # continue: the stream's pitch guard, on
    clock.at(0.05, service._reload)  # the new generator comes from the file, the mode stays live
    clock.at(0.1, lambda: states.append(service.performer.gen.decoding.pitch_guard))
    clock.at(0.15, ports.feed, [0xB0, 107, 0])  # the player turns it off
    clock.at(0.2, service._reload)
    clock.at(0.25, lambda: states.append(service.performer.gen.decoding.pitch_guard))
    clock.at(0.3, service.stop)
    assert service.run() == 0
    assert states == [True, False] and service.performer.mode == "continue"


def test_a_reload_that_changes_the_mode_gives_the_file_s_pitch_guard_for_the_new_mode(sock):
    service, ports, clock = start(None, sock, file_generator, pitch_guard_continue=False)
    base = service.cfg
    service.reload_config = lambda: replace(base, mode="continue")
    clock.at(0.01, ports.feed, [0xB0, 107, 127])  # on, for respond's answers
    clock.at(0.05, service._reload)  # the file moves to continue, whose pitch guard is off
    clock.at(0.1, service.stop)
    assert service.run() == 0
    assert service.performer.mode == "continue" and not service.performer.gen.decoding.pitch_guard


def test_reload_keeps_the_model_picked_only_while_the_file_lists_the_same_models(sock):
    service, ports, clock = start(None, sock, lambda cfg: FakeGenerator(), models=("b.onnx", "c.onnx"))
    base = service.cfg
    on_file = [replace(base, bpm=150), replace(base, bpm=150, models=("b.onnx",))]
    service.reload_config = lambda: on_file.pop(0)
    picked = []
    clock.at(0.01, ports.feed, [0xB0, 91, 2])  # the third model, c.onnx
    clock.at(0.1, service._reload)  # the same models: the pick stays
    clock.at(0.15, lambda: picked.append((service.model_index, service.status()["model"])))
    clock.at(0.2, service._reload)  # c.onnx is gone: back to the first
    clock.at(0.25, lambda: picked.append((service.model_index, service.status()["model"])))
    clock.at(0.3, service.stop)
    assert service.run() == 0
    assert picked == [(2, "c.onnx"), (0, "default")]
    assert service.performer.gen is service.generators[0] and len(service.generators) == 2


def test_record_writes_what_was_heard_and_played_to_a_midi_file(tmp_path, sock):
    import mido

    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4, record=str(tmp_path / "rec"))
    play_phrase(clock, ports)
    written: list[int] = []  # files written by t = 6 s, before the stop
    clock.at(6.0, lambda: written.append(len(list((tmp_path / "rec").glob("midiseed-*.mid")))))
    clock.at(12.0, service.stop)
    assert service.run() == 0
    (path,) = (tmp_path / "rec").glob("midiseed-*.mid")
    mid = mido.MidiFile(path)
    names = [t.name for t in mid.tracks]
    assert names == ["heard", "played"]
    heard = [m.note for m in mid.tracks[0] if m.type == "note_on" and m.velocity > 0]
    played = [m for m in mid.tracks[1] if m.type in ("note_on", "note_off")]
    assert heard == [60, 64]
    assert any(m.type == "note_on" and m.velocity > 0 for m in played)
    on = set()
    for m in played:
        if m.type == "note_on" and m.velocity > 0:
            on.add(m.note)
        else:
            on.discard(m.note)
    assert not on  # the recording ends with every note off, as the output did
    # written while playing (every 5 s), not only at the end: the loop woke for it
    assert written == [1]


def test_garbage_heard_while_recording_is_dropped_and_counted_and_the_daemon_plays_on(tmp_path, sock):
    """A pitch bend cut short reached mido's writer through the recorder, whose IndexError stopped
    the daemon at the next flush."""
    import mido

    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4, record=str(tmp_path / "rec"))
    play_phrase(clock, ports)
    for t, garbage in (
        (1.2, [0xE0, 1]),
        (1.3, [0xE0]),
        (1.4, [0xC0]),
        (1.5, [0x90, 60, 200]),
        (1.6, [0xB0, 7, 1, 2]),
    ):
        clock.at(t, ports.feed, garbage)
    clock.at(12.0, service.stop)
    assert service.run() == 0
    assert service.performer.dropped >= 5
    (path,) = (tmp_path / "rec").glob("midiseed-*.mid")
    heard = [m for m in mido.MidiFile(path).tracks[0] if not m.is_meta]
    assert [(m.type, m.note) for m in heard if m.type == "note_on"] == [("note_on", 60), ("note_on", 64)]
    assert all(m.type in ("note_on", "note_off") for m in heard)  # the garbage is not in the recording


def test_messages_the_ports_had_no_room_for_are_counted_as_dropped(sock):
    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4)
    ports.dropped = (3, 1)  # as the JACK extension reports its full ring buffers
    play_phrase(clock, ports)
    clock.at(1.5, service.stop)
    assert service.run() == 0
    info = service.status()
    assert info["dropped_by_reason"]["dropped: input buffer full or message over 1 KiB"] == 3
    assert info["dropped_by_reason"]["dropped: output buffer full"] == 1
    assert info["dropped"] >= 4


def test_status_socket_answers_midiseed_status(tmp_path, sock):
    from typer.testing import CliRunner

    from midiseed.cli import app
    from midiseed.daemon.status import ask

    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4)
    got, cli = {}, {}
    config = tmp_path / "c.toml"
    config.write_text(f'[log]\nstatus_socket = "{sock}"\n')
    play_phrase(clock, ports)
    clock.at(1.2, lambda: got.update(ask(tmp_path / "status.sock")))
    clock.at(1.3, lambda: cli.update(r=CliRunner().invoke(app, ["status", "--config", str(config)])))
    clock.at(1.5, service.stop)
    assert service.run() == 0
    assert got["notes_in"] == 2 and got["answers"] == 1 and got["notes_out"] >= 1
    assert got["mode"] == "respond" and got["tempo_source"] == "internal" and got["uptime_s"] == 1.2
    assert cli["r"].exit_code == 0 and "notes in 2" in cli["r"].output
    assert not (tmp_path / "status.sock").exists()  # removed on the way out
    gone = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert gone.exit_code == 2 and "no midiseed is running" in gone.output


def test_status_line_and_live_view_are_made_from_one_snapshot(sock):
    from midiseed.daemon.status import live_line, status_line

    service, ports, clock = start(FakeGenerator(), sock, answer_beats=4)
    play_phrase(clock, ports, 0.0, 0.25)  # the answer starts on the player's beat at 1.0 s
    lines = {}
    clock.at(1.0001, lambda: lines.update(info=service.status()))
    clock.at(1.2, service.stop)
    assert service.run() == 0
    info = lines["info"]
    assert status_line(info).startswith("notes in 2, out 1, answers 1, dropped 0, event p99 ")
    assert status_line(info).endswith("tempo 120.0 bpm (internal)")
    assert live_line(info).startswith("respond | heard E4   | playing C4 ")
    assert live_line(info).endswith(status_line(info))
