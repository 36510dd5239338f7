"""Training against greedy loops: DITTO ("Learning to Break the Loop", Xu et al., NeurIPS 2022).

A next-event model trained by cross-entropy alone reinforces itself: once a short pattern has
repeated in its context, repeating it again gets likelier each time, and greedy decoding falls
into a loop it never leaves (the seed project's users' "one note repeated", "very repetitive").
DITTO shows the model a short stretch of real music repeated end to end and, for each token of
the second and later copies, asks that its probability be `lam` times what it was at the same
place one copy earlier (loss ``-log(1 - |p_n - lam * p_{n-1}|)``, the earlier copy's probability
held constant), so repeating grows less likely the more it has happened. Here the copies follow
the music that led to the stretch in its piece, as a loop begins in generation, and the windows
are mixed with ordinary ones trained by cross-entropy.

The windows' targets are packed (`losses.pack`): the next token, and `IGNORE`, or the index of
the same position one copy earlier (DITTO); `losses.LoopLoss` trains them. The stretches come from
the files of the token store (`windows.Pieces`), read one file at a time.
"""

from __future__ import annotations

import logging

import numpy as np

from midiseed.training.losses import IGNORE
from midiseed.training.windows import Pieces

log = logging.getLogger(__name__)

MAX_LOOP_EVENTS = 8  # a loop's longest period in events, here and in `midiseed evaluate`


def _window(
    music: np.ndarray, stretch: np.ndarray, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One window: the last tokens of `music` (up to half the window, leaving room for two copies),
    then `stretch` repeated to the end. Inputs (seq_len,) and packed targets (seq_len, 2)."""
    period = len(stretch)
    room = max(0, min(seq_len // 2, seq_len + 1 - 2 * period))
    lead = min(int(rng.integers(0, room + 1)), len(music))
    window = np.concatenate([music[len(music) - lead :], np.resize(stretch, seq_len + 1 - lead)])
    t = np.arange(seq_len)
    second = lead + period - 1  # target index of the second copy's first token
    what = np.where((t >= second) & (t >= period), t - period, IGNORE)
    return window[:-1], np.stack([window[1:], what], axis=-1)


def pick_pieces(pieces: Pieces, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` file indices, each file as likely as its share of the tokens."""
    cum = np.cumsum(pieces.length)
    return np.searchsorted(cum, rng.integers(0, cum[-1], size=count), side="right")


def repeated_windows(
    pieces: Pieces,
    count: int,
    seq_len: int,
    rng: np.random.Generator,
    first_duration: int,
    max_events: int = MAX_LOOP_EVENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows, each the music of one file up to a stretch of 1..max_events events, then
    that stretch repeated to fill seq_len + 1 tokens: the way a greedy loop begins, after real
    music. Returns inputs (count, seq_len) and packed targets (count, seq_len, 2): DITTO from the
    second copy on, nothing trained before it.

    A held pitch in the stretch's first event that the last event does not sound is written as
    struck, so every copy is the same valid spelling and the copies join like real music.
    """
    x = np.zeros((count, seq_len), dtype=np.int32)
    y = np.zeros((count, seq_len, 2), dtype=np.int32)
    for row in range(count):
        for _ in range(100):  # a file with more than a stretch of events; almost always the first
            tokens = pieces.tokens(int(pick_pieces(pieces, 1, rng)[0]))
            ends = np.flatnonzero(tokens >= first_duration)
            k = int(rng.integers(1, max_events + 1))
            if len(ends) > k:
                break
        else:
            raise ValueError(f"no file has more than {max_events} events to repeat")
        j = int(rng.integers(0, len(ends) - k))  # events j+1..j+k, closed by ends[j+1..j+k]
        begin = ends[j] + 1
        seg = tokens[begin : ends[j + k] + 1].copy()
        last = {int(tok) % 128 for tok in seg[ends[j + k - 1] + 1 - begin : -1]}
        for i in range(ends[j + 1] - begin):  # the first event's pitches
            if 128 <= seg[i] < first_duration and int(seg[i]) - 128 not in last:
                seg[i] -= 128
        x[row], y[row] = _window(tokens[:begin], seg, seq_len, rng)
    return x, y


def own_loops(
    step_model, codec, primers: np.ndarray, n_tokens: int, max_events: int = MAX_LOOP_EVENTS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Where the model's own greedy decoding loops: each primer (B, P) is continued greedily for
    n_tokens under the daemon's grammar, in one batch; for each continuation that falls into a
    loop of period <= max_events events, (the music before the loop, one period of it).

    `step_model` is the stateful form (`build_model(cfg, stateful=True)`) holding current weights.
    Primers should begin at an event's first token."""
    from midiseed.runtime.sampling import Grammar

    batch = len(primers)
    state = [np.zeros((batch, int(s.shape[-1])), dtype=np.float32) for s in step_model.inputs[1:]]
    grammars = [Grammar(codec) for _ in range(batch)]
    for g, row in zip(grammars, primers):
        for tok in row.tolist():
            g.feed(tok)
    out = step_model.predict_on_batch([primers.astype(np.int32), *state])
    logits, state = np.asarray(out[0])[:, -1], [np.asarray(s) for s in out[1:]]
    made = np.zeros((batch, n_tokens), dtype=np.int32)
    for t in range(n_tokens):
        masks = np.stack([g.allowed() for g in grammars])
        chosen = np.where(masks, logits, -np.inf).argmax(-1).astype(np.int32)
        for g, tok in zip(grammars, chosen.tolist()):
            g.feed(tok)
        made[:, t] = chosen
        out = step_model.predict_on_batch([chosen[:, None], *state])
        logits, state = np.asarray(out[0])[:, -1], [np.asarray(s) for s in out[1:]]
    found = []
    for primer, row in zip(primers, made):
        whole = np.concatenate([primer, row])
        ends = np.flatnonzero(whole >= codec.duration(1))
        begins = np.r_[0, ends[:-1] + 1]
        events = [tuple(whole[a : b + 1]) for a, b in zip(begins, ends)]
        # a loop of the model's making: it starts after the primer
        loop = _first_loop(events, max_events, first=int(np.searchsorted(begins, len(primer))))
        if loop is not None:
            s, p = loop
            found.append((whole[: begins[s]], whole[begins[s] : ends[s + p - 1] + 1]))
    return found


def _first_loop(events: list[tuple], max_events: int, first: int = 0) -> tuple[int, int] | None:
    """(start, period) of the first stretch from events[first] on that is full copies of
    1..max_events events: two for periods up to MAX_LOOP_EVENTS, three for longer ones (a phrase
    played twice is the chorale's AAB form; a third time running, it is a loop)."""
    for s in range(first, len(events)):
        for p in range(1, max_events + 1):
            copies = 2 if p <= MAX_LOOP_EVENTS else 3
            if s + copies * p <= len(events) and all(
                events[s : s + p] == events[s + c * p : s + (c + 1) * p] for c in range(1, copies)
            ):
                return s, p
    return None


def own_windows(
    found: list[tuple[np.ndarray, np.ndarray]], count: int, seq_len: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """`count` windows made from loops the model fell into (`own_loops`), as `repeated_windows`."""
    x = np.zeros((count, seq_len), dtype=np.int32)
    y = np.zeros((count, seq_len, 2), dtype=np.int32)
    for row in range(count):
        music, stretch = found[int(rng.integers(0, len(found)))]
        x[row], y[row] = _window(music, stretch, seq_len, rng)
    return x, y


def primers(
    pieces: Pieces, count: int, length: int, rng: np.random.Generator, first_duration: int
) -> np.ndarray:
    """`count` stretches of `length` tokens of the music, each beginning at an event's first token."""
    out = np.zeros((count, length), dtype=np.int32)
    for row in range(count):
        for _ in range(100):
            tokens = pieces.tokens(int(pick_pieces(pieces, 1, rng)[0]))
            firsts = np.flatnonzero(tokens[:-1] >= first_duration) + 1
            firsts = firsts[firsts + length <= len(tokens)]
            if len(firsts):
                break
        else:
            raise ValueError(f"no file is long enough for a primer of {length} tokens")
        at = int(firsts[rng.integers(0, len(firsts))])
        out[row] = tokens[at : at + length]
    return out


def loop_finder(
    source,
    cfg,
    codec,
    seed: int,
    every: int,
    max_events: int = MAX_LOOP_EVENTS,
    rollouts: int = 256,
    primer_len: int = 64,
):
    """A Keras callback that, every `every` batches, continues `rollouts` stretches of the training
    music (`source.pieces`) greedily with the weights as they are and gives the loops found to
    `source.own` (the anti-loop windows then come half from those, half from repeated stretches of
    the music)."""
    import keras

    from midiseed.training.model import build_model, copy_weights

    step_model = build_model(cfg, stateful=True)

    class LoopFinder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.rates: list[float] = []
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None and self.rates:  # before RunKeeper: the history records it
                logs["greedy_loop_rate"] = float(np.mean(self.rates))
            self.rates = []

        def on_train_batch_begin(self, batch, logs=None):
            if batch % every:
                return
            copy_weights(self.model, step_model)
            rng = np.random.default_rng((seed, self.epoch, batch))
            starts = primers(source.pieces, rollouts, primer_len, rng, codec.duration(1))
            length = (8 if max_events <= MAX_LOOP_EVENTS else 12) * primer_len  # room for 3 long copies
            found = own_loops(step_model, codec, starts, length, max_events)
            # a window must hold more than one copy for DITTO to have anything to train
            source.own = [(m, st) for m, st in found if len(st) <= cfg.seq_len - 16]
            self.rates.append(len(found) / len(starts))
            log.info(
                "greedy loops in %d of %d continuations (%d short enough to train on)",
                len(found),
                len(starts),
                len(source.own),
            )

    return LoopFinder()
