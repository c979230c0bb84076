"""tinyrank: a small TF-IDF ranker, written as a third-party library would be (it knows nothing
of memevolve). Documents are strings; a query returns document indexes, best first."""
from __future__ import annotations

import math
import re
from collections import Counter

_WORD = re.compile(r"[a-z0-9]+")
_SUFFIXES = ("ing", "ed", "es", "s")


def tokens(text: str, stem: bool = False) -> list[str]:
    words = _WORD.findall(text.lower())
    return [_stem(w) for w in words] if stem else words


def _stem(word: str) -> str:
    """A crude suffix stripper ('wines' -> 'wine', 'tasting' -> 'tast')."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[:-len(suffix)]
    return word


class TfidfIndex:
    """Cosine similarity of TF-IDF vectors.

    ``idf_power`` scales how much rare words count (0: plain term frequency, 1: classic
    TF-IDF, 2: rare words dominate); ``sublinear`` uses 1 + log(tf) instead of tf; ``stem``
    strips common suffixes from words."""

    def __init__(self, documents: list[str], *, idf_power: float = 1.0,
                 sublinear: bool = False, stem: bool = False) -> None:
        self.idf_power = idf_power
        self.sublinear = sublinear
        self.stem = stem
        counts = [Counter(tokens(d, stem)) for d in documents]
        df: Counter[str] = Counter(word for c in counts for word in c)
        n = len(documents)
        self.idf = {w: math.log((1 + n) / (1 + f)) + 1.0 for w, f in df.items()}
        self.vectors = [self._vector(c) for c in counts]

    def _weight(self, word: str, tf: int) -> float:
        freq = 1.0 + math.log(tf) if self.sublinear else float(tf)
        return freq * self.idf.get(word, 0.0) ** self.idf_power

    def _vector(self, counts: Counter[str]) -> dict[str, float]:
        vector = {w: self._weight(w, tf) for w, tf in counts.items()}
        norm = math.sqrt(sum(v * v for v in vector.values())) or 1.0
        return {w: v / norm for w, v in vector.items()}

    def search(self, query: str) -> list[tuple[int, float]]:
        """Every document as (index, score), best first (ties: earlier documents first)."""
        q = self._vector(Counter(w for w in tokens(query, self.stem) if w in self.idf))
        scored = [(i, sum(q[w] * d.get(w, 0.0) for w in q)) for i, d in enumerate(self.vectors)]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))
