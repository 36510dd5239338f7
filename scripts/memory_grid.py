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
from midiseed.evaluate.nexttoken import network_logprobs, with_memory
from midiseed.runtime.engine import Engine
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
    logps = [network_logprobs(engine, piece) for piece in pieces]  # the network runs once

    def score(weight: float, **shape) -> tuple[float, dict]:
        nll, count = np.zeros(len(pieces)), np.zeros(len(pieces))
        for i, (piece, logp) in enumerate(zip(pieces, logps)):
            mixed = with_memory(logp, piece, weight, **shape) if weight else logp
            nll[i] = -mixed[np.arange(len(logp)), np.asarray(piece[1:])].sum()
            count[i] = len(logp)
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
