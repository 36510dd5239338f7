import itertools
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from midiseed.errors import BadValue
from midiseed.evaluate import (
    NGram,
    choose_split,
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
from midiseed.evaluate.follow import compare, factor, format_follow, median_gap, notes_per_onset, summarise
from midiseed.evaluate.keys import Key, find_key, in_key_share, key_correlations
from midiseed.runtime.codec import Codec, Event, notes_to_events
from midiseed.runtime.engine import Engine, read_info
from midiseed.runtime.midifile import read_notes

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
    # the tiny run used 10 files with a hash split; evaluated = its test files (older models:
    # everything not trained on)
    evaluated = len(split["test"]) if "test" in split else 10 - len(split["train"])
    assert report["files"] == {"train": len(split["train"]), "evaluated": evaluated, "unreadable": 0}
    assert report["split"] == ("test" if "test" in split else "held-out")
    assert report["files"]["evaluated"] >= 1
    assert report["tokens_evaluated"] > 50
    assert set(report["next_token"]) == {"lstm", "lstm+memory", "unigram", "bigram", "trigram"}
    for row in report["next_token"].values():
        assert math.isfinite(row["nll"]) and row["nll"] > 0
        assert 0 <= row["accuracy"] <= 1
    nt = report["next_token"]
    assert report["lstm_vs_trigram_nll_ratio"] == pytest.approx(nt["lstm"]["nll"] / nt["trigram"]["nll"])
    ratio = report["memory_vs_trigram_nll_ratio"]
    assert ratio == pytest.approx(nt["lstm+memory"]["nll"] / nt["trigram"]["nll"])
    assert nt["lstm+memory"]["nll"] != nt["lstm"]["nll"]  # the memory spoke somewhere
    assert nt["trigram"]["nll"] < nt["unigram"]["nll"]  # the baselines learn something from the data
    assert list(report["decoding"]) == [
        "greedy",
        "temperature_1.0",
        "top_k_8",
        "no_repeat_12",
        "loop_guard_32",
        "loop_guard_32+memory",
        "data",
    ]
    assert report["decoding"]["loop_guard_32"]["loop_share"] <= report["decoding"]["greedy"]["loop_share"]
    for name, row in report["decoding"].items():
        assert row["samples"] == min(2, evaluated) or name == "data"
        assert row["samples"] >= 1
        for key in ("loop_share", "distinct_4grams", "pitch_class_tv", "duration_tv"):
            assert 0 <= row[key] <= 1, (name, key)
        # shares; all zero when the output struck no note (the tiny model's greedy output can be all rests)
        assert len(row["pitch_class_hist"]) == 12 and round(sum(row["pitch_class_hist"]), 2) in (0, 1)
        assert len(row["duration_hist"]) == 16 and sum(row["duration_hist"]) == pytest.approx(1, abs=1e-3)
    assert sum(report["decoding"]["data"]["pitch_class_hist"]) == pytest.approx(1, abs=1e-3)
    assert report["settings"]["steps"] == 24 and report["settings"]["baseline_transpose"] == "-1..1"


def test_memory_zero_scores_and_decodes_without_it_and_a_weight_reaches_both_rows(
    report, tiny_onnx, midi_folder
):
    plain = evaluate(tiny_onnx[0], midi_folder, seeds=2, steps=24, seed_len=8, random_seed=1, memory=0.0)
    assert "lstm+memory" not in plain["next_token"] and "loop_guard_32+memory" not in plain["decoding"]
    assert plain["next_token"]["lstm"] == report["next_token"]["lstm"]  # the network's own row is the same
    half = evaluate(tiny_onnx[0], midi_folder, seeds=2, steps=24, seed_len=8, random_seed=1, memory=0.5)
    assert half["settings"]["memory"] == 0.5
    assert half["next_token"]["lstm+memory"] != report["next_token"]["lstm+memory"]


def test_evaluate_scores_only_files_outside_the_training_split(tiny_onnx, midi_folder, tmp_path):
    split = read_info(tiny_onnx[0]).meta["split"]
    for name in split["train"]:
        shutil.copy(midi_folder / name, tmp_path / name)
    with pytest.raises(ValueError, match=r"only the model's .* training files; nothing is left to evaluate"):
        evaluate(tiny_onnx[0], tmp_path, seeds=1, steps=8, seed_len=4)
    # one held-out file added back: it alone is evaluated
    extra = (split.get("test") or split["held_out"])[0]
    shutil.copy(midi_folder / extra, tmp_path / extra)
    (tmp_path / "broken.mid").write_bytes(b"MThd")  # unreadable: left out, and said so
    small = evaluate(tiny_onnx[0], tmp_path, seeds=1, steps=8, seed_len=4)
    assert small["files"] == {"train": len(split["train"]), "evaluated": 1, "unreadable": 1}
    assert "(1 files of the data folder could not be read and are left out)" in format_report(small)


def test_format_report_has_both_tables_and_every_row(report):
    text = format_report(report)
    assert text.count("|---|") == 3  # next-token, decoding, follows the seed
    # every next-token and decoding row (their names are pinned in test_evaluate_end_to_end), data included
    for name in [*report["next_token"], *report["decoding"]]:
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
    by_kind = {"struck": [], "held": [], "duration": []}
    for prev, target in itertools.pairwise(piece.tolist()):
        logits, state = engine.step(int(prev), state)
        logp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum())
        nll -= logp[target]
        correct += int(np.argmax(logits) == target)
        by_kind["struck" if target < 128 else "held" if target < 256 else "duration"].append(-logp[target])
    scores = score_lstm(engine, [piece, piece[:1]])
    assert scores["nll"] == pytest.approx(nll / 6, rel=1e-4)
    assert scores["accuracy"] == pytest.approx(correct / 6)
    # the targets: N64 D4 | H60 N67 D2 | D8: two struck pitches, one held, three durations
    for kind, share in (("struck", 2 / 6), ("held", 1 / 6), ("duration", 3 / 6)):
        assert scores["by_kind"][kind]["share"] == pytest.approx(share)
        assert scores["by_kind"][kind]["nll"] == pytest.approx(np.mean(by_kind[kind]), rel=1e-4)


def test_evaluate_does_not_import_tensorflow():
    code = "import sys, midiseed.evaluate; assert not {'tensorflow', 'keras'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


def line(pitches, steps=2) -> list[Event]:
    """A melody: one struck pitch an event (None: a rest)."""
    return [Event((), (), steps) if p is None else Event((p,), (False,), steps) for p in pitches]


def chords(chord_list, steps=4) -> list[Event]:
    return [Event(tuple(c), (False,) * len(c), steps) for c in chord_list]


@pytest.mark.parametrize("tonic", range(12))
def test_key_finder_names_every_major_and_minor_scale(tonic):
    # a scale up and down, tonic and fifth longer (as a tune dwells on them)
    up = [0, 2, 4, 5, 7, 9, 11, 12]
    major = [Event((60 + tonic + d,), (False,), 4 if d % 12 in (0, 7) else 2) for d in up + up[::-1]]
    assert find_key(major) == Key(tonic, False)
    harmonic = [0, 2, 3, 5, 7, 8, 11, 12]
    minor = [
        Event((57 + tonic + d,), (False,), 4 if d % 12 in (0, 7) else 2) for d in harmonic + harmonic[::-1]
    ]
    assert find_key(minor) == Key((9 + tonic) % 12, True)


def test_key_finder_agrees_with_music21_on_bach_chorales(tmp_path):
    from music21 import corpus

    for name, expected in [
        ("bach/bwv66.6", Key(6, True)),
        ("bach/bwv269", Key(7, False)),
        ("bach/bwv1.6", Key(5, False)),
    ]:
        score = corpus.parse(name)
        assert str(score.analyze("key.krumhanslschmuckler")).lower() == str(expected).lower().replace(
            "f#", "f#"
        )
        path = score.write("midi", fp=str(tmp_path / (name.split("/")[1] + ".mid")))
        events = notes_to_events(read_notes(path, Codec().grid), Codec().grid)
        assert find_key(events) == expected, name


def test_key_correlations_peak_at_one_for_the_profile_itself():
    from midiseed.evaluate.keys import MINOR_PROFILE

    r = key_correlations(np.roll(MINOR_PROFILE, 4))
    assert r[12 + 4] == pytest.approx(1.0) and r.argmax() == 16
    assert find_key(line([None, None])) is None


def test_in_key_share_is_note_time_on_the_scale():
    c_major = Key(0, False)
    assert in_key_share(line([60, 62, 64, 65]), c_major) == 1.0
    # F# sounds 6 of 12 steps: half the note time is off the scale
    assert in_key_share(line([60, 66], steps=6), c_major) == pytest.approx(0.5)
    assert in_key_share(line([68, 71], steps=2), Key(9, True)) == 1.0  # A minor: F, G# (leading tone)
    assert in_key_share(line([None]), c_major) is None


def test_texture_and_rhythm_ratios_on_handmade_seeds_and_answers():
    melody_eighths = line([62, 64, 66, 67, 69, 67, 66, 64], steps=2)
    chorale_eighths = chords([(50, 57, 62, 66), (52, 59, 64, 67)] * 4, steps=2)
    hymn_quarters = chords([(50, 57, 62, 66), (52, 59, 64, 67)] * 4, steps=4)
    assert notes_per_onset(melody_eighths) == 1.0 and notes_per_onset(chorale_eighths) == 4.0
    assert median_gap(melody_eighths) == 2.0 and median_gap(hymn_quarters) == 4.0
    # a melody answered with four-part chords: texture x4; a hymn in quarters answered in eighths: rhythm x2
    row = compare(melody_eighths, chorale_eighths)
    assert row["texture"] == 4.0 and row["texture_answer_over_seed"] == 4.0 and row["rhythm"] == 1.0
    row = compare(hymn_quarters, chorale_eighths)
    assert row["texture"] == 1.0 and row["rhythm"] == 2.0 and row["rhythm_answer_over_seed"] == 0.5
    assert factor(1.0, 3.0) == factor(3.0, 1.0) == 3.0 and factor(None, 1.0) is None
    # held pitches are not onsets: a held chord under a moving top voice is one new note per onset
    held = [Event((50, 57, 62), (False,) * 3, 2)] + [
        Event((50, 57, 62 + k), (True, True, False), 2) for k in (2, 4)
    ]
    assert notes_per_onset(held) == pytest.approx((3 + 1 + 1) / 3)


def test_pitch_loops_hear_a_figure_replayed_with_its_durations_varied():
    figure = [60, 64, 67]
    varied = [Event((p,), (False,), steps) for steps in (2, 4, 3, 6) for p in figure]  # durations move
    row = compare(line(figure, steps=2), varied)
    assert row["loop_8"] == 0.0  # as events it does not loop
    assert row["pitch_loop_8"] == 1.0  # to the ear it is one figure four times
    assert compare(line(figure, steps=2), line([60, 62, 64, 65, 67, 69, 71, 72]))["pitch_loop_8"] == 0.0


def test_register_shift_and_loops_of_an_answer():
    seed = line([60, 62, 64, 65, 67, 65, 64, 62], steps=2)
    lower = [Event((p - 12,), h, s) for ev in seed for p, h, s in [(ev.pitches[0], ev.held, ev.steps)]]
    row = compare(seed, lower * 2)
    assert row["shift"] == pytest.approx(-12.0)
    assert row["loop_8"] == 1.0 and row["loop_32"] == 1.0  # the same 8 events twice
    summary = summarise([row, compare(seed, seed)])
    assert summary["seeds"] == 2 and summary["shift_size"] == pytest.approx(6.0)
    assert summary["in_key"] == 1.0
    # loop shares only from the answers of full length when those are given
    only_clean = summarise([row, compare(seed, seed)], [compare(seed, seed)])
    assert only_clean["loop_8"] == 0.0 and only_clean["loop_seeds"] == 1 and only_clean["seeds"] == 2


def test_choose_split_prefers_test_offers_validation_and_falls_back_to_not_in_train():
    files = ["folk/a.mid", "folk/b.mid", "bach/c.mid", "bach/d.mid", "bach/e.mid"]
    meta = {
        "split": {"train": ["folk/a.mid", "bach/c.mid"], "validation": ["folk/b.mid"], "test": ["bach/d.mid"]}
    }
    assert choose_split(meta, files) == (["folk/a.mid", "bach/c.mid"], ["bach/d.mid"], "test")
    assert choose_split(meta, files, "validation")[1:] == (["folk/b.mid"], "validation")
    assert choose_split(meta, files, "held-out")[1] == ["folk/b.mid", "bach/d.mid", "bach/e.mid"]
    old = {"split": {"train": ["c.mid", "a.mid"], "held_out": ["d.mid"]}}  # a flat folder's names
    train, held, name = choose_split(old, files)
    assert held == ["folk/b.mid", "bach/d.mid", "bach/e.mid"]
    assert name == "held-out" and train == ["folk/a.mid", "bach/c.mid"]  # matched by file name
    with pytest.raises(BadValue, match="no 'validation' split"):
        choose_split(old, files, "validation")
    with pytest.raises(BadValue, match="no training split"):
        choose_split({}, files)
    # trained with --test-fraction 0 (or too few files): an empty test list means "not in train"
    no_test = {"split": {"train": ["folk/a.mid"], "validation": ["folk/b.mid"], "test": []}}
    assert choose_split(no_test, files)[1:] == (
        ["folk/b.mid", "bach/c.mid", "bach/d.mid", "bach/e.mid"],
        "held-out",
    )


def test_follow_table_per_collection_from_a_folder_of_two_collections(tiny_onnx, midi_folder, tmp_path):
    split = read_info(tiny_onnx[0]).meta["split"]
    held_out = sorted(f.name for f in midi_folder.glob("*.mid") if f.name not in split["train"])
    assert len(held_out) >= 2
    for f in sorted(midi_folder.glob("*.mid")):
        # the held-out files alternate between the two collections; training files go to "chorale"
        coll = "folk" if f.name in held_out and held_out.index(f.name) % 2 else "chorale"
        (tmp_path / coll).mkdir(exist_ok=True)
        shutil.copy(f, tmp_path / coll / f.name)
    report = evaluate(
        tiny_onnx[0], tmp_path, seeds=1, steps=8, seed_len=16, answer_len=24, follow_seeds=3, split="held-out"
    )
    # the tiny model's split names files without folders: they are matched by name in each folder
    assert report["split"] == "held-out" and report["files"]["train"] == len(split["train"])
    assert set(report["follow"]) == {"folk", "chorale"}
    assert sum(report["collections"].values()) == report["files"]["evaluated"]
    # next-token scores per collection: their tokens and NLL pool back to the whole split's
    per = report["next_token_by_collection"]
    assert set(per) == {"folk", "chorale"}
    assert sum(row["files"] for row in per.values()) == report["files"]["evaluated"]
    assert sum(row["tokens"] for row in per.values()) == report["tokens_evaluated"]
    for name in ("lstm", "trigram"):
        pooled = sum(row[name]["nll"] * row["tokens"] for row in per.values()) / report["tokens_evaluated"]
        assert pooled == pytest.approx(report["next_token"][name]["nll"])
    for row in per.values():
        assert row["lstm_vs_trigram_nll_ratio"] == pytest.approx(row["lstm"]["nll"] / row["trigram"]["nll"])
        # by kind of token: the shares sum to one and the kinds' NLLs pool back to the whole
        for name in ("lstm", "trigram"):
            kinds = row[name]["by_kind"].values()
            assert sum(k["share"] for k in kinds) == pytest.approx(1.0)
            assert sum(k["share"] * (k["nll"] or 0) for k in kinds) == pytest.approx(row[name]["nll"])
        melody = [row[name]["by_kind"][k] for name in ("lstm", "trigram") for k in ("struck", "duration")]
        net = (melody[0]["share"] * melody[0]["nll"] + melody[1]["share"] * melody[1]["nll"]) / (
            melody[0]["share"] + melody[1]["share"]
        )
        tri = (melody[2]["share"] * melody[2]["nll"] + melody[3]["share"] * melody[3]["nll"]) / (
            melody[2]["share"] + melody[3]["share"]
        )
        assert row["melody_vs_trigram_nll_ratio"] == pytest.approx(net / tri)
    text = format_report(report)
    assert "| folk |" in text and f"{per['folk']['lstm']['nll']:.3f}" in text
    kinds = text[text.index("By kind of token") :]
    assert "| folk |" in kinds and f"{per['folk']['melody_vs_trigram_nll_ratio']:.2f} |" in kinds
    for entry in report["follow"].values():
        assert set(entry) == {"pieces", "model", "served", "data"}
        assert 1 <= entry["model"]["seeds"] <= 3 and entry["served"]["seeds"] == entry["model"]["seeds"]
        # loop shares length for length, over the pieces whose own continuation the data row has
        assert entry["model"]["loop_seeds"] == entry["served"]["loop_seeds"] == entry["data"]["seeds"] >= 1
        for row in (entry["model"], entry["served"], entry["data"]):
            for key in ("texture", "rhythm"):
                assert row[key] is None or row[key] >= 1.0
            assert row["in_key"] is None or 0 <= row["in_key"] <= 1
            assert 0 <= row["loop_8"] <= row["loop_32"] <= 1
    text = format_report(report)
    for coll in report["follow"]:
        assert (
            f"| {coll} | model |" in text and f"| {coll} | served |" in text and f"| {coll} | data |" in text
        )
    assert "| folk |" not in format_follow({})


def test_evaluate_command_refuses_an_unknown_split_and_one_the_model_lacks(tiny_onnx, midi_folder):
    from typer.testing import CliRunner

    from midiseed.cli import app

    args = ["evaluate", "--model", str(tiny_onnx[0]), "--data", str(midi_folder)]
    result = CliRunner().invoke(app, [*args, "--split", "train"])
    assert result.exit_code == 2 and "test, validation or held-out" in result.output
    # the chorale model's split predates validation; the default's names none of these files
    chorale = CliRunner().invoke(
        app, ["evaluate", "--model", "chorale", "--data", str(midi_folder), "--split", "validation"]
    )
    assert chorale.exit_code == 2 and "no 'validation' split" in chorale.output
    shipped = CliRunner().invoke(app, ["evaluate", "--data", str(midi_folder), "--split", "validation"])
    assert shipped.exit_code == 2 and "holds none of the model's 'validation' files" in shipped.output


def test_a_small_collection_can_take_more_seeds_from_later_in_its_pieces(tiny_onnx):
    """per_piece > 1: a collection with fewer pieces than seeds also starts seeds every seed + answer
    events into its pieces; a collection with enough pieces keeps one seed a piece, from its start."""
    from midiseed.evaluate.follow import follow_table
    from midiseed.runtime.codec import Event
    from midiseed.runtime.engine import Engine

    def piece(base: int, n: int) -> list:
        return [Event((base + (i * 5) % 12,), (False,), 2 + i % 2) for i in range(n)]

    pieces = {"small": [piece(60, 130), piece(62, 70)], "big": [piece(60 + i, 50) for i in range(6)]}
    engine = Engine(tiny_onnx[0])
    one = follow_table(engine, pieces, seeds=6, seed_len=16, answer_len=24)
    more = follow_table(engine, pieces, seeds=6, seed_len=16, answer_len=24, per_piece=4)
    assert one["small"]["served"]["seeds"] == 2
    # starts at events 0, 40, 80 (and 120: too short) of the first piece, 0 and 40 of the second
    assert more["small"]["served"]["seeds"] == more["small"]["model"]["seeds"] == 5
    assert more["small"]["pieces"] == 2
    assert one["big"] == more["big"] and more["big"]["served"]["seeds"] == 6
