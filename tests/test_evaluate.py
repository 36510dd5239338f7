import itertools
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from midiseed.evaluate import (
    NGram,
    distinct_ngrams,
    evaluate,
    format_report,
    histograms,
    loop_share,
    looped_mask,
    score_lstm,
    score_ngram,
    tv_distance,
)
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine, read_info

PIECES = [np.array([1, 2, 3, 1, 2, 3, 1, 2, 4]), np.array([5, 6, 1, 2, 3]), np.array([7])]


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("context", [(), (1,), (1, 2), (2, 3), (9, 9), (0, 1), (6, 1)])
def test_ngram_gives_a_proper_distribution_that_is_never_zero(order, context):
    p = NGram(order, 10).fit(PIECES).distribution(context)
    assert p.shape == (10,)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (p > 0).all()


def test_ngram_uses_its_context():
    uni, bi, tri = (NGram(n, 10).fit(PIECES) for n in (1, 2, 3))
    np.testing.assert_allclose(
        uni.distribution((1, 2)), (np.bincount(np.concatenate(PIECES), minlength=10) + 1) / 25
    )
    # after "1 2" the training data says 3 (twice) or 4 (once); after "2" alone, 3 again
    assert np.argmax(tri.distribution((1, 2))) == 3
    assert bi.distribution((2,))[3] > uni.distribution(())[3]
    assert bi.distribution((2,))[3] > bi.distribution((5,))[3]
    assert (
        tri.distribution((1, 2))[4] > bi.distribution((2,))[4]
    )  # "1 2" is followed by 4 more often than "2"
    # an unseen context falls back to the unigram exactly; only the last order-1 tokens count
    np.testing.assert_allclose(tri.distribution((9, 9)), uni.distribution(()))
    np.testing.assert_allclose(bi.distribution((8, 8, 2)), bi.distribution((2,)))


def test_score_ngram_matches_its_distributions():
    tri = NGram(3, 10).fit(PIECES)
    piece = np.array([1, 2, 3, 9])
    expected = -np.mean([np.log(tri.distribution(piece[max(0, i - 2) : i])[piece[i]]) for i in (1, 2, 3)])
    scores = score_ngram(tri, [piece, np.array([4])])
    assert scores["nll"] == pytest.approx(expected)
    assert scores["accuracy"] == pytest.approx(2 / 3)  # 1 -> 2 and 1 2 -> 3 are the argmax, 9 is not


def test_loop_metric_on_handcrafted_sequences():
    assert loop_share([5] * 20) == 1.0
    assert loop_share(list("abcabcabcabc")) == 1.0
    assert loop_share(list(range(30))) == 0.0
    assert loop_share([]) == 0.0
    # only the two full repetitions of "ab" are looped, not what surrounds them
    assert looped_mask(list("xababy")).tolist() == [False, True, True, True, True, False]
    assert loop_share(list("xababy")) == pytest.approx(4 / 6)
    # a pattern must repeat in full: "abcab" has no loop, and period 9 is longer than max_period 8
    assert loop_share(list("abcab")) == 0.0
    assert loop_share(list("abcdefghi") * 3) == 0.0
    assert loop_share(list("abcdefghi") * 3, max_period=9) == 1.0
    # works on events too
    ev = [Event((60,), (False,), 4), Event((62,), (False,), 4)]
    assert loop_share(ev * 3 + [Event((), (), 2)]) == pytest.approx(6 / 7)


def test_distinct_ngrams_on_handcrafted_input():
    assert distinct_ngrams(list("abcdefg"), 4) == 1.0
    assert distinct_ngrams([1] * 10, 4) == pytest.approx(1 / 7)
    assert distinct_ngrams(list("abcabcabc"), 4) == pytest.approx(3 / 6)
    assert distinct_ngrams([1, 2, 3], 4) == 0.0


def test_histograms_count_struck_pitch_classes_and_durations():
    events = [Event((48, 60), (False, False), 4), Event((60, 64), (True, False), 16), Event((), (), 2)]
    pcs, durs = histograms(events, 16)
    assert pcs[0] == 2 and pcs[4] == 1 and pcs.sum() == 3  # the held C is not struck again
    assert durs[[1, 3, 15]].tolist() == [1, 1, 1] and durs.sum() == 3
    assert tv_distance(pcs, pcs * 5) == pytest.approx(0.0)
    assert tv_distance(np.eye(12)[0], np.eye(12)[1]) == pytest.approx(1.0)
    assert tv_distance(np.zeros(12), pcs) == 1.0


@pytest.fixture(scope="module")
def report(tiny_onnx, midi_folder):
    return evaluate(tiny_onnx[0], midi_folder, seeds=2, steps=24, seed_len=8, random_seed=1)


def test_evaluate_end_to_end(report, tiny_onnx, midi_folder):
    split = read_info(tiny_onnx[0]).meta["split"]
    assert json.loads(json.dumps(report, allow_nan=False)) == report  # strict JSON round trip
    assert report["model"] == str(tiny_onnx[0])
    assert report["preset"] == "tiny"
    # the tiny run used 10 files with a hash split; evaluated = everything not trained on
    assert report["files"] == {"train": len(split["train"]), "evaluated": 10 - len(split["train"])}
    assert report["files"]["evaluated"] >= 1
    assert report["tokens_evaluated"] > 50
    assert set(report["next_token"]) == {"lstm", "unigram", "bigram", "trigram"}
    for row in report["next_token"].values():
        assert math.isfinite(row["nll"]) and row["nll"] > 0
        assert 0 <= row["accuracy"] <= 1
    nt = report["next_token"]
    assert report["lstm_vs_trigram_nll_ratio"] == pytest.approx(nt["lstm"]["nll"] / nt["trigram"]["nll"])
    assert nt["trigram"]["nll"] < nt["unigram"]["nll"]  # the baselines learn something from the data
    assert list(report["decoding"]) == ["greedy", "temperature_1.0", "top_k_8", "no_repeat_12", "data"]
    for name, row in report["decoding"].items():
        assert row["samples"] == 2 or name == "data"
        assert row["samples"] >= 1
        for key in ("loop_share", "distinct_4grams", "pitch_class_tv", "duration_tv"):
            assert 0 <= row[key] <= 1, (name, key)
        # shares; all zero when the output struck no note (the tiny model's greedy output can be all rests)
        assert len(row["pitch_class_hist"]) == 12 and round(sum(row["pitch_class_hist"]), 2) in (0, 1)
        assert len(row["duration_hist"]) == 16 and sum(row["duration_hist"]) == pytest.approx(1, abs=1e-3)
    assert sum(report["decoding"]["data"]["pitch_class_hist"]) == pytest.approx(1, abs=1e-3)
    assert report["settings"]["steps"] == 24 and report["settings"]["baseline_transpose"] == "-1..1"


def test_evaluate_scores_only_files_outside_the_training_split(tiny_onnx, midi_folder, tmp_path):
    split = read_info(tiny_onnx[0]).meta["split"]
    for name in split["train"]:
        shutil.copy(midi_folder / name, tmp_path / name)
    with pytest.raises(ValueError, match=r"only the model's .* training files; nothing is left to evaluate"):
        evaluate(tiny_onnx[0], tmp_path, seeds=1, steps=8, seed_len=4)
    # one held-out file added back: it alone is evaluated
    extra = split["held_out"][0]
    shutil.copy(midi_folder / extra, tmp_path / extra)
    small = evaluate(tiny_onnx[0], tmp_path, seeds=1, steps=8, seed_len=4)
    assert small["files"] == {"train": len(split["train"]), "evaluated": 1}


def test_format_report_has_both_tables_and_every_row(report):
    text = format_report(report)
    assert text.count("|---|") == 2
    for name in [
        "lstm",
        "unigram",
        "bigram",
        "trigram",
        "greedy",
        "temperature_1.0",
        "top_k_8",
        "no_repeat_12",
    ]:
        assert f"| {name} |" in text
    assert "| data |" in text
    assert f"{report['next_token']['lstm']['nll']:.3f}" in text
    assert "loop share (period ≤ 8)" in text


def test_longer_loop_periods_count_at_least_as_much_looping(report, tiny_onnx, midi_folder):
    longer = evaluate(tiny_onnx[0], midi_folder, seeds=2, steps=24, seed_len=8, random_seed=1, max_period=12)
    assert longer["settings"]["max_loop_period"] == 12
    for name, row in report["decoding"].items():
        assert longer["decoding"][name]["loop_share"] >= row["loop_share"], name
    assert "loop share (period ≤ 12)" in format_report(longer)


def test_score_lstm_scores_each_token_from_the_tokens_before_it(tiny_onnx):
    engine = Engine(tiny_onnx[0], provider="cpu")
    piece = np.array([60, 64, 256 + 4, 128 + 60, 67, 256 + 2, 256 + 8], dtype=np.int32)
    state, nll, correct = engine.zero_state(), 0.0, 0
    for prev, target in itertools.pairwise(piece.tolist()):
        logits, state = engine.step(int(prev), state)
        logp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum())
        nll -= logp[target]
        correct += int(np.argmax(logits) == target)
    scores = score_lstm(engine, [piece, piece[:1]])
    assert scores["nll"] == pytest.approx(nll / 6, rel=1e-4)
    assert scores["accuracy"] == pytest.approx(correct / 6)


def test_evaluate_does_not_import_tensorflow():
    code = "import sys, midiseed.evaluate; assert not {'tensorflow', 'keras'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)
