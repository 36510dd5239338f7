"""The piece's memory: what followed the current context earlier in the stream, mixed into the
network's next-token distribution (`midiseed.runtime.memory`)."""

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.evaluate.nexttoken import piece_scores_lstm
from midiseed.runtime.codec import Codec, Event
from midiseed.runtime.generate import Generator
from midiseed.runtime.memory import HALF, LONGEST, MEMORY_WEIGHT, MIN_MATCH, SHARPNESS, Memory
from midiseed.runtime.sampling import Decoding
from tests.conftest import check_decoding_key

codec = Codec()
V = len(codec)


def reference(tokens: list[int], weight: float = MEMORY_WEIGHT) -> tuple[float, np.ndarray] | None:
    """The memory's prediction after `tokens`, computed the slow way from its definition."""
    n = len(tokens)
    matches = []
    for j in range(1, n):  # the prefix tokens[:j], followed by tokens[j]
        m = 0
        while m < min(j, LONGEST) and tokens[j - 1 - m] == tokens[n - 1 - m]:
            m += 1
        matches.append(m)
    if not matches or max(matches) < MIN_MATCH:
        return None
    probs = np.zeros(V)
    for j, m in enumerate(matches, start=1):
        if m >= MIN_MATCH:
            probs[tokens[j]] += float(m) ** SHARPNESS
    longest = max(matches)
    return weight * longest / (longest + HALF), probs / probs.sum()


def fed(tokens: list[int], **kw) -> Memory:
    mem = Memory(V, **kw)
    for t in tokens:
        mem.feed(t)
    return mem


def test_matches_its_definition_on_random_streams():
    rng = np.random.default_rng(0)
    for _ in range(30):
        # a small alphabet repeats contexts often, as music does
        tokens = rng.integers(0, 3, size=int(rng.integers(1, 120))).tolist()
        got, want = fed(tokens).distribution(), reference(tokens)
        assert (got is None) == (want is None)
        if got is not None:
            assert got[0] == pytest.approx(want[0])
            np.testing.assert_allclose(got[1], want[1])


def test_a_motif_heard_before_is_predicted_and_trusted_more_the_longer_the_match():
    motif = [codec.struck(p) for p in (60, 62, 64, 65, 67)]
    stream = [codec.struck(50), *motif, codec.struck(70), *motif[:4]]  # ... 60 62 64 65 -> 67 next?
    spread = [t for p in stream for t in (p, codec.duration(2))]  # notes and durations, as spelled
    weight, probs = fed(spread).distribution()
    assert np.argmax(probs) == codec.struck(67) and probs.max() == 1.0
    longer = [*spread, codec.struck(67), codec.duration(2)]  # one event more of the same context
    weight_longer, probs_longer = fed([*longer, codec.struck(72), codec.duration(2), *spread]).distribution()
    assert weight_longer > weight
    assert probs_longer[codec.struck(67)] > 0.5


def test_says_nothing_without_a_long_enough_match_and_then_leaves_the_logits_alone():
    mem = fed([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3])  # longest match 3 < MIN_MATCH
    assert mem.distribution() is None
    logits = np.linspace(-1, 1, V)
    assert mem.mix(logits) is logits
    assert fed([1, 2, 3] * 10, weight=0).distribution() is None  # weight 0: off


def test_mix_is_a_distribution_that_keeps_every_token_possible():
    mem = fed([1, 2, 3, 4] * 6)
    logp = mem.mix(np.zeros(V))
    p = np.exp(logp)
    assert p.sum() == pytest.approx(1.0)
    assert p.min() > 0  # the network's share keeps everything playable
    assert np.argmax(p) == 1  # after ... 3 4 comes 1


def test_caps_match_lengths_at_its_longest():
    tokens = [9, 8] + [1, 2, 3] * 60  # matches up to 177 tokens long, counted as LONGEST
    got, want = fed(tokens).distribution(), reference(tokens)
    assert got[0] == pytest.approx(want[0]) == pytest.approx(MEMORY_WEIGHT * LONGEST / (LONGEST + HALF))
    np.testing.assert_allclose(got[1], want[1])


def test_keeps_its_window_and_predicts_as_from_the_tokens_kept():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 2, size=700).tolist()
    mem = fed(tokens, window=200)  # drops its older half twice
    got, want = mem.distribution(), reference(tokens[-mem._n :])
    assert mem._n <= 400
    assert got[0] == pytest.approx(want[0])
    # matches reaching back past the kept tokens may count a little longer than the kept part shows
    assert np.argmax(got[1]) == np.argmax(want[1])


def test_weight_is_checked():
    with pytest.raises(BadValue, match=r"memory must be in 0\.\.0\.99"):
        Decoding(memory=0.995)
    with pytest.raises(ValueError, match="memory"):
        Memory(V, weight=-0.1)


class IndifferentEngine:
    """A fake model (unit tests only) with the same logits for every token: it knows nothing."""

    codec = codec

    def zero_state(self):
        return None

    def run(self, tokens, state):
        return np.zeros((1, tokens.shape[1], V), dtype=np.float32), state

    def step(self, token, state):
        return np.zeros(V, dtype=np.float32), state


def test_the_generator_answers_from_the_phrase_when_the_network_has_no_preference():
    tune = [Event((p,), (False,), s) for p, s in ((62, 2), (66, 2), (69, 4), (67, 2), (66, 2), (64, 4))]
    with_memory = Generator(IndifferentEngine(), Decoding(memory=MEMORY_WEIGHT))
    with_memory.prime(tune + tune[:3])
    assert with_memory.generate(3) == tune[3:]  # the strain goes on as it did
    plain = Generator(IndifferentEngine(), Decoding())
    plain.prime(tune + tune[:3])
    assert plain.generate(3) != tune[3:]
    with_memory.decoding = Decoding()  # switched off live (the daemon's CC)
    assert with_memory.memory.weight == 0
    # fed only while on; switched on, it catches up on what was heard and played since the phrase
    late = Generator(IndifferentEngine(), Decoding())
    late.prime(tune + tune[:3])
    assert late.memory._n == 0
    late.decoding = Decoding(memory=MEMORY_WEIGHT)
    assert late.memory._n == len(late.history)
    assert late.generate(3) == tune[3:]


def test_scoring_with_memory_scores_a_repeated_strain_better_than_the_network_alone():
    tune = [Event((p,), (False,), 2) for p in (62, 66, 69, 67, 66, 64, 62, 61)]
    tokens = codec.encode(tune * 3)
    alone, mixed = (
        rows[0] for rows in piece_scores_lstm(IndifferentEngine(), [tokens], (0.0, MEMORY_WEIGHT))
    )
    assert alone[0] == pytest.approx(np.log(V) * (len(tokens) - 1))  # uniform: log V a token
    assert mixed[0] < 0.5 * alone[0] and mixed[2] == alone[2]
    assert mixed[1] > alone[1]  # and it guesses the repeats right


def test_config_and_generate_reach_the_memory(tmp_path):
    from typer.testing import CliRunner

    from midiseed.cli import app
    from midiseed.daemon.config import Config

    assert Config().memory == 0  # off by default: it stalls on repeated progressions (MODEL_CARD)
    assert check_decoding_key(tmp_path, "memory", "0.95", "1.5").memory.weight == 0.95
    # generate: the same seed answered with and without the memory
    outs = []
    for weight in ("0", "0.95"):
        out = tmp_path / f"m{weight}.mid"
        seed = "D4:0.5 F#4:0.5 A4 G4:0.5 F#4:0.5 E4 D4:0.5 F#4:0.5 A4 G4:0.5 F#4:0.5 E4 D4:0.5 F#4:0.5"
        result = CliRunner().invoke(
            app, ["generate", "--out", str(out), "--seed-notes", seed, "--memory", weight]
        )
        assert result.exit_code == 0, result.output
        outs.append(out.read_bytes())
    assert outs[0] != outs[1]
