"""The JACK extension on a real (dummy) JACK server: one client with both ports, messages both ways,
the wake-up byte, named connections that come and go, and bad messages refused."""

import os
import select
import socket
import time

import pytest

from midiseed.daemon import jackports
from midiseed.daemon.ports import PortError

pytestmark = pytest.mark.jack


@pytest.fixture
def wake():
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    yield r, w
    r.close()
    w.close()


@pytest.fixture
def ports(jack, wake):
    opened = []

    def open_(**kwargs):
        name = f"jp{os.getpid()}-{len(opened)}"
        p = jackports.JackPorts(name, f"{name}-in", f"{name}-out", wake_fd=wake[1].fileno(), **kwargs)
        opened.append(p)
        return p

    yield open_
    for p in opened:
        p.close()


def test_the_extension_is_built_where_jack_is_installed():
    assert jackports.available()  # .ci/run installs jackd2 before `pip install -e .` builds it


def test_an_extension_built_for_an_older_midiseed_is_not_used(caplog):
    """After a `git pull` without `pip install -e .`, the old build's read() gave bare messages and
    the daemon died on its first note; the rtmidi ports serve instead."""
    import types

    assert jackports._checked(types.SimpleNamespace(Client=object)) is None  # API 1: no constant
    assert "built for an older midiseed" in caplog.text
    current = types.SimpleNamespace(Client=object, API=jackports.API)
    assert jackports._checked(current) is current


def test_one_client_holds_both_ports_and_loops_messages_back_with_a_wake_up(ports, wake):
    p = ports()
    inp, out = p.port_names
    assert inp.split(":")[0] == out.split(":")[0]  # one client
    assert p._client.connect(out, inp) == 0
    p.send([0x90, 60, 100])
    p.send([0x80, 60, 0])
    p.send([0xF0, 0x7D, 1, 2, 0xF7])
    ready, _, _ = select.select([wake[0]], [], [], 2.0)
    assert ready  # the process thread wrote the byte
    deadline, got = time.monotonic() + 2, []
    while len(got) < 3 and time.monotonic() < deadline:
        got += p.poll()
        time.sleep(0.005)
    assert [m for _, m in got] == [[0x90, 60, 100], [0x80, 60, 0], [0xF0, 0x7D, 1, 2, 0xF7]]
    assert p.dropped == (0, 0)


def test_each_message_carries_the_time_it_arrived_not_the_time_it_was_read(ports):
    """The process thread stamps what arrives (time.monotonic(), when its period began): a chord
    that arrives while the service is busy is read late, but at the time it was played."""
    p = ports()
    inp, out = p.port_names
    assert p._client.connect(out, inp) == 0
    time.sleep(0.05)  # the connection is made in a later period
    sent = time.monotonic()
    p.send([0x90, 60, 100])
    time.sleep(0.3)  # busy: nothing read for 0.3 s
    read = time.monotonic()
    got = p.poll()
    assert [m for _, m in got] == [[0x90, 60, 100]]
    ((arrived, _),) = got
    assert sent - 0.01 <= arrived <= sent + 0.1 < read - 0.15


def test_a_burst_larger_than_a_period_holds_goes_out_whole_over_the_next_periods(ports):
    """A period's MIDI buffer holds a few dozen messages (64 frames here); what does not fit waits
    in the ring for the next period instead of being dropped: a panic after a late period must
    not lose its note-offs."""
    p = ports()
    inp, out = p.port_names
    assert p._client.connect(out, inp) == 0
    burst = [[0x90 | (k % 2) << 4, 36 + k % 60, 1 + k % 100] for k in range(6000)]  # note-ons and -offs
    for message in burst:
        p.send(message)
    deadline, got = time.monotonic() + 5, []
    while len(got) < len(burst) and time.monotonic() < deadline:
        got += p.poll()
        time.sleep(0.005)
    assert [m for _, m in got] == burst
    times = [t for t, _ in got]
    assert times == sorted(times)  # stamped in the order they came
    assert p.dropped == (0, 0)


def test_bad_messages_are_refused_and_a_closed_client_says_so(ports):
    p = ports()
    with pytest.raises(ValueError, match="byte 1"):
        p.send([0x90, 300, 1])
    with pytest.raises(ValueError, match="of 0 bytes"):
        p.send([])
    with pytest.raises(ValueError, match="of 2001 bytes"):
        p.send([0xF0] + [1] * 2000)
    p.close()
    p.close()  # idempotent
    with pytest.raises(OSError, match="closed"):
        p.send([0x90, 60, 1])


def test_named_ports_are_connected_when_they_appear_and_again_after_they_left(ports):
    import rtmidi

    name = f"named{os.getpid()}"
    p = ports(connect_to=(f"{name}-in",))
    assert p.named[0].port is None

    def synth():
        port = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name)
        port.open_virtual_port(f"{name}-in")
        return port

    for _ in range(2):  # plugged in, pulled out, plugged in again
        s = synth()
        p.maintain()
        assert p.named[0].port is not None and p.named[0].port.endswith(f"{name}-in")
        p.send([0x90, 64, 90])
        deadline, got = time.monotonic() + 2, None
        while got is None and time.monotonic() < deadline:
            got = s.get_message()
            time.sleep(0.005)
        assert got is not None and got[0] == [0x90, 64, 90]
        s.close_port()
        s.delete()
        p.maintain()
        assert p.named[0].port is None


def test_a_port_name_taken_is_a_port_error_and_libjack_says_nothing_of_its_own(ports, wake, capfd):
    p = ports()
    client = p.port_names[0].split(":")[0]
    capfd.readouterr()
    with pytest.raises(PortError, match="is taken"):
        jackports.JackPorts(client, f"{client}-in", f"{client}-out", wake_fd=wake[1].fileno())
    assert capfd.readouterr().err == ""  # not libjack's "Client name = ... conflits with another one"
