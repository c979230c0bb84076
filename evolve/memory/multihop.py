"""Multi-hop retrieval. Multi-query: the question's clauses, or one query per entity it names,
are ranked apart and fused by reciprocal rank fusion, so the best evidence for each part reaches
the top instead of the part with the most (or rarest) words taking every slot. Iterative: the best units of the first
ranking seed a second query (the question plus the names and terms they hold that it lacks),
whose ranking is mixed in; that finds the turn one hop away ("Marta lives in Porto" for "Where
does Bob's violin teacher live?" once "my violin teacher is Marta" ranks first)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Callable

import numpy as np

from evolve.memory.feedback import expansion_terms, mixed
from evolve.memory.retrievers import minmax
from evolve.memory.text import names_in

if TYPE_CHECKING:
    from evolve.memory.query import ProcessedQuery
    from evolve.memory.units import UnitSet
    from search_space.config import RetrievalConfig

#: ``multi_query`` values: which sub-queries are made.
MULTI_QUERY_MODES = ("off", "clauses", "entities", "both")

_QUESTION_START = (r"(?:what|where|when|who|whom|whose|which|why|how|did|does|do|is|was|were|are|"
                   r"has|have|had|can|could|would|will)\b")
# A clause starts after a sentence end, a semicolon, or a conjunction that opens a new question.
_CLAUSE_BREAK = re.compile(rf"(?<=[?.!;])\s+|,?\s+(?:and|but|or|while|then)\s+(?={_QUESTION_START})",
                           re.IGNORECASE)


def clauses(text: str) -> list[str]:
    """The question's clauses with at least two words each; one clause means none to split."""
    parts = [p.strip(" ,;") for p in _CLAUSE_BREAK.split(text)]
    parts = [p for p in parts if len(p.split()) >= 2]
    return parts if len(parts) > 1 else []


def entity_queries(text: str, entities: tuple[str, ...]) -> list[str]:
    """One query per distinct entity when the question names two or more: the question with
    the other entities removed, so each entity's own facts rank on their own."""
    distinct = list(dict.fromkeys(entities))
    if len(distinct) < 2:
        return []
    out = []
    for keep in distinct:
        others = [e for e in distinct if e != keep]
        pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, others)) + r")(?:'s)?\b")
        out.append(" ".join(pattern.sub(" ", text).split()))
    return out


def sub_query_texts(query: "ProcessedQuery", mode: str) -> list[str]:
    """The sub-query texts ``mode`` makes for a question (none when it has one part)."""
    texts = []
    if mode in ("clauses", "both"):
        texts += clauses(query.text)
    if mode in ("entities", "both"):
        texts += entity_queries(query.text, query.entities)
    return [t for t in dict.fromkeys(texts) if t != query.text]


def rrf(rankings: list[np.ndarray], k: int) -> np.ndarray:
    """Reciprocal rank fusion of score arrays over the same units: the sum of 1 / (k + rank)
    over the rankings in which a unit scores above that ranking's floor (a unit that matches
    nothing of a sub-query gets no credit from it for its position among the non-matches)."""
    total = np.zeros(len(rankings[0]), dtype=np.float64)
    for scores in rankings:
        ranks = np.empty(len(scores), dtype=np.int64)
        ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
        total += np.where(scores > scores.min(), 1.0 / (k + ranks), 0.0)
    return total


def break_ties(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """``primary`` with its ties ordered by ``secondary``: a shift of each unit by less than
    half the smallest gap between distinct primary values, so no primary order changes."""
    distinct = np.unique(primary)
    if len(distinct) < 2:
        return primary + minmax(secondary)
    return primary + (np.diff(distinct).min() / 2.0) * minmax(secondary)


def hop_text(query: "ProcessedQuery", units: "UnitSet", hits: list[int], n_terms: int) -> str | None:
    """The second hop's query: the question plus the names the first hits hold that it lacks
    (in rank order, the speakers' left out) and their ``n_terms`` most telling terms; None when
    they add nothing."""
    # The speakers' names are on every other line of a conversation: a hop on one drifts.
    asked = {e.lower() for e in query.entities} | {
        (units.units[i].speaker or "").lower() for i in hits}
    names = []
    for index in hits:
        for name in names_in(units.units[index].text):
            if name.lower() not in asked and name not in names:
                names.append(name)
    named = {n.lower() for n in names}
    terms = [t for t in expansion_terms(units, hits, query, n_terms)
             if t not in named] if n_terms else []
    seeds = names + terms
    return f"{query.text} {' '.join(seeds)}" if seeds else None


def multihop_scores(fused: np.ndarray, units: "UnitSet", positions: np.ndarray,
                    query: "ProcessedQuery", cfg: "RetrievalConfig",
                    fused_for: Callable[[str], np.ndarray],
                    sub_questions: tuple[str, ...] = ()) -> np.ndarray:
    """The fused unit scores after multi-query fusion and a second hop, as ``cfg`` asks;
    ``fused_for(text)`` ranks the units for another query text the way the first was ranked,
    and ``positions`` order equal scores, as everywhere. ``sub_questions`` (an LLM's
    decomposition) are fused with the sub-queries ``multi_query`` makes."""
    subs = list(dict.fromkeys(
        [*(sub_query_texts(query, cfg.multi_query) if cfg.multi_query != "off" else []),
         *(t for t in sub_questions if t != query.text)]))
    if subs:
        # The parts alone: the whole question's ranking would add a vote for the units that
        # match most parts a little, the bias this operator is there to undo.
        fused = break_ties(rrf([fused_for(text) for text in subs], cfg.rrf_k), fused)
    if cfg.hop2_units > 0 and len(fused):
        hits = [int(i) for i in np.lexsort((positions, -fused))[:cfg.hop2_units]]
        text = hop_text(query, units, hits, cfg.hop2_terms)
        if text is not None:
            fused = mixed(fused, fused_for(text), cfg.hop2_weight)
    return fused
