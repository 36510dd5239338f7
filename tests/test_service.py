"""The service loop with fake ports: every way out ends every note."""

import threading
import time
from dataclasses import replace

from midiseed.daemon.config import Config
from midiseed.daemon.service import Service
from tests.test_daemon_unit import FakeGenerator


class FakePorts:
    def __init__(self) -> None:
        self.inbox: list[list[int]] = []
        self.lock = threading.Lock()
        self.sent: list[list[int]] = []
        self.closed = False
        self.fail_sends = False

    def on_message(self, message: list[int]) -> None:
        """What a test plays into the daemon."""
        with self.lock:
            self.inbox.append(message)

    def poll(self) -> list[list[int]]:
        with self.lock:
            out, self.inbox = self.inbox, []
        return out

    def send(self, message: list[int]) -> None:
        if self.fail_sends:
            raise OSError("port went away")
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True

    def maintain(self) -> None:
        pass

    def left_on(self) -> set[int]:
        on: set[int] = set()
        for m in self.sent:
            if m[0] & 0xF0 == 0x90:
                on.add(m[1])
            elif m[0] & 0xF0 == 0x80:
                on.discard(m[1])
        return on


class Exploding(FakeGenerator):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.left = after

    def next_event(self, require_notes: bool = False):
        self.left -= 1
        if self.left < 0:
            raise RuntimeError("inference failed")
        return super().next_event(require_notes)


def start(generator, **cfg):
    holder = {}

    def open_ports(backend):
        holder["ports"] = FakePorts()
        return holder["ports"]

    # realtime=False: run() happens in the test process itself, which must not become SCHED_FIFO
    settings = replace(Config(), bpm=400, silence_beats=0.25, realtime=False, **cfg)
    service = Service(settings, generator=generator, open_ports=open_ports)
    return service, holder["ports"]


def play_phrase(ports: FakePorts) -> None:
    for pitch in (60, 64):
        ports.on_message([0x90, pitch, 90])
        time.sleep(0.02)
        ports.on_message([0x80, pitch, 0])


def run_in_main(service: Service, seconds: float) -> int:
    """run() installs signal handlers, so it runs in this (the main) thread; a timer stops it."""
    timer = threading.Timer(seconds, service.stop)
    timer.start()
    try:
        return service.run()
    finally:
        timer.cancel()


def test_stop_mid_answer_ends_every_note_and_closes_ports():
    service, ports = start(FakeGenerator(), answer_beats=64)
    threading.Timer(0.05, play_phrase, args=(ports,)).start()
    status = run_in_main(service, 0.8)
    assert status == 0
    assert any(m[0] & 0xF0 == 0x90 for m in ports.sent)
    assert ports.left_on() == set()
    assert ports.sent[-1] == [0xB0, 123, 0]
    assert ports.closed


def test_an_exception_in_the_loop_ends_every_note_and_exits_1():
    service, ports = start(Exploding(after=3), answer_beats=64)
    threading.Timer(0.05, play_phrase, args=(ports,)).start()
    status = run_in_main(service, 3.0)
    assert status == 1
    assert any(m[0] & 0xF0 == 0x90 for m in ports.sent)
    assert ports.left_on() == set()
    assert ports.sent[-1] == [0xB0, 123, 0]


def test_an_exception_in_another_thread_stops_the_daemon_cleanly():
    service, ports = start(FakeGenerator(), answer_beats=64)
    threading.Timer(0.05, play_phrase, args=(ports,)).start()

    def boom():
        raise ValueError("a helper thread failed")

    threading.Timer(0.5, lambda: threading.Thread(target=boom).start()).start()
    status = run_in_main(service, 5.0)
    assert status == 1
    assert ports.left_on() == set()
    assert ports.sent[-1] == [0xB0, 123, 0]


def test_a_port_that_fails_stops_the_daemon_with_an_error():
    service, ports = start(FakeGenerator(), answer_beats=64)
    threading.Timer(0.05, play_phrase, args=(ports,)).start()

    def pull_the_cable():
        ports.fail_sends = True

    threading.Timer(0.5, pull_the_cable).start()
    status = run_in_main(service, 5.0)
    assert status == 1
    assert ports.closed


def test_reload_switches_config_and_model_keeps_ports_and_refuses_bad_ones():
    from midiseed.daemon.config import ConfigError

    offers = [
        replace(Config(), mode="continue", bpm=200, realtime=False),
        ConfigError("config.toml: [timing] bpm must be in 20..400, got 9000"),
        replace(Config(), mode="respond", bpm=200, realtime=False, in_port="elsewhere"),
    ]

    def reread():
        offer = offers.pop(0)
        if isinstance(offer, Exception):
            raise offer
        return offer

    made = []

    def make_generator(cfg):
        made.append(cfg)
        return FakeGenerator()

    holder = {}

    def open_ports(backend):
        holder["ports"] = FakePorts()
        return holder["ports"]

    service = Service(
        replace(Config(), realtime=False),
        generator=FakeGenerator(),
        open_ports=open_ports,
        reload_config=reread,
        make_generator=make_generator,
    )
    first_ports = service.ports
    service.performer.stats["notes in"] = 7
    service._reload()
    assert service.performer.mode == "continue" and service.tempo.bpm == 200
    assert service.performer.stats["notes in"] == 7  # counters cover the whole run
    assert len(made) == 1 and service.ports is first_ports
    service._reload()  # a bad file: logged, the running config stays
    assert service.cfg.mode == "continue"
    service._reload()  # a port change needs a restart: refused
    assert service.cfg.in_port == "midiseed-in" and service.cfg.mode == "continue"


def test_reload_cc_asks_the_service_to_reload():
    service, ports = start(FakeGenerator())
    calls = []
    service.reload_config = lambda: calls.append(1) or replace(service.cfg, bpm=150)
    service.make_generator = lambda cfg: FakeGenerator()
    threading.Timer(0.05, ports.on_message, args=([0xB0, 90, 127],)).start()
    assert run_in_main(service, 0.5) == 0
    assert calls == [1] and service.tempo.bpm == 150


def test_record_writes_what_was_heard_and_played_to_a_midi_file(tmp_path):
    import mido

    service, ports = start(FakeGenerator(), answer_beats=4, record=str(tmp_path / "rec"))
    threading.Timer(0.05, play_phrase, args=(ports,)).start()
    assert run_in_main(service, 1.5) == 0
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


def test_status_socket_answers_midiseed_status(tmp_path):
    from typer.testing import CliRunner

    from midiseed.cli import app
    from midiseed.daemon.status import ask

    sock = tmp_path / "s.sock"
    service, ports = start(FakeGenerator(), answer_beats=4, status_socket=str(sock))
    got = {}
    threading.Timer(0.05, play_phrase, args=(ports,)).start()
    threading.Timer(0.8, lambda: got.update(ask(sock))).start()
    config = tmp_path / "c.toml"
    config.write_text(f'[log]\nstatus_socket = "{sock}"\n')
    cli = {}
    threading.Timer(
        0.9, lambda: cli.update(r=CliRunner().invoke(app, ["status", "--config", str(config)]))
    ).start()
    assert run_in_main(service, 1.2) == 0
    assert got["notes_in"] == 2 and got["answers"] == 1 and got["notes_out"] >= 1
    assert got["mode"] == "respond" and got["tempo_source"] == "internal"
    assert cli["r"].exit_code == 0 and "notes in 2" in cli["r"].output
    assert not sock.exists()  # removed on the way out
    gone = CliRunner().invoke(app, ["status", "--config", str(config)])
    assert gone.exit_code == 2 and "no midiseed is running" in gone.output


def test_model_cc_switches_between_loaded_models():
    made = []

    def make_generator(cfg):
        made.append(cfg.model)
        return FakeGenerator()

    holder = {}

    def open_ports(backend):
        holder["ports"] = FakePorts()
        return holder["ports"]

    settings = replace(Config(), realtime=False, models=("second.onnx",))
    service = Service(settings, open_ports=open_ports, make_generator=make_generator)
    assert made == ["", "second.onnx"]  # both loaded at start
    ports = holder["ports"]
    threading.Timer(0.05, ports.on_message, args=([0xB0, 91, 1],)).start()
    assert run_in_main(service, 0.3) == 0
    assert service.performer.gen is service.generators[1]
