"""The piece's own memory: what followed the current context where it was heard before.

Music repeats itself: a folk tune plays its first strain again, a chorale returns to a cadence
figure, a player restates a motif. The network reads the phrase but predicts each next token
from its general knowledge; the memory predicts it from this piece alone. At each step it finds
the earlier places where the last tokens occurred too (the longest common suffix of the token
stream with each earlier prefix, up to `LONGEST` tokens, over the last `WINDOW` to 2 * `WINDOW`
tokens: it drops the older half when full, and a match may still count a few dropped tokens) and
takes what followed them, each place weighted by its match length to the power `SHARPNESS`. It
speaks only once some match is `MIN_MATCH` tokens long, with the weight `weight * m / (m + HALF)`
for the longest match m: the longer the context it has seen before, the more it is trusted.

The model's next-token distribution is then ``(1 - w) * network + w * memory``: the idea of the
neural cache (Grave et al., 2017, "Improving neural language models with a continuous cache")
on tokens, and the one IRCAM's OMax/Somax built their improvisers on (recombining what the
player played). The constants were chosen on the validation split by held-out NLL pooled over
every collection (`scripts/memory_grid.py`; models/MODEL_CARD.md, "The piece's memory"). Pure numpy.
"""

from __future__ import annotations

import numpy as np

# The weight it tends to for very long matches, chosen on validation. Off by default in `generate`
# and the daemon (`--memory`, `[decoding] memory`, CC 106): see models/MODEL_CARD.md for why.
MEMORY_WEIGHT = 0.95
MAX_MEMORY = 0.99  # the highest weight allowed: the network always keeps a say, so every token stays possible
MIN_MATCH = 6  # tokens of context (three melody events) before the memory says anything
HALF = 4  # match length at which the weight is half of MEMORY_WEIGHT
SHARPNESS = 4  # each earlier place counts as (its match length) ** SHARPNESS
LONGEST = 64  # match lengths are counted up to this many tokens
WINDOW = 1024  # it remembers the last WINDOW to 2 * WINDOW tokens


class Memory:
    """Feed every token heard and played; `mix` turns the network's logits into the model's."""

    def __init__(
        self,
        vocab_size: int,
        weight: float = MEMORY_WEIGHT,
        window: int = WINDOW,
        min_match: int = MIN_MATCH,
        half: float = HALF,
        sharpness: float = SHARPNESS,
    ) -> None:
        if not 0 <= weight <= MAX_MEMORY:
            raise ValueError(f"memory weight must be in 0..{MAX_MEMORY} (0 = off), got {weight}")
        self.vocab_size, self.weight, self.window = vocab_size, weight, window
        self.min_match, self.half, self.sharpness = min_match, half, sharpness  # scripts/memory_grid.py
        self.reset()

    def reset(self) -> None:
        """Forget everything."""
        self._tokens = np.zeros(2 * self.window, dtype=np.int64)
        # _match[j], 1 <= j < n: the common suffix length of tokens[:j] and tokens[:n] (followed by tokens[j])
        self._match = np.zeros(2 * self.window, dtype=np.int64)
        self._n = 0

    def save(self) -> tuple | None:
        """What `restore` needs to forget every token fed after this call (None while off: an
        unweighted memory is not fed, so there is nothing to forget)."""
        if not self.weight:
            return None
        return self._tokens.copy(), self._match.copy(), self._n

    def restore(self, saved: tuple | None) -> None:
        if saved is None:
            return
        tokens, match, self._n = saved
        self._tokens[:], self._match[:] = tokens, match

    def feed(self, token: int) -> None:
        """One more token of the stream (heard or played)."""
        n = self._n
        if n == len(self._tokens):  # full: keep the last `window` tokens
            keep = self.window
            self._tokens[:keep] = self._tokens[n - keep : n]
            self._match[:keep] = self._match[n - keep : n]
            self._match[0] = 0
            n = self._n = keep
        if n >= 1:
            # prefix j (1..n) extends the match of prefix j - 1 by one when the token before it equals
            # this one (_match[0], the empty prefix, stays 0)
            grown = np.minimum(self._match[:n] + 1, LONGEST)
            self._match[1 : n + 1] = np.where(self._tokens[:n] == token, grown, 0)
        self._tokens[n] = token
        self._n = n + 1

    def distribution(self) -> tuple[float, np.ndarray] | None:
        """(its weight now, its next-token distribution), or None while no match is long enough."""
        n = self._n
        if n < 2 or self.weight == 0:
            return None
        match = self._match[1:n]
        longest = int(match.max())
        if longest < self.min_match:
            return None
        places = np.flatnonzero(match >= self.min_match)
        counts = match[places].astype(np.float64) ** self.sharpness
        probs = np.bincount(self._tokens[places + 1], weights=counts, minlength=self.vocab_size)
        return self.weight * longest / (longest + self.half), probs / probs.sum()

    def mix(self, logits: np.ndarray) -> np.ndarray:
        """The network's logits -> the model's log-probabilities (the logits themselves when the
        memory has nothing to say, which `choose` treats the same way)."""
        said = self.distribution()
        if said is None:
            return logits
        w, memory = said
        scores = logits.astype(np.float64)
        network = np.exp(scores - scores.max())
        network /= network.sum()
        with np.errstate(divide="ignore"):
            return np.log((1 - w) * network + w * memory)
