"""How the piece's memory was shaped: held-out NLL on the validation split, per setting.

    python scripts/memory_grid.py [MODEL]    (default: the shipped model)

Needs data/music21 (scripts/make_music21_model.sh exports it). Scores every validation piece with
the network alone and with the memory (`midiseed.runtime.memory`) for each setting of weight,
shortest match, half-weight match length and sharpness, and prints the pooled NLL (the choice:
the lowest) with a few collections beside it. The network runs once; each setting only re-mixes.
"""

import itertools
import sys
from pathlib import Path

import numpy as np

from midiseed.evaluate import choose_split, collection_of
from midiseed.runtime.engine import Engine
from midiseed.runtime.memory import Memory
from midiseed.training.corpus import load_corpus
from midiseed.training.dataset import piece_events

WEIGHTS, MIN_MATCHES, HALVES, SHARPNESSES = (0.6, 0.8, 0.95), (2, 4, 6), (4, 16), (2, 4, 8)
SHOWN = ("airdsAirs", "bach", "essenFolksong", "miscFolk", "monteverdi", "palestrina", "trecento")


def main() -> None:
    engine = Engine(Path(sys.argv[1]) if len(sys.argv) > 1 else None, provider="cpu")
    codec, grid = engine.codec, engine.codec.grid
    corpus = load_corpus(Path("data/music21"), grid)
    _, files, _ = choose_split(engine.info.meta, corpus.files, "validation")
    notes_of = dict(zip(corpus.files, corpus.notes))
    pieces = [codec.encode(p) for p in piece_events([notes_of[f] for f in files], grid, [0])]
    colls = np.array([collection_of(f) for f in files])
    logps = []  # per piece: the network's log-probabilities, row t predicting token t + 1
    for piece in pieces:
        logits, _ = engine.run(np.asarray(piece, dtype=np.int32)[None, :], engine.zero_state())
        z = logits[0, :-1].astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        logps.append(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))

    def score(**setting) -> tuple[float, dict]:
        nll, count = np.zeros(len(pieces)), np.zeros(len(pieces))
        for i, (piece, logp) in enumerate(zip(pieces, logps)):
            mem = Memory(len(codec), **setting)
            for t, token in enumerate(piece[:-1].tolist()):
                mem.feed(token)
                nll[i] -= mem.mix(logp[t])[piece[t + 1]]
            count[i] = len(piece) - 1
        per = {c: nll[colls == c].sum() / count[colls == c].sum() for c in SHOWN if (colls == c).any()}
        return nll.sum() / count.sum(), per

    def show(name: str, pooled: float, per: dict) -> None:
        print(f"| {name} | {pooled:.4f} | " + " | ".join(f"{v:.3f}" for v in per.values()) + " |", flush=True)

    print(f"| weight, min match, half, sharpness | pooled NLL | {' | '.join(SHOWN)} |")
    print("|---|---:|" + "---:|" * len(SHOWN))
    show("off (the network alone)", *score(weight=0.0))
    for w, m, h, s in itertools.product(WEIGHTS, MIN_MATCHES, HALVES, SHARPNESSES):
        show(f"{w}, {m}, {h}, {s}", *score(weight=w, min_match=m, half=h, sharpness=s))


if __name__ == "__main__":
    main()
