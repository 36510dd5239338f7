"""Does the answer follow the seed? The "follows the seed" table of `midiseed evaluate`, per collection.

Each held-out piece gives one seed, its first `seed_len` (32) events. The model continues it greedily
for `answer_len` (64) events, twice: alone (`model`), and as `generate` and the daemon serve it
(`served`: following the seed's voices, register, chords and note rate (`Steering.follow`), with
the loop guard of `Decoding.loop_guard`).
Each answer is compared with the seed on:

- texture: struck notes per onset. The factor max(r, 1/r) of r = answer / seed, so 1.0 is a perfect
  match and 2.0 is twice (or half) as many notes per onset, whichever way;
- rhythm: the median gap between onsets, in grid steps, as the same kind of factor;
- in key: the share of the answer's note time (pitch x steps) on the scale of the seed's
  Krumhansl-Schmuckler key (`midiseed.evaluate.keys`);
- shift: the answer's mean pitch minus the seed's (note-time weighted), in semitones; the table
  gives the median of its size, the JSON also its signed median;
- loops: the share of the answer's events inside a loop of period <= 8 and <= 32 events; and the
  pitch loops: the same at period <= 8 over the events' pitches alone, durations ignored (a figure
  replayed with its rhythm varied is a loop to the ear, not to the event measure).

Factors, in-key share and shift are medians over the seeds of a collection; loop shares are means,
because most pieces loop not at all and a median would hide the ones that do. The `data` row compares
each seed with the piece's own next events (up to `answer_len`, from pieces that go on for at least
`MIN_CONTINUATION`): how far real music "follows" by these measures, and its own loop share. Loop
shares are compared length for length: an answer's loop share is that of its first k events, k the
length of its piece's own continuation, over the same pieces as the data's (`loop seeds`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from midiseed.evaluate.behaviour import loop_share
from midiseed.evaluate.keys import find_key, in_key_share
from midiseed.runtime.codec import Event
from midiseed.runtime.engine import Engine
from midiseed.runtime.generate import Generator
from midiseed.runtime.sampling import LOOP_GUARD, Decoding, Steering

SEED_EVENTS = 32
ANSWER_EVENTS = 64
LOOP_PERIODS = (8, 32)
PITCH_LOOP = "pitch_loop_8"
# the model alone (unsteered, plain greedy), and the model as `generate` and the daemon serve it:
# following the seed (steering None: `Steering.follow`), with the loop guard
SOURCES: dict[str, tuple[Steering | None, Decoding]] = {
    "model": (Steering(), Decoding()),
    "served": (None, Decoding(loop_guard=LOOP_GUARD)),
}
MIN_CONTINUATION = 16  # events of a piece's own continuation for its `data` row


def onsets(events: Sequence[Event]) -> tuple[np.ndarray, np.ndarray]:
    """(grid step, struck-note count) of each event that strikes a note."""
    times, counts, t = [], [], 0
    for ev in events:
        struck = sum(1 for h in ev.held if not h)
        if struck:
            times.append(t)
            counts.append(struck)
        t += ev.steps
    return np.array(times, dtype=np.int64), np.array(counts, dtype=np.int64)


def notes_per_onset(events: Sequence[Event]) -> float | None:
    """Mean struck notes per onset; None when nothing is struck."""
    _, counts = onsets(events)
    return float(counts.mean()) if len(counts) else None


def median_gap(events: Sequence[Event]) -> float | None:
    """Median grid steps between successive onsets; None with fewer than two onsets."""
    times, _ = onsets(events)
    return float(np.median(np.diff(times))) if len(times) >= 2 else None


def mean_pitch(events: Sequence[Event]) -> float | None:
    """Mean sounding pitch, each weighted by the steps it sounds; None when nothing sounds."""
    total = sum(p * ev.steps for ev in events for p in ev.pitches)
    weight = sum(ev.steps * len(ev.pitches) for ev in events)
    return total / weight if weight else None


def factor(a: float | None, b: float | None) -> float | None:
    """max(a/b, b/a): how many times larger or smaller; None when either is missing or zero."""
    if not a or not b:
        return None
    return max(a / b, b / a)


def compare(seed: Sequence[Event], answer: Sequence[Event]) -> dict:
    """The following measures of one answer against its seed (see the module docstring)."""
    key = find_key(seed)
    npo_seed, npo_answer = notes_per_onset(seed), notes_per_onset(answer)
    gap_seed, gap_answer = median_gap(seed), median_gap(answer)
    pitch_seed, pitch_answer = mean_pitch(seed), mean_pitch(answer)
    row = {
        "texture": factor(npo_answer, npo_seed),
        "texture_answer_over_seed": npo_answer / npo_seed if npo_seed and npo_answer else None,
        "rhythm": factor(gap_answer, gap_seed),
        "rhythm_answer_over_seed": gap_answer / gap_seed if gap_seed and gap_answer else None,
        "in_key": in_key_share(answer, key) if key else None,
        "shift": pitch_answer - pitch_seed if pitch_seed is not None and pitch_answer is not None else None,
    }
    return row | loops(answer)


def loops(events: Sequence[Event]) -> dict:
    """The loop shares of `events` at each of LOOP_PERIODS, and `pitch_loop_8`: the share at period
    <= 8 of their pitch content alone (which pitches sound, struck or held, whatever the duration),
    what an ear hears as a loop even when the durations vary."""
    shares = {f"loop_{p}": loop_share(list(events), p) for p in LOOP_PERIODS}
    shares[PITCH_LOOP] = loop_share([ev.pitches for ev in events], LOOP_PERIODS[0])
    return shares


def summarise(rows: Sequence[dict], loop_rows: Sequence[dict] | None = None) -> dict:
    """Medians of the factors, in-key share and shift; means of the loop shares (module docstring),
    taken over `loop_rows` when given (the answers cut to the length of the piece's own continuation:
    a shorter stretch loops less)."""
    loop_rows = rows if loop_rows is None else loop_rows

    def median(key: str, fn=lambda x: x) -> float | None:
        values = [fn(r[key]) for r in rows if r[key] is not None]
        return float(np.median(values)) if values else None

    out: dict = {"seeds": len(rows), "loop_seeds": len(loop_rows)}
    for key in ("texture", "texture_answer_over_seed", "rhythm", "rhythm_answer_over_seed", "in_key"):
        out[key] = median(key)
    out["shift_size"] = median("shift", abs)
    out["shift"] = median("shift")
    for key in (*(f"loop_{p}" for p in LOOP_PERIODS), PITCH_LOOP):
        out[key] = float(np.mean([r[key] for r in loop_rows])) if loop_rows else None
    return out


def usable_seed(events: Sequence[Event]) -> bool:
    """A seed to follow has at least two onsets (else its rhythm is undefined)."""
    return len(onsets(events)[0]) >= 2


def _later_seeds(plist: Sequence[list[Event]], per_piece: int, seed_len: int, stride: int) -> list:
    """Each piece from its start and from every `stride` events on (at most `per_piece` starts a
    piece), where a usable seed begins: pieces in order, each piece's starts in order."""
    out = []
    for p in plist:
        for k in range(per_piece):
            rest = p[k * stride :]
            if len(rest) >= seed_len and usable_seed(rest[:seed_len]):
                out.append(rest)
    return out


def follow_table(
    engine: Engine,
    pieces: dict[str, list[list[Event]]],
    seeds: int | None = 50,
    seed_len: int = SEED_EVENTS,
    answer_len: int = ANSWER_EVENTS,
    sources: dict[str, tuple[Steering | None, Decoding]] | None = None,
    per_piece: int = 1,
    live: bool = False,
) -> dict:
    """Per collection: the following measures of greedy answers from each source (a steering and a
    decoding, `SOURCES` by default), and of the data.

    `pieces` maps a collection to its held-out pieces (as events, in a fixed order); up to `seeds`
    of them (None: all), spread evenly over the list, give a seed each. With `per_piece` above 1, a
    collection with fewer pieces than `seeds` also takes seeds from later in its pieces (every
    seed_len + answer_len events, at most `per_piece` a piece), so that a median over a handful of
    pieces rests on more than a handful of answers; collections with enough pieces are unchanged.
    With `live`, each seed is played note by note into the daemon's Performer in `continue` mode
    instead (`midiseed.bench.stream.stream_live`; the sources must follow the seed, steering None),
    and the answer is what it streams from the last chord on."""
    sources = SOURCES if sources is None else sources
    if live:
        from midiseed.bench.stream import stream_live  # the daemon's Performer: only when asked for

        unfollowing = [name for name, (steering, _) in sources.items() if steering is not None]
        if unfollowing:
            raise ValueError(f"source {unfollowing[0]!r}: a live stream follows the seed (steering None)")
    table: dict = {}
    for collection, plist in sorted(pieces.items()):
        usable = [p for p in plist if len(p) >= seed_len and usable_seed(p[:seed_len])]
        if per_piece > 1 and seeds is not None and len(usable) < seeds:
            usable = _later_seeds(plist, per_piece, seed_len, seed_len + answer_len)
        if not usable:
            continue
        if seeds is not None and len(usable) > seeds:
            usable = [usable[int(i)] for i in np.linspace(0, len(usable) - 1, seeds).round()]
        entry: dict = {"pieces": len(plist)}
        # loop shares are compared length for length: each answer's first k events against the piece's
        # own k next events (k up to answer_len), for the pieces that go on for MIN_CONTINUATION or
        # more. Many folk tunes end before seed + answer, and a shorter stretch loops less.
        own_len = [min(len(p) - seed_len, answer_len) for p in usable]
        for name, (steering, decoding) in sources.items():
            rows, loop_rows = [], []
            for piece, k in zip(usable, own_len):
                gen = Generator(engine, decoding, steering=steering)
                if live:
                    answer = stream_live(gen, piece[:seed_len], answer_len)
                else:
                    gen.prime(piece[:seed_len])
                    answer = gen.generate(answer_len)
                rows.append(compare(piece[:seed_len], answer))
                if k >= MIN_CONTINUATION:
                    loop_rows.append(loops(answer[:k]))
            entry[name] = summarise(rows, loop_rows)
        # the data's own continuation: any of at least MIN_CONTINUATION events
        own = [(p, k) for p, k in zip(usable, own_len) if k >= MIN_CONTINUATION]
        rows = [compare(p[:seed_len], p[seed_len : seed_len + k]) for p, k in own]
        entry["data"] = summarise(rows)
        table[collection] = entry
    return table


def format_follow(table: dict, seed_len: int = SEED_EVENTS, answer_len: int = ANSWER_EVENTS) -> str:
    """The markdown table: one row per collection and source (each of `SOURCES`, then the data)."""
    p1, p2 = LOOP_PERIODS
    lines = [
        f"Follows the seed: greedy answers of {answer_len} events to the first {seed_len} events of held-out"
        " pieces. Texture and rhythm are factors max(r, 1/r) of answer/seed (1 = the same); in key ="
        " share of note time on the seed's key's scale; shift = |mean pitch change| in semitones; medians"
        " per collection. Loop shares are means, answer and music compared length for length; pitch"
        " loops ignore durations. `model` = unsteered plain greedy, `served` = as served by"
        " default: following the seed's voices, register, chords and note rate, with the loop guard;"
        " `data` = the pieces' own next events.",
        "",
        f"| collection | source | seeds | texture × | rhythm × | in key | shift (st) | loops ≤ {p1}"
        f" | loops ≤ {p2} | pitch loops ≤ {p1} | loop seeds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for collection, entry in table.items():
        for source, row in entry.items():
            if source == "pieces":
                continue
            cells = [
                str(row["seeds"]),
                _fmt(row["texture"], ".2f"),
                _fmt(row["rhythm"], ".2f"),
                _fmt(row["in_key"], ".2f"),
                _fmt(row["shift_size"], ".1f"),
                _fmt(row[f"loop_{p1}"], ".0%"),
                _fmt(row[f"loop_{p2}"], ".0%"),
                _fmt(row[PITCH_LOOP], ".0%"),
                str(row["loop_seeds"]),
            ]
            lines.append(f"| {collection or '(top)'} | {source} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)
