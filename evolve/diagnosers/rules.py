"""The rules diagnoser (default, no LLM): SQL assigns failures to buckets, a rule table maps
buckets (per predicted question type) to edits. A rule that reads a dimension the space lacks
(a --system pipeline's space) does not fire; the generic rule then moves the space's own
dimensions."""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable

from evolve.diagnosers.base import DiagnosisContext, Edit, Proposal, first_admissible, register
from evolve.evaluation import RETRIEVAL_OBJECTIVES
from evolve.memory.cross_encoder import NO_CROSS_ENCODER
from evolve.memory.retrievers import RETRIEVERS
from search_space.config import META_FIELDS, RetrievalConfig, SpaceConfig
from search_space.dimension import Dimension
from search_space.dimensions import DIMENSIONS_BY_NAME

#: Rounds an edit may lose to its incumbent (a negative delta) before the rules stop offering it.
LOSSES_RETIRE = 2
#: Mean context tokens a question an edit must save for a tie to count as a cheaper context
#: (offered again later) rather than inert.
CHEAPER_TOKENS = 1.0

#: Each failing question gets exactly one bucket, first match wins. Buckets group by the
#: PREDICTED question type (as ``category``), the key the overrides they propose are chosen by;
#: the gold labels (adversarial, category 2) only say which dev questions failed how.
BUCKET_SQL = """
SELECT question_type AS category,
       CASE
         WHEN adversarial AND NOT abstained AND answer_f1 IS NOT NULL AND answer_f1 < 1
              THEN 'adversarial_false_answer'
         WHEN recall_in_context IS NULL THEN NULL
         WHEN evidence_rank IS NULL THEN 'never_retrieved'
         WHEN recall_in_context < recall_at_k THEN 'packed_out'
         WHEN recall_in_context = 0 AND evidence_rank IS NOT NULL THEN 'ranked_below_cut'
         WHEN recall_in_context < 1 THEN 'partially_retrieved'
         WHEN category IN ('2', 'temporal-reasoning') AND answer_f1 IS NOT NULL
              AND answer_f1 < 0.5 THEN 'temporal_wrong_date'
         WHEN answer_f1 IS NOT NULL AND answer_f1 < 0.5 THEN 'in_context_answered_wrong'
       END AS bucket,
       count(*) AS n,
       avg(evidence_rank) AS mean_rank
FROM question_results
WHERE config_hash = ? AND benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[]))
  AND invalid_reason IS NULL
GROUP BY ALL
HAVING bucket IS NOT NULL
ORDER BY n DESC
"""


#: Buckets of questions whose evidence was not (all) in the context: the generic rule moves any
#: space's knobs for them.
RETRIEVAL_BUCKETS = ("never_retrieved", "packed_out", "ranked_below_cut", "partially_retrieved")
#: Buckets of questions whose evidence is in the context but whose answer failed: a failure of
#: the objective only where the objective scores answers.
ANSWER_BUCKETS = ("adversarial_false_answer", "temporal_wrong_date", "in_context_answered_wrong")


def failure_buckets(context: DiagnosisContext) -> list[dict[str, Any]]:
    """(category, bucket, n, mean_rank) for the incumbent's failing dev questions. Under a
    retrieval objective a wrong answer with its evidence in context is no failure: its edits
    (answer style, packing order, abstention) would each cost an evaluation that changes
    nothing, once per question type (on LongMemEval oracle, 6 candidates in a budget of 30)."""
    rows = context.store.query(BUCKET_SQL, [context.incumbent.config_hash,
                                            context.benchmark_key, context.question_ids])
    if context.objective in RETRIEVAL_OBJECTIVES:
        rows = [row for row in rows if row["bucket"] not in ANSWER_BUCKETS]
    return rows


def mean_context_tokens(context: DiagnosisContext) -> float | None:
    """The incumbent's mean context tokens over its dev questions: one figure for every bucket
    and type, so that a global top_k edit proposed for several of them is one edit."""
    rows = context.store.query(
        "SELECT avg(context_tokens) AS tokens FROM question_results WHERE config_hash = ? AND "
        "benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[])) AND "
        "invalid_reason IS NULL", [context.incumbent.config_hash, context.benchmark_key,
                                   context.question_ids])
    return rows[0]["tokens"] if rows else None


Rule = Callable[[RetrievalConfig, str], list[tuple[Edit, ...]]]
#: Groups whose numeric dimensions say how much is kept (top-k, a budget): the generic rule
#: widens them when evidence was ranked but cut.
WIDENED_GROUPS = ("selection", "context")
#: The generic rule moves any other numeric dimension by this share of its range, both ways.
GENERIC_STEP = 0.25


class _Absent(Exception):
    """A rule read a dimension its space lacks: the rule does not fire."""


class _SpaceView:
    """The incumbent as the rules read it: reading a dimension the space lacks raises _Absent
    (a rule names built-in dimensions; a pipeline's space may have none of them). ``room`` is
    what the incumbent measured on dev: its context budget over the tokens its contexts used
    (2.0: half the budget left unused)."""

    def __init__(self, config: SpaceConfig, room: float = 1.0) -> None:
        self._config = config
        self.room = room

    def _check(self, name: str) -> None:
        if name not in self._config.dimensions_by_name:
            raise _Absent(name)

    def __getattr__(self, name: str) -> Any:
        if name not in META_FIELDS:
            self._check(name)
        return getattr(self._config, name)

    def value(self, name: str, category: str | None = None) -> Any:
        self._check(name)
        return self._config.value(name, category)

    def choices(self, name: str) -> tuple[Any, ...]:
        self._check(name)
        return self._config.dimensions_by_name[name].choices


def bucket_edits(config: SpaceConfig, bucket: str, category: str | None,
                 mean_tokens: float | None = None) -> list[tuple[Edit, ...]]:
    """The bucket's rule, or the generic rule where the rule reads a dimension the space lacks.
    ``mean_tokens``: the incumbent's mean context tokens on dev."""
    try:
        room = config.value("context_budget", category) / mean_tokens if mean_tokens and \
            "context_budget" in config.dimensions_by_name else 1.0
        return RULES[bucket](_SpaceView(config, room), category)  # type: ignore[arg-type]
    except _Absent:
        return generic_edits(config, bucket, category)


def generic_edits(config: SpaceConfig, bucket: str, category: str | None
                  ) -> list[tuple[Edit, ...]]:
    """For any space: evidence ranked but cut widens what is kept (numeric dimensions of the
    WIDENED_GROUPS, all together first); evidence ranked low or never moves the other knobs:
    the other choices first when never retrieved, each numeric one a step both ways. Other buckets need the
    built-in system's knowledge: none."""
    if bucket not in RETRIEVAL_BUCKETS:
        return []
    numeric = [d for d in config.dimensions if d.kind in ("int", "float")]
    widen = [d for d in numeric if d.group in WIDENED_GROUPS]
    where = {d.name: category if d.scope == "per_category" else None for d in config.dimensions}
    moved = [edits for d in numeric if d not in widen for edits in (
        _move(config, d, where[d.name], +GENERIC_STEP), _move(config, d, where[d.name],
                                                              -GENERIC_STEP))]
    grown = [_widened(config, d, where[d.name]) for d in widen]
    if len(grown) > 1:
        # How much is kept is often bounded twice (a count and a budget): widen them together.
        grown.insert(0, tuple(edit for edits in grown for edit in edits))
    others = [(Edit(d.name, v, where[d.name]),) for d in config.dimensions
              if d.kind in ("bool", "choice") for v in
              ((False, True) if d.kind == "bool" else d.choices)
              if v != config.value(d.name, where[d.name])]
    if bucket == "never_retrieved":
        return others + moved + grown
    return grown + moved + others


def _widened(config: SpaceConfig, dim: Dimension, category: str | None) -> tuple[Edit, ...]:
    current = config.value(dim.name, category)
    value = max(current * 1.6, current + 1) if dim.kind == "int" else current * 1.6 or \
        (dim.high - dim.low) * GENERIC_STEP
    return (Edit(dim.name, _clamped(dim, value), category),)


def _move(config: SpaceConfig, dim: Dimension, category: str | None, share: float,
          ) -> tuple[Edit, ...]:
    current = config.value(dim.name, category)
    return (Edit(dim.name, _clamped(dim, current + share * (dim.high - dim.low)), category),)


def _clamped(dim: Dimension, value: float) -> Any:
    value = min(max(value, dim.low), dim.high)
    return int(round(value)) if dim.kind == "int" else round(value, 3)


def _wider_top_k(config: RetrievalConfig, category: str | None) -> tuple[Edit, ...]:
    """top_k times 1.6, or as many times more as the budget the contexts left unused holds:
    contexts that used a fifth of the budget hold five times the units. From ``weak`` on
    LoCoMo, 1.6 steps took top_k from 5 to 50 in five rounds (a third of the evaluations)."""
    return _step(config, "top_k", category, max(1.6, getattr(config, "room", 1.0)), 1, 50)


def _step(config: RetrievalConfig, name: str, category: str | None, factor: float,
          low: float, high: float, integer: bool = True) -> tuple[Edit, ...]:
    value = config.value(name, category) * factor
    value = min(max(value, low), high)
    return (Edit(name, int(round(value)) if integer else round(value, 3), category),)


def _active(config: RetrievalConfig) -> list[str]:
    return config.retrievers.split("+")


def _added_retrievers(config: RetrievalConfig) -> list[tuple[Edit, ...]]:
    """One edit per registered retriever that is not active yet, in registry order."""
    active, spell = _active(config), DIMENSIONS_BY_NAME["retrievers"].validate
    return [(Edit("retrievers", spell(active + [name])),) for name in RETRIEVERS
            if name not in active]


def _session_prior(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    """Evidence ranked low or not at all often sits in a session that, as a whole, is about the
    question: mix the session's score in, or move its weight."""
    weight = config.value("session_weight", category)
    if weight == 0.0:
        return [(Edit("session_weight", 0.4, category),)]
    return [(Edit("session_weight", round(min(weight + 0.15, 1.0), 2), category),),
            (Edit("session_weight", round(max(weight - 0.15, 0.0), 2), category),)]


def _cheaper_context(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    """Evidence ranked but cut by the budget: pay less per unit so more of them fit."""
    out = []
    if config.unit == "turn" and config.passage_tokens == 0:
        out.append((Edit("passage_tokens", 40),))
    overlapping = config.unit == "window" or config.value("neighbor_expansion", category) > 0
    if overlapping and not config.value("span_packing", category):
        out.append((Edit("span_packing", True, category),))
    if config.value("include_dates", category) and not config.value("session_headers",
                                                                    category):
        out.append((Edit("session_headers", True, category),))
    if config.index_roles == "all":
        out.append((Edit("index_roles", "user"),))
    return out


def _listed_models(config: RetrievalConfig, name: str, category: str | None = None
                   ) -> list[tuple[Edit, ...]]:
    """One edit per model the user listed for a model dimension, besides the current one."""
    current = config.value(name, category)
    # The first choice is the model-less default ('default' embedder, no cross-encoder).
    return [(Edit(name, model, category),) for model in config.choices(name)[1:]
            if model != current]


def _llm_query(config: RetrievalConfig, category: str, modes: tuple[str, ...]
               ) -> list[tuple[Edit, ...]]:
    """The LLM query operators, only where an LLM is configured (it answers, and asks)."""
    if config.answer_model is None:
        return []
    return [(Edit("llm_query", mode, category),) for mode in modes
            if mode != config.value("llm_query", category)]


def _learned_rerank(config: RetrievalConfig) -> list[tuple[Edit, ...]]:
    """Evidence ranked, but below what the budget holds: a model trained on the dev evidence
    reorders the fused candidates, or reorders more of them."""
    if config.reranker == "none":
        return [(Edit("reranker", "ltr"),)]
    if config.rerank_depth < 200:
        return [(Edit("rerank_depth", min(config.rerank_depth * 2, 200)),)]
    return []


def _date_cues(config: RetrievalConfig) -> list[tuple[Edit, ...]]:
    """Questions of every type name the date of their evidence ('on 9 February, 2023'), not only
    temporal ones: date cues for all of them (a question without a date is ranked as before),
    together with a retriever that reads them where none of the active ones does."""
    if config.temporal_cues:
        return []
    active = _active(config)
    readers = [name for name in RETRIEVERS if "temporal_cues" in RETRIEVERS[name].reads]
    if any(name in active for name in readers):
        return [(Edit("temporal_cues", True),)]
    spell = DIMENSIONS_BY_NAME["retrievers"].validate
    return [(Edit("retrievers", spell(active + [name])), Edit("temporal_cues", True))
            for name in readers]


def _never_retrieved(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    # The question's words are not the evidence's: search with other words (an LLM's
    # rewrite or hypothetical answer) or another model's sense of similarity.
    out = _added_retrievers(config) + _session_prior(config, category) \
        + _llm_query(config, category, ("rewrite", "hyde")) \
        + _listed_models(config, "embedding_model")
    if not config.bm25_stemming:
        out.append((Edit("bm25_stemming", True),))
    if not config.bm25_stopwords:
        out.append((Edit("bm25_stopwords", True),))
    if not config.value("query_keywords", category):
        out.append((Edit("query_keywords", True, category),))
    out += _learned_rerank(config)
    out += _date_cues(config)
    out.append(_wider_top_k(config, None))
    if config.unit == "turn":
        out.append((Edit("unit", "window"),))
    return out


def _ranked_below_cut(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    out = [_wider_top_k(config, None),
           _wider_top_k(config, category),
           *_cheaper_context(config, category),
           *_date_cues(config),
           *_session_prior(config, category),
           # Ranked, but not high enough: a cross-encoder rereads the first candidates.
           *_listed_models(config, "cross_encoder"),
           *_learned_rerank(config),
           _step(config, "context_budget", None, 1.5, 100, 8000)]
    if config.cross_encoder != NO_CROSS_ENCODER:
        out.append(_step(config, "cross_encoder_depth", category, 1.6, 2, 50))
    if config.value("include_dates", category):
        out.append((Edit("include_dates", False, category),))
    if config.value("mmr_lambda", category) > 0.6:
        out.append((Edit("mmr_lambda", 0.7, category),))
    active = _active(config)
    if len(active) > 1:
        for name in active:
            field = RETRIEVERS[name].weight.name
            weight = config.value(field, category)
            out.append((Edit(field, round(min(weight + 0.2, 1.0), 2), category),))
            out.append((Edit(field, round(max(weight - 0.2, 0.0), 2), category),))
    if len(active) > 1:
        out.append((Edit("fusion", "rrf" if config.fusion == "weighted" else "weighted"),))
    out.append((Edit("bm25_b", round(max(config.bm25_b - 0.25, 0.0), 2)),))
    # Passages of one long turn rank apart and each pays again for a turn already credited.
    # Paying once saves budget only where the budget, not top_k, cuts: last, after the edits
    # that decide the ranking (on LoCoMo, passages + the reranker: +0.010 on dev).
    if config.unit == "turn" and config.passage_tokens > 0 and not config.span_packing:
        out.append((Edit("span_packing", True),))
    return out


def _packed_out(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    """Evidence (all or part of it) among the top_k kept, but the context budget ran out before
    it: a wider top_k cannot help. Pay less per unit, or put the evidence first (a learned or a
    cross-encoder reranking orders the candidates by what the dev evidence looked like)."""
    out = [*_cheaper_context(config, category), *_learned_rerank(config),
           *_listed_models(config, "cross_encoder"), *_session_prior(config, category),
           *_date_cues(config), _step(config, "context_budget", None, 1.5, 100, 8000)]
    if config.value("include_dates", category):
        out.append((Edit("include_dates", False, category),))
    if config.unit == "turn" and config.passage_tokens > 0 and not config.span_packing:
        out.append((Edit("span_packing", True),))
    return out


def _partially_retrieved(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    out = [_wider_top_k(config, category),
           (Edit("neighbor_expansion", min(config.value("neighbor_expansion", category) + 1, 3),
                 category),)]
    if config.value("mmr_lambda", category) > 0.6:
        out.append((Edit("mmr_lambda", 0.6, category),))
    return out + _multi_hop(config, category) + _cheaper_context(config, category)[:2] \
        + _never_retrieved(config, category)[:2]


def _multi_hop(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    """Part of the evidence found, part missing: the question has parts (clauses, entities, or
    an LLM's sub-questions) ranked apart, or a hop from what was found leads to the rest."""
    out = []
    if config.value("multi_query", category) == "off":
        out.append((Edit("multi_query", "both", category),))
    out += _llm_query(config, category, ("decompose",))
    if config.value("hop2_units", category) == 0:
        out.append((Edit("hop2_units", 3, category),))
    return out


def _temporal(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    out = []
    if not config.value("include_dates", category):
        out.append((Edit("include_dates", True, category),))
    elif not config.value("session_headers", category):
        # The dates, once per session, leave room for more units than a date on every line.
        out.append((Edit("session_headers", True, category),))
    if not config.value("temporal_cues", category):
        out.append((Edit("temporal_cues", True, category),))
    return out


def _answered_wrong(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    out = []
    if config.answerer == "llm":
        for style in ("short", "sentence", "reasoned"):
            if style != config.value("answer_style", category):
                out.append((Edit("answer_style", style, category),))
    if config.value("packing_order", category) == "rank":
        out.append((Edit("packing_order", "chronological", category),))
    return out


def _adversarial(config: RetrievalConfig, category: str) -> list[tuple[Edit, ...]]:
    threshold = config.value("abstain_threshold", category)
    out = [(Edit("abstain_threshold", round(min(threshold + 0.25, 1.0), 2), category),)]
    if not config.value("speaker_swap", category):
        out.append((Edit("speaker_swap", True, category),))
    return out


RULES: dict[str, Rule] = {
    "never_retrieved": _never_retrieved,
    "packed_out": _packed_out,
    "ranked_below_cut": _ranked_below_cut,
    "partially_retrieved": _partially_retrieved,
    "temporal_wrong_date": _temporal,
    "in_context_answered_wrong": _answered_wrong,
    "adversarial_false_answer": _adversarial,
}


@register
class RulesDiagnoser:
    """Largest failure buckets first; each bucket's edits in rule order; untried and valid only."""

    name = "rules"

    def propose(self, context: DiagnosisContext) -> list[Proposal]:
        scores, why = edit_scores(context)
        ranked = (Proposal(edits, why[edits], self.name) for edits, _ in scores.most_common())
        return first_admissible(context, ranked)


def edit_scores(context: DiagnosisContext
                ) -> tuple[Counter[tuple[Edit, ...]], dict[tuple[Edit, ...], str]]:
    """Each open edit's score (a bucket's failures, discounted by the edit's place among the
    bucket's open edits) and the failures it was proposed for."""
    # A rule fires on its bucket every round, so an edit that changed no outcome at all
    # (an exact zero delta: e.g. packing order under a recall objective) would come back
    # each round; on LoCoMo such repeats took a third of the budget (bench search). One
    # that only made the context cheaper (span packing while top_k, not the budget, is
    # what cuts) may gain once the budget binds: it comes back after the incumbent moves.
    inert = {a.edit_json for a in context.history if a.delta == 0.0
             and not (a.tokens_delta is not None and a.tokens_delta <= -CHEAPER_TOKENS)}
    # An edit that lost twice stays lost: on LoCoMo one neighbour expansion for type 1 came
    # back in 9 of 20 rounds, always below its incumbent, while the reranker was never tried.
    losses = Counter(a.edit_json for a in context.history
                     if a.delta is not None and a.delta < 0.0 and a.decision != "accepted")
    inert |= {edit for edit, n in losses.items() if n >= LOSSES_RETIRE}
    open_: dict[tuple[Edit, ...], bool] = {}

    def is_open(edits: tuple[Edit, ...]) -> bool:
        if edits not in open_:
            proposal = Proposal(edits, "", RulesDiagnoser.name)
            open_[edits] = proposal.edit_json() not in inert \
                and context.admissible(proposal) is not None
        return open_[edits]

    scores: Counter[tuple[Edit, ...]] = Counter()
    why: dict[tuple[Edit, ...], str] = {}
    tokens = mean_context_tokens(context)
    for row in failure_buckets(context):
        edits_open = [edits for edits in bucket_edits(context.incumbent, row["bucket"],
                                                      row["category"], tokens)
                      if is_open(edits)]
        for rank, edits in enumerate(edits_open):
            # Earlier rules of a bucket are the likelier fix: discount later ones, counting
            # only the edits still open (a top_k at its bound, an edit tried and inert, one
            # over the token cap take no place).
            scores[edits] += row["n"] / (1 + rank)
            why.setdefault(edits, f"{row['n']} '{row['bucket']}' failures in category "
                                  f"{row['category']}")
    return scores, why
