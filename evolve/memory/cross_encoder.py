"""Cross-encoder reranking: a sentence-transformers CrossEncoder reads the question with each of
the best fused candidates and its relevance score reorders them (blended with the fused score).
Scores are cached on disk like embeddings (a pair's score is a one-wide vector keyed by the
model and the pair's text), so a config evaluated again, or a run resumed, scores no pair twice.

The models are the ones the user lists (evolve.memory.models); none ships, so the dimension's
only value on a fresh machine is 'none'."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from evolve.memory.models import MODEL_LISTS, listed_models, widen_hint
from evolve.memory.retrievers import minmax
from search_space.dimension import dimension

if TYPE_CHECKING:
    from evolve.memory.units import UnitSet

NO_CROSS_ENCODER = "none"
# Joins a pair into one cache text; a control character no question or turn contains.
_PAIR_SEPARATOR = "\x1f"

_WITH_ENCODER = ("cross_encoder", "!=", NO_CROSS_ENCODER)
DIMENSIONS = (
    dimension("cross_encoder", "choice", NO_CROSS_ENCODER, "Cross-encoder that rereads the "
              "question with each of the best fused candidates and reorders them: 'none', or one "
              f"of the sentence-transformers CrossEncoder models listed in "
              f"${MODEL_LISTS['cross-encoder']} (names or folders).",
              choices=(NO_CROSS_ENCODER, *listed_models("cross-encoder")), group="rerank",
              widen_hint=widen_hint("cross-encoder")),
    dimension("cross_encoder_depth", "int", 20, "Fused candidates the cross-encoder rescores "
              "(cross_encoder set); they stay ahead of the rest.", low=2, high=50,
              group="rerank", scope="per_category", active_when=_WITH_ENCODER),
    dimension("cross_encoder_weight", "float", 1.0, "Weight of the cross-encoder's score "
              "against the fused score among the rescored candidates (both min-max "
              "normalised; 1 = its order alone).", low=0.0, high=1.0, group="rerank",
              scope="per_category", active_when=_WITH_ENCODER),
)


class _PairScores:
    """A CrossEncoder behind the Embedder protocol, so the shared embedding cache stores its
    scores: each 'text' is a (question, passage) pair joined, each 'vector' its one score."""

    dim = 1

    def __init__(self, model: str) -> None:
        self.model = model
        self.model_id = f"cross-encoder:{model}"
        self._encoder: Any = None

    def embed(self, texts: list[str]) -> np.ndarray:
        pairs = [tuple(text.split(_PAIR_SEPARATOR, 1)) for text in texts]
        scores = self._load().predict(pairs, batch_size=32, show_progress_bar=False,
                                      convert_to_numpy=True)
        return np.asarray(scores, dtype=np.float32).reshape(len(texts), 1)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_encoder": None}

    def _load(self) -> Any:
        if self._encoder is None:
            # As for embedding models: the Hub only when the user allows it (HF_HUB_OFFLINE=0).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import CrossEncoder

            from evolve.embeddings import EmbeddingError, _cpu_budget

            torch.set_num_threads(_cpu_budget())
            try:
                self._encoder = CrossEncoder(self.model, device="cpu")
            except (OSError, ValueError) as exc:
                raise EmbeddingError(
                    f"cross-encoder '{self.model}' (listed in "
                    f"${MODEL_LISTS['cross-encoder']}) could not be loaded ({exc}).",
                    fix="list a local CrossEncoder folder or a cached model name, or allow "
                        "downloads from the Hugging Face Hub with HF_HUB_OFFLINE=0.") from exc
        return self._encoder


class CrossEncoderScorer:
    """One cross-encoder model's pair scores, through the shared disk cache."""

    def __init__(self, model: str) -> None:
        from evolve.embeddings import CachedEmbedder, EmbeddingCache

        self.scores = CachedEmbedder(_PairScores(model), EmbeddingCache())

    def score(self, question: str, passages: list[str]) -> np.ndarray:
        texts = [f"{question}{_PAIR_SEPARATOR}{passage}" for passage in passages]
        return self.scores.embed(texts)[:, 0].astype(np.float64)


def reranked(fused: np.ndarray, order: np.ndarray, units: "UnitSet", question: str,
             depth: int, weight: float, scorer: CrossEncoderScorer) -> np.ndarray:
    """Scores in which the best ``depth`` candidates of ``order`` come first, ordered by
    (1 - w) * fused + w * cross-encoder score (each min-max normalised over them), and every
    other unit keeps its fused order behind them."""
    pool = order[:depth]
    if len(pool) < 2:
        return fused
    passages = [units.units[int(i)].rendered(False) for i in pool]
    blended = (1.0 - weight) * minmax(fused[pool]) + weight * minmax(
        scorer.score(question, passages))
    out = fused.astype(np.float64) - float(fused.max()) - 1.0
    out[pool] = blended
    return out
