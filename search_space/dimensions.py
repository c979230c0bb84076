"""The declared dimensions of the retrieval search space: one definition feeds schema, CLI, docs
and the LLM diagnoser."""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from search_space.dimension import SET_SEPARATOR, Dimension, dimension as _d

# The imports of the engine here: retrievers declare their own knobs next to their code, so that
# adding one touches one file (evolve.memory.retrievers imports nothing of search_space but the
# Dimension class).
from evolve.memory.cross_encoder import DIMENSIONS as CROSS_ENCODER_DIMENSIONS
from evolve.memory.llm_query import DIMENSION as LLM_QUERY
from evolve.memory.multihop import MULTI_QUERY_MODES
from evolve.memory.rerank import DIMENSIONS as RERANK_DIMENSIONS
from evolve.memory.retrievers import RETRIEVERS

def _of_retriever(dim: Dimension, retriever: str) -> Dimension:
    """A retriever's own knob or weight matters only while that retriever is active."""
    return replace(dim, active_when=dim.active_when or ("retrievers", "has", retriever))


DIMENSIONS: tuple[Dimension, ...] = (
    # What a memory unit is.
    _d("unit", "choice", "turn", "Memory unit: a single turn, a window of neighbouring turns, or "
       "turns plus session summaries where the benchmark provides them.",
       choices=("turn", "window", "turn+summary"), group="units"),
    _d("window_size", "int", 1, "Turns on each side joined into a window unit (unit=window).",
       low=1, high=4, group="units", active_when=("unit", "==", "window")),
    _d("index_roles", "choice", "all", "Turns that are indexed: all, or the user's own turns only "
       "(LongMemEval's official setting; a conversation without a 'user' speaker keeps all).",
       choices=("all", "user"), group="units"),
    _d("passage_tokens", "int", 0, "Cut every turn longer than this many tokens into passages of "
       "whole sentences, each credited to its turn, so a long turn does not spend the budget "
       "alone (unit=turn; 0 = never).", low=0, high=400, group="units",
       active_when=("unit", "==", "turn")),
    # Which retrievers run, and BM25's own settings.
    _d("retrievers", "set", "bm25", "Retrievers whose scores are fused: any non-empty set of "
       f"the registered ones, joined by '{SET_SEPARATOR}'.", choices=tuple(RETRIEVERS),
       group="retrievers"),
    *(_of_retriever(d, name) for name, retriever in RETRIEVERS.items()
      for d in retriever.dimensions),
    # Query processing.
    _d("query_keywords", "bool", False, "Query BM25 with the question's keywords only (wh-words, "
       "auxiliaries and stopwords removed; names repeated to weigh more).", group="query",
       scope="per_category"),
    _d("speaker_swap", "bool", False, "Also search with the other speaker's name in place of the "
       "one asked about (false-premise questions attribute an event to the wrong person).",
       group="query", scope="per_category"),
    _d("temporal_cues", "bool", False, "Parse dates and relative time words in the question and "
       "let the structured retriever favour units dated near them.", group="query",
       scope="per_category"),
    LLM_QUERY,
    # Fusion.
    _d("fusion", "choice", "weighted", "How retriever scores are combined: weighted sum of "
       "min-max normalised scores, or reciprocal rank fusion.", choices=("weighted", "rrf"),
       group="fusion"),
    _d("rrf_k", "int", 60, "Reciprocal rank fusion constant k (fusion=rrf).", low=1, high=200,
       group="fusion", active_when=("fusion", "==", "rrf")),
    *(_of_retriever(retriever.weight, name) for name, retriever in RETRIEVERS.items()),
    # Hierarchy: sessions scored as wholes.
    _d("session_weight", "float", 0.0, "Weight of the session-level score (the active retrievers "
       "over each session's turns joined, each relative to the best session's) mixed into "
       "each unit's score; 0 = units alone.", low=0.0, high=1.0, group="hierarchy",
       scope="per_category"),
    _d("session_top", "int", 0, "Two-stage retrieval: the units of the S best-scoring sessions "
       "rank before all others (0 = off).", low=0, high=20, group="hierarchy",
       scope="per_category"),
    # Time.
    _d("recency_weight", "float", 0.0, "Weight of a recency prior (a unit's chronological "
       "position) mixed into its score, for questions about the current state; 0 = off.",
       low=0.0, high=1.0, group="time", scope="per_category"),
    _d("date_window_days", "int", 0, "When the question's temporal cue points to a date (an "
       "explicit month or year, or 'N weeks ago' / 'last month' from the question's date), units "
       "dated farther than this many days from it rank last; 0 = off.", low=0, high=365,
       group="time", scope="per_category"),
    # Pseudo-relevance feedback.
    _d("prf_units", "int", 0, "Pseudo-relevance feedback: the best N units of a first ranking "
       "feed a second round (RM3 expansion terms for BM25, a Rocchio query for dense; 0 = off).",
       low=0, high=10, group="feedback"),
    _d("prf_terms", "int", 10, "Expansion terms RM3 adds to the BM25 query (prf_units > 0).",
       low=1, high=30, group="feedback", active_when=("prf_units", ">", 0)),
    _d("prf_weight", "float", 0.3, "Weight of the feedback round against the first round, and "
       "how far Rocchio moves the dense query (prf_units > 0).", low=0.0, high=1.0,
       group="feedback", active_when=("prf_units", ">", 0)),
    # Multi-hop.
    _d("multi_query", "choice", "off", "Multi-query retrieval: rank the question's clauses "
       "('clauses'), one query per entity it names with the others removed ('entities'), or "
       "both, apart, and fuse those rankings by RRF (rrf_k), the whole question breaking ties; "
       "a question of one part is ranked as it is.",
       choices=MULTI_QUERY_MODES, group="multihop", scope="per_category"),
    _d("hop2_units", "int", 0, "Iterative retrieval: the best N units of the first ranking "
       "seed a second query (the question plus the names and terms they hold that it lacks), "
       "whose ranking is mixed in; 0 = off.", low=0, high=10, group="multihop",
       scope="per_category"),
    _d("hop2_terms", "int", 3, "Terms of the first hits (besides their names) added to the "
       "second hop's query (hop2_units > 0).", low=0, high=20, group="multihop",
       active_when=("hop2_units", ">", 0)),
    _d("hop2_weight", "float", 0.5, "Weight of the second hop's ranking against the first "
       "(hop2_units > 0).", low=0.0, high=1.0, group="multihop",
       active_when=("hop2_units", ">", 0)),
    # Reranking of the best fused candidates: the cross-encoder, then the learned model.
    *CROSS_ENCODER_DIMENSIONS,
    *RERANK_DIMENSIONS,
    # Selection and context.
    _d("top_k", "int", 5, "Units kept after ranking.", low=1, high=50, group="selection",
       scope="per_category"),
    _d("mmr_lambda", "float", 1.0, "Maximal marginal relevance trade-off (1 = pure relevance, "
       "lower = more diverse units).", low=0.0, high=1.0, group="selection",
       scope="per_category"),
    _d("neighbor_expansion", "int", 0, "Turns added on each side of every retrieved unit.",
       low=0, high=3, group="selection", scope="per_category"),
    _d("context_budget", "int", 1000, "Context budget in tokens into which units are packed.",
       low=100, high=8000, log=True, group="context", scope="per_category"),
    _d("packing_order", "choice", "rank", "Order of units in the context: by rank, or by date.",
       choices=("rank", "chronological"), group="context", scope="per_category"),
    _d("include_dates", "bool", False, "Prefix every unit in the context with its session date.",
       group="context", scope="per_category"),
    _d("span_packing", "bool", False, "Pack spans of turns: a turn that overlapping windows or "
       "neighbour expansions share, or whose passages rank more than once, is paid for and "
       "shown once.", group="context",
       scope="per_category"),
    _d("session_headers", "bool", False, "Group the context by session under one date header "
       "each (dates then cost once per session, not once per line).", group="context",
       scope="per_category"),
    # Answering.
    _d("answerer", "choice", "extractive", "Who answers: the extractive answerer (no LLM) or an "
       "LLM through litellm.", choices=("extractive", "llm"), group="answer"),
    _d("answer_style", "choice", "short", "LLM answer style: a short phrase, one sentence, or "
       "think step by step then answer.", choices=("short", "sentence", "reasoned"),
       group="answer", scope="per_category", needs_llm=True),
    _d("abstain_threshold", "float", 0.0, "Extractive answerer says 'not mentioned' when the "
       "best context unit holds less than this share of the question's content words (halved "
       "when it is another speaker's); 0 = never abstain.", low=0.0, high=1.0,
       group="answer", scope="per_category"),
)

DIMENSIONS_BY_NAME: dict[str, Dimension] = {d.name: d for d in DIMENSIONS}


def space_markdown(dimensions: Sequence[Dimension] = DIMENSIONS) -> str:
    """The README's table of dimensions (a test keeps the README in sync with this)."""
    lines = ["| dimension | type | domain | default | scope | what it does |",
             "|---|---|---|---|---|---|"]
    for d in dimensions:
        scope = "per category" if d.scope == "per_category" else "global"
        domain = d.domain().replace("|", " \\| ")
        lines.append(f"| `{d.name}` | {d.kind} | {domain} | {d.default!r} | {scope} | "
                     f"{d.description} |")
    return "\n".join(lines)


def space_documentation(dimensions: Sequence[Dimension] = DIMENSIONS) -> str:
    """One line per dimension, as the CLI, the README and the LLM diagnoser show it."""
    return "\n".join(f"- {d.doc_line()}" for d in dimensions)
