"""Training against greedy loops (DITTO): the repeated windows, the loss, and fine-tuning a run."""

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from midiseed.cli import app
from midiseed.runtime.codec import Codec, Event, Grid
from midiseed.training import loops
from midiseed.training.losses import IGNORE, MLE, loss_and_metric, pack
from midiseed.training.train import TrainOptions, train
from midiseed.training.windows import Pieces

runner = CliRunner()


def _pieces(codec: Codec) -> Pieces:
    """Four files of 40 random events each (chords, holds), as the store would hold them."""
    rng = np.random.default_rng(3)
    pieces = []
    for _ in range(4):
        events, previous = [], set()
        for _ in range(40):
            pitches = tuple(sorted(set(int(p) for p in rng.integers(50, 60, size=rng.integers(1, 4)))))
            held = tuple(bool(p in previous and rng.random() < 0.5) for p in pitches)
            events.append(Event(pitches, held, int(rng.integers(1, 5))))
            previous = set(pitches)
        pieces.append(codec.encode(events))
    return Pieces.from_arrays(pieces)


def test_repeated_windows_are_real_music_then_one_stretch_of_it_repeated():
    codec = Codec(Grid())
    pieces = _pieces(codec)
    files = [pieces.tokens(i) for i in range(len(pieces))]
    assert [int((f >= codec.duration(1)).sum()) for f in files] == [40] * 4
    x, y = loops.repeated_windows(pieces, 64, 50, np.random.default_rng(0), codec.duration(1))
    assert x.shape == (64, 50) and y.shape == (64, 50, 2)
    periods, leads = set(), set()
    for row in range(64):
        window = np.concatenate([x[row, :1], y[row, :, 0]])
        assert (x[row, 1:] == window[1:-1]).all()
        what = y[row, :, 1]
        trained = np.flatnonzero(what >= 0)
        assert trained.size and (trained == np.arange(trained[0], 50)).all()
        assert (what[: trained[0]] == IGNORE).all()
        period = int(trained[0] - what[trained[0]])
        assert (what[trained] == trained - period).all()  # each points one copy back...
        assert (y[row, trained, 0] == y[row, trained - period, 0]).all()  # ...to the same token
        # where the first copy begins (after 0 or 1 tokens of music its first token has no target)
        lead = int(trained[0]) + 1 - period
        if lead == 1 and not codec.is_duration(int(window[0])):
            lead = 0
        assert lead == 0 or codec.is_duration(int(window[lead - 1]))  # after whole events
        assert (window[lead + period :] == np.resize(window[lead : lead + period], 51 - lead - period)).all()
        if lead:  # the music before the stretch is one file's own, as it was
            assert any(
                (f[i : i + lead] == window[:lead]).all() for f in files for i in range(len(f) - lead + 1)
            )
        periods.add(len(codec.decode(window[lead : lead + period])))
        leads.add(lead)
        # every copy is a valid spelling: a held pitch was sounding in the event before it
        whole = np.flatnonzero(window >= codec.duration(1))[0] + 1  # the window may begin mid-event
        events = codec.decode(window[whole:])
        for before, ev in itertools.pairwise(events):
            for p, h in zip(ev.pitches, ev.held):
                assert not h or p in before.pitches
    assert periods <= set(range(1, loops.MAX_LOOP_EVENTS + 1)) and len(periods) >= 6
    assert 0 in leads and len(leads) > 10


def test_loop_loss_is_cross_entropy_or_ditto_where_the_targets_say():
    import keras

    loss_fn, accuracy = loss_and_metric(lam=0.5)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(1, 4, 5)).astype("float32")
    targets = np.array([[2, 3, 2, 3]])
    what = np.array([[MLE, IGNORE, 0, 1]])
    per_position = np.asarray(loss_fn.call(pack(targets, what).astype("float32"), logits))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    pt = p[0, np.arange(4), targets[0]]
    expected = [
        -np.log(pt[0]),
        0.0,
        -np.log(1 - abs(pt[2] - 0.5 * pt[0])),
        -np.log(1 - abs(pt[3] - 0.5 * pt[1])),
    ]
    np.testing.assert_allclose(per_position[0], expected, rtol=1e-5, atol=1e-6)
    # the gradient never flows into the earlier copy's probability
    packed = pack(targets, what).astype("float32")
    hits = np.asarray(accuracy(packed, keras.ops.convert_to_tensor(logits)))
    assert hits == pytest.approx(float(logits[0, 0].argmax() == 2))


def _reinforcement(model, x, y) -> float:
    """How much likelier a repeated stretch's tokens are than one copy earlier (ratio of mean p)."""
    logits = np.asarray(model.predict(x, verbose=0), dtype=np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    pt = np.take_along_axis(p, y[..., :1], axis=-1)[..., 0]
    rows, cols = np.nonzero(y[..., 1] >= 0)
    return float(pt[rows, cols].mean() / pt[rows, y[rows, cols, 1]].mean())


def test_the_loop_loss_makes_a_real_lstm_less_sure_of_each_further_repeat():
    import keras

    from midiseed.training.model import build_model, preset_config

    codec = Codec(Grid())
    pieces = _pieces(codec)

    def windows(seed):
        # 512 windows, 20 epochs: fewer (128, 30) left the outcome to the seed, either way
        return loops.repeated_windows(pieces, 512, 32, np.random.default_rng(seed), codec.duration(1))

    keras.utils.set_random_seed(0)
    model = build_model(preset_config("tiny", len(codec), dropout=0.0))
    loss_fn, accuracy = loss_and_metric(lam=0.5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss_fn, metrics=[accuracy])
    x, y = windows(1)
    test_x, test_y = windows(2)
    model.fit(x, pack(y[..., 0]), epochs=20, batch_size=64, verbose=0)
    start = model.get_weights()
    ratios = {}
    for name, targets in [("cross-entropy", pack(y[..., 0])), ("ditto", y)]:
        model.set_weights(start)
        model.fit(x, targets, epochs=20, batch_size=64, verbose=0)
        ratios[name] = _reinforcement(model, test_x, test_y)
    # on windows it never saw, a repeat is a good deal less likely than what it repeats
    assert ratios["ditto"] < 0.8 and ratios["ditto"] < 0.8 * ratios["cross-entropy"], ratios


def test_fine_tuning_a_run_with_anti_loop_windows(tmp_path, tiny_run):
    import keras

    base = json.loads((tiny_run / "config.json").read_text())["options"]
    opts = TrainOptions(**{**base, "out": str(tmp_path / "ft"), "epochs": 2, "learning_rate": 1e-4})
    opts.anti_loop, opts.init, opts.keep = 0.5, str(tiny_run), "last"
    metrics = train(opts)
    assert metrics["kept_epoch"] == 2  # the last epoch, whatever its held-out loss
    kept = keras.models.load_model(tmp_path / "ft" / "model.keras", compile=False).get_weights()
    last = keras.models.load_model(tmp_path / "ft" / "checkpoints" / "last.keras").get_weights()
    assert all((a == b).all() for a, b in zip(kept, last))
    assert metrics["held_out_loss"] > 0 and 0 < metrics["held_out_accuracy"] < 1
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["options"]["init"] == str(tiny_run) and config["options"]["anti_loop"] == 0.5
    before = keras.models.load_model(tiny_run / "model.keras", compile=False)
    after = keras.models.load_model(tmp_path / "ft" / "model.keras", compile=False)
    # it starts from the run's weights and keeps its batch-norm statistics
    for name in ["norm0", "norm1", "norm_dense"]:
        for w0, w1 in zip(before.get_layer(name).get_weights(), after.get_layer(name).get_weights()):
            np.testing.assert_array_equal(w0, w1)
    kernel0, kernel1 = (m.get_layer("lstm0").get_weights()[0] for m in (before, after))
    assert 0 < np.abs(kernel1 - kernel0).max() < 0.05  # moved a little from where it was
    # it looked for its own greedy loops while training, and says how often it found one
    history = json.loads((tmp_path / "ft" / "history.json").read_text())
    assert 0 <= history[0]["greedy_loop_rate"] <= 1
    # each batch trained as many repeated-stretch windows again as ordinary ones
    state = json.loads((tmp_path / "ft" / "state.json").read_text())
    steps, batch = config["data"]["steps_per_epoch"], opts.batch_size
    assert state["tokens_trained"] == 2 * steps * (batch + batch) * config["model"]["seq_len"]


class _Cycler:
    """A stand-in step model whose greedy choice is always the next token of a fixed cycle."""

    def __init__(self, cycle, vocab):
        self.cycle, self.vocab = cycle, vocab
        self.inputs = [None, SimpleNamespace(shape=(None, 1))]  # tokens, one state: tokens seen

    def predict_on_batch(self, inputs):
        tokens, seen = inputs
        batch, steps = tokens.shape
        logits = np.zeros((batch, steps, self.vocab), dtype=np.float32)
        for t in range(steps):
            nxt = self.cycle[int(seen[0, 0] + t) % len(self.cycle)]
            logits[:, t, nxt] = 1.0
        return [logits, seen + steps]


def test_own_loops_are_the_loops_greedy_decoding_falls_into_after_the_primer():
    codec = Codec(Grid())
    d2, d4 = codec.duration(2), codec.duration(4)
    cycle = [d4, 64, d4, 60]  # after any 4-token primer: C4, E4, C4, E4...: a period of 2 events
    primers = np.array([[50, d2, 52, d2], [55, d2, 55, d2]], dtype=np.int32)
    found = loops.own_loops(_Cycler(cycle, len(codec)), codec, primers, 16)
    # the second primer repeats itself, but the loop that counts is the one generated after it
    assert len(found) == 2
    for (music, stretch), primer in zip(found, primers):
        assert list(music) == list(primer)
        assert list(stretch) == [60, d4, 64, d4]
    x, y = loops.own_windows(found, 4, 12, np.random.default_rng(0))
    assert (y[..., 1] >= 0).any(axis=1).all()
    for row in range(4):
        trained = np.flatnonzero(y[row, :, 1] >= 0)
        assert (y[row, trained, 0] == y[row, y[row, trained, 1], 0]).all()
        assert (x[row, 1:] == y[row, :-1, 0]).all()
    # a model that never loops gives nothing
    walk = [60, d2, 62, d2, 64, d2, 65, d2, 67, d2, 69, d2, 71, d2, 72, d2, 74, d2, 76, d2]
    assert loops.own_loops(_Cycler(walk, len(codec)), codec, primers, 16) == []


def test_a_long_phrase_is_a_loop_only_when_played_three_times_running():
    phrase = [(i,) for i in range(10)]
    other = [(100 + i,) for i in range(5)]
    assert loops._first_loop(other + phrase + phrase + other, 16) is None  # AAB: a repeat
    assert loops._first_loop(other + phrase * 3, 16) == (5, 10)
    assert loops._first_loop(other + phrase * 3, 8) is None  # longer than asked for
    assert loops._first_loop(other + [(7,), (8,)] * 2, 16) == (5, 2)  # short: twice is enough
    assert loops._first_loop(phrase * 3, 16, first=1) is None  # from event 1: not three copies
    assert loops._first_loop(phrase * 4, 16, first=1) == (1, 10)


def test_init_must_be_the_same_network_and_must_not_have_seen_the_held_out_files(
    tmp_path, tiny_run, midi_folder
):
    base = ["train", "--data", str(midi_folder), "--out", str(tmp_path / "r"), "--init", str(tiny_run)]
    cases = [
        (["--preset", "default"], "different network"),
        (["--preset", "tiny", "--val-fraction", "0.5"], "trained on"),
        (["--preset", "tiny", "--anti-loop", "1.5"], "anti-loop"),
        (["--preset", "tiny", "--keep", "worst"], "keep must be best or last"),
    ]
    for args, message in cases:
        result = runner.invoke(app, [*base, *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, result.output
        assert "Traceback" not in result.output
    result = runner.invoke(app, [*base[:-2], "--init", str(tmp_path), "--preset", "tiny"])
    assert result.exit_code == 2 and "not a finished run directory" in result.output
