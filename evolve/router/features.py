"""Per-query router features, computable before any expensive step and never from a label."""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from benchmarks.errors import MemevolveError
from evolve.memory.text import RELATIVE_TIME, is_temporal_question, names_in, temporal_target
from search_space.config import RetrievalConfig

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.memory.system import MemorySystem

#: Bump whenever a feature's definition changes: a policy refuses features it was not trained on.
FEATURE_VERSION = 1
WH_WORDS = ("what", "when", "where", "who", "why", "how", "which")
FEATURE_NAMES: tuple[str, ...] = (
    "log_words", *(f"wh_{w}" for w in WH_WORDS), "temporal_cue", "numeric_cue",
    "entity_count", "speakers_named", "bm25_top", "bm25_margin", "bm25_top_z", "dense_top",
    "dense_margin", "dense_top_z", "log_turns", "log_sessions")
#: The cheap probes: BM25 over turns with default tokenisation, and the dense retriever.
PROBE_CONFIG = RetrievalConfig.model_validate({"unit": "turn", "retrievers": "bm25+dense"})
_NUMERIC = re.compile(r"\d|\bhow (?:many|much|long|often|old)\b", re.IGNORECASE)
_WH = re.compile(r"\b(" + "|".join(WH_WORDS) + r")\b", re.IGNORECASE)


class FeatureSpecError(MemevolveError):
    """Features computed one way fed to a policy trained on another."""


@dataclass(frozen=True)
class FeatureSpec:
    """Which features, by which definition (version, probe config), and how they are scaled."""

    names: tuple[str, ...] = FEATURE_NAMES
    version: int = FEATURE_VERSION
    probe_hash: str = PROBE_CONFIG.config_hash
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Identity of the definition (not the scaling): equal fingerprints, same features."""
        body = json.dumps([list(self.names), self.version, self.probe_hash])
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def fitted(self, raw: np.ndarray) -> "FeatureSpec":
        """This spec with scaling statistics from the training questions' raw features."""
        std = raw.std(axis=0)
        # A constant feature (e.g. one conversation size) is centred, not blown up.
        std[std < 1e-6] = 1.0
        return FeatureSpec(self.names, self.version, self.probe_hash,
                           tuple(map(float, raw.mean(axis=0))), tuple(map(float, std)))

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return ((raw - np.array(self.mean)) / np.array(self.std)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "version": self.version, "probe_hash": self.probe_hash,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(tuple(data["names"]), int(data["version"]), str(data["probe_hash"]),
                   tuple(data["mean"]), tuple(data["std"]))

    def check_compatible(self, source: str) -> None:
        """Refuse a spec whose features this code does not compute the same way."""
        current = FeatureSpec()
        if self.fingerprint == current.fingerprint:
            return
        differences = []
        if self.version != current.version:
            differences.append(f"version {self.version} vs {current.version}")
        if self.names != current.names:
            missing = sorted(set(self.names) - set(current.names))
            extra = sorted(set(current.names) - set(self.names))
            differences.append(f"names differ (the policy's only: {missing or 'none'}; this "
                               f"code's only: {extra or 'none'}; or their order)")
        if self.probe_hash != current.probe_hash:
            differences.append(f"probe config {self.probe_hash} vs {current.probe_hash}")
        raise FeatureSpecError(f"{source}: the policy was trained on another feature spec "
                               f"({'; '.join(differences)}). Fix: retrain it with 'memevolve "
                               "router train' on this version of memevolve.")


def question_features(question: "Question", system: "MemorySystem") -> list[float]:
    """The raw feature vector of one question (order: FEATURE_NAMES)."""
    text = question.text
    memory = system.memories[question.conversation_id]
    conversation = memory.conversation
    units = memory.units(PROBE_CONFIG)
    query = memory.query(question, PROBE_CONFIG)
    # The same internals the memory system uses, so the probes are cached for evaluation too.
    system._ensure_dense()
    bm25 = memory.retriever_scores("bm25", units, query, PROBE_CONFIG)
    dense = memory.retriever_scores("dense", units, query, PROBE_CONFIG)
    wh = _WH.search(text)
    first_wh = wh.group(1).lower() if wh else ""
    temporal = (is_temporal_question(text) or bool(RELATIVE_TIME.search(text))
                or temporal_target(text) is not None)
    return [
        math.log1p(len(text.split())),
        *(float(first_wh == w) for w in WH_WORDS),
        float(temporal),
        float(bool(_NUMERIC.search(text))),
        float(len(names_in(text))),
        float(len(query.speakers)),
        math.log1p(_top(bm25, 0)),
        math.log1p(_top(bm25, 0)) - math.log1p(_top(bm25, 1)),
        _top_z(bm25),
        _top(dense, 0),
        _top(dense, 0) - _top(dense, 1),
        _top_z(dense),
        math.log(max(1, len(conversation.turns))),
        math.log(max(1, len(conversation.sessions))),
    ]


def feature_matrix(questions: Sequence["Question"], system: "MemorySystem") -> np.ndarray:
    """Raw features, one row per question, float64."""
    return np.array([question_features(q, system) for q in questions], dtype=np.float64)


def _top(scores: np.ndarray, rank: int) -> float:
    if len(scores) <= rank:
        return 0.0
    return float(np.partition(scores, len(scores) - 1 - rank)[len(scores) - 1 - rank])


def _top_z(scores: np.ndarray) -> float:
    """How far the best unit stands out: (top - mean) / std of the conversation's scores."""
    std = float(scores.std()) if len(scores) > 1 else 0.0
    return (_top(scores, 0) - float(scores.mean())) / std if std > 1e-9 else 0.0
