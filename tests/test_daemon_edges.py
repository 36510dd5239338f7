"""The daemon where the world gets in the way: inference that takes time, a --record folder that
cannot be written, an output port that fails. Fake clock, fake ports or a fake rtmidi: no sleeps."""

import types
from dataclasses import replace
from typing import ClassVar

import pytest

from midiseed.daemon import ports as ports_module
from midiseed.daemon.config import Config
from midiseed.daemon.core import SEND_GUARD_SECONDS
from midiseed.daemon.notes import NoteTracker
from midiseed.daemon.ports import Ports
from midiseed.daemon.service import Service
from midiseed.errors import UserError
from midiseed.runtime.codec import Event
from tests.test_daemon_unit import FakeGenerator
from tests.test_service import FakeClock, FakePorts, start


class SlowGenerator(FakeGenerator):
    """One-step notes (61, 62, 63, 64, 60, ...), each costing `cost` seconds of the fake clock, as
    inference costs real time while the clock runs on."""

    def __init__(self, cost: float) -> None:
        super().__init__()
        self.cost = cost
        self.clock: FakeClock | None = None
        self.made = 0

    def next_event(self, require_notes: bool = False) -> Event:
        self.clock.t += self.cost
        self.made += 1
        return Event((60 + self.made % 5,), (False,), 1)


def test_notes_go_out_when_due_though_generating_a_beat_takes_longer_than_the_wait(tmp_path):
    # Each event costs less than the guard, but a beat of them (4 one-step events) costs more than
    # the 3 ms from the moment the phrase is over (a beat of silence after the release at 0.497 s)
    # to the answer's first note on the next beat, at 1.0 s. Judged by the time the tick began, the
    # first note looked 3 ms away all beat long and went out late; judged by the clock, generation
    # stops in time for it.
    cost = 0.0015
    assert cost < SEND_GUARD_SECONDS < 4 * cost
    gen = SlowGenerator(cost)
    service, ports, clock = start(gen, str(tmp_path / "s.sock"), silence_beats=1, answer_beats=1, chord_ms=0)
    gen.clock = clock
    clock.at(0.0, ports.feed, [0x90, 60, 100])
    clock.at(0.497, ports.feed, [0x80, 60, 0])
    clock.at(2.0, service.stop)
    assert service.run() == 0
    assert ports.ons() == [(1.0, 61), (1.125, 62), (1.25, 63), (1.375, 64)]


def test_a_bad_record_folder_is_a_user_error_before_any_port_opens(tmp_path):
    a_file = tmp_path / "take1.mid"
    a_file.write_bytes(b"")
    clock, opened = FakeClock(), []

    def open_ports(backend, wake):
        opened.append(FakePorts(clock, wake))
        return opened[-1]

    for where in (a_file, a_file / "sub"):
        cfg = replace(Config(), realtime=False, record=str(where))
        with pytest.raises(UserError, match=f"--record {where} .*is not a writable folder"):
            Service(cfg, clock=clock, generator=FakeGenerator(), open_ports=open_ports)
    assert not opened  # the ports open after everything that can fail on the user's input


def test_serve_s_start_up_refusals_print_their_error_alone(tmp_path, tiny_onnx):
    """`serve --record FILE` and `--backend alsa` (no ALSA here) printed the model's INFO line
    before their one-line error: the model line now comes once nothing can be refused."""
    import subprocess
    import sys

    a_file = tmp_path / "take1.mid"
    a_file.write_bytes(b"")
    for extra in (["--record", str(a_file)], ["--backend", "alsa"]):
        run = subprocess.run(
            [sys.executable, "-m", "midiseed", "serve", "--model", str(tiny_onnx[0]), *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        printed = (run.stdout + run.stderr).strip().splitlines()
        assert run.returncode == 2 and len(printed) == 1 and printed[0].startswith("error: "), printed


class FakeRtmidiPort:
    """Enough of python-rtmidi's MidiIn/MidiOut for Ports: every port made is kept in `made`."""

    made: ClassVar[list["FakeRtmidiPort"]] = []

    def __init__(self, api: int, name: str = "", queue_size_limit: int = 0) -> None:
        self.name, self.got, self.fails, self.open = name, [], False, True
        FakeRtmidiPort.made.append(self)

    def send_message(self, message: list[int]) -> None:
        if self.fails:
            raise RuntimeError(f"{self.name}: the MIDI system went away")
        self.got.append(list(message))

    def get_ports(self) -> list[str]:
        return ["fluidsynth:midi_in"]

    def close_port(self) -> None:
        self.open = False

    def ignore_types(self, **_kinds) -> None: ...
    def set_callback(self, fn) -> None:
        self.callback = fn

    def cancel_callback(self) -> None: ...
    def open_virtual_port(self, _name: str) -> None: ...
    def open_port(self, _index: int) -> None: ...
    def delete(self) -> None: ...


def fake_rtmidi(monkeypatch) -> None:
    """Ports opens FakeRtmidiPorts instead of python-rtmidi's; `made` starts empty."""
    fake = types.SimpleNamespace(
        MidiIn=FakeRtmidiPort, MidiOut=FakeRtmidiPort, API_UNIX_JACK=2, API_LINUX_ALSA=1
    )
    fake.API_MACOSX_CORE, fake.API_WINDOWS_MM = 3, 4
    monkeypatch.setattr(ports_module, "_rtmidi", lambda: fake)
    FakeRtmidiPort.made = []


def test_a_failing_output_still_lets_every_message_reach_the_named_port(monkeypatch):
    fake_rtmidi(monkeypatch)
    ports = Ports("jack", "midiseed", "midiseed-in", "midiseed-out", connect_to=("fluidsynth",))
    ours, synth = (p for p in FakeRtmidiPort.made if p.name in ("midiseed-out", "midiseed-to"))
    tracker = NoteTracker(ports.send)
    tracker.note_on(0, 60, 100)
    tracker.note_on(0, 64, 100)
    ours.fails = True  # our virtual output fails mid-note: a panic follows
    with pytest.raises(RuntimeError, match="midiseed-out: the MIDI system went away"):
        tracker.panic()
    # the synth got every note-off and All Notes Off, though each send to ours raised first
    assert synth.got == [[0x90, 60, 100], [0x90, 64, 100], [0x80, 60, 0], [0x80, 64, 0], [0xB0, 123, 0]]
    assert ours.got == [[0x90, 60, 100], [0x90, 64, 100]]
    ours.fails, synth.fails = False, True  # a named port that fails is only logged
    ports.send([0x90, 67, 90])
    assert ours.got[-1] == [0x90, 67, 90]
    ports.close()
    assert not any(p.open for p in FakeRtmidiPort.made)


def test_the_rtmidi_ports_stamp_each_message_with_the_service_clock_as_it_arrives(monkeypatch):
    fake_rtmidi(monkeypatch)
    clock, woken = iter([12.5, 12.75]), []
    ports = Ports("jack", "midiseed", "in", "out", wake=lambda: woken.append(1), now=lambda: next(clock))
    ours = next(p for p in FakeRtmidiPort.made if p.name == "midiseed")  # the input
    ours.callback(([0x90, 60, 90], 0.0), None)  # rtmidi's thread: a note arrives at 12.5
    ours.callback(([0x80, 60, 0], 0.25), None)
    assert woken == [1, 1]
    assert ports.poll() == [(12.5, [0x90, 60, 90]), (12.75, [0x80, 60, 0])]  # read later, stamped then
    assert ports.poll() == []
    ports.close()
