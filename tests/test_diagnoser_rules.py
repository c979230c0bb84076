"""The rules diagnoser: its buckets' edits, and the edits it stops offering (one that changed no
outcome, one that lost twice)."""
from __future__ import annotations

from benchmarks import load_benchmark
from benchmarks.splits import make_split
from evolve.diagnosers.base import Attempt, DiagnosisContext, Edit, Proposal
from evolve.diagnosers.rules import RulesDiagnoser
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.store import RunStore
from search_space.config import load_preset


def test_an_edit_with_an_exact_zero_delta_is_not_proposed_again(tmp_path):
    bench = load_benchmark("synthetic", conversations=2, sessions=3, turns=8, questions=6)
    split = make_split(bench, "all")
    weak = load_preset("weak")
    ids = [q.id for q in bench.questions]
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("evolve-rules", "evolve", bench, split, {})
        evaluate_configs(Evaluator(bench, workers=0), [weak], ids, part="dev",
                         objective="recall_in_context", store=store, run_id="evolve-rules")

        def propose(history: list[Attempt]) -> list[str]:
            context = DiagnosisContext(
                store=store, run_id="evolve-rules", round=1, incumbent=weak,
                benchmark_key=bench.key, question_ids=ids, objective="recall_in_context",
                max_context_tokens=1000, history=history, seed=0, n_proposals=4)
            return [p.edit_json() for p in RulesDiagnoser().propose(context)]

        first = propose([])
        inert, gained = first[0], first[1]
        again = propose([Attempt(1, "rules", inert, 0.0, "rejected"),
                         Attempt(1, "rules", gained, 0.01, "rejected")])
        assert inert not in again and gained in again
        # A tie that made the context cheaper is not inert: it may gain once the budget binds.
        cheaper = propose([Attempt(1, "rules", inert, 0.0, "rejected", -12.5)])
        dearer = propose([Attempt(1, "rules", inert, 0.0, "rejected", 4.0)])
        assert inert in cheaper and inert not in dearer
        # An edit that lost to its incumbent once is offered again, twice is retired.
        lost_once = propose([Attempt(1, "rules", gained, -0.01, "rejected")])
        lost_twice = propose([Attempt(1, "rules", gained, -0.01, "rejected"),
                              Attempt(2, "rules", gained, -0.02, "screened")])
        won_then_lost = propose([Attempt(1, "rules", gained, -0.01, "rejected"),
                                 Attempt(2, "rules", gained, 0.02, "rejected")])
    assert gained in lost_once and gained not in lost_twice and gained in won_then_lost


def _fields(edits_list) -> set[str]:
    return {edit.field for edits in edits_list for edit in edits}


def test_the_buckets_offer_the_operators_that_address_them():
    from evolve.diagnosers.rules import RULES
    from search_space.config import RetrievalConfig

    weak = load_preset("weak")
    # Evidence ranked below the cut: a cheaper context (passages, user turns) and a session prior.
    assert {"passage_tokens", "index_roles", "session_weight"} <= \
        _fields(RULES["ranked_below_cut"](weak, "1"))
    # Evidence never ranked: another retriever or the session prior.
    assert {"retrievers", "session_weight"} <= _fields(RULES["never_retrieved"](weak, "1"))
    windows = RetrievalConfig(unit="window", include_dates=True)
    assert "span_packing" in _fields(RULES["partially_retrieved"](windows, "1"))
    # Passages of one turn rank apart, and each would pay for the same turn again.
    passages = weak.with_values({"passage_tokens": 40})
    assert "span_packing" not in _fields(RULES["ranked_below_cut"](weak, "1"))
    assert RULES["ranked_below_cut"](passages, "1")[-1] == (Edit("span_packing", True),)
    assert "session_headers" in _fields(RULES["temporal_wrong_date"](windows, "2"))
    # Once set, the session weight is moved both ways.
    tuned = RULES["never_retrieved"](weak.with_values({"session_weight": 0.4}), "1")
    assert {e.value for edits in tuned for e in edits if e.field == "session_weight"} == {0.55, 0.25}


def test_listed_models_and_llm_operators_are_offered_for_their_buckets():
    from dataclasses import replace

    from evolve.diagnosers.rules import bucket_edits
    from search_space.config import config_class
    from search_space.dimensions import DIMENSIONS

    weak = load_preset("weak")
    # Nothing listed, no LLM: none of them (the built-in space a fresh machine has).
    offered = {f for b in ("never_retrieved", "ranked_below_cut", "partially_retrieved")
               for f in _fields(bucket_edits(weak, b, "1"))}
    assert not offered & {"embedding_model", "cross_encoder", "llm_query"}
    listed = {"embedding_model": "my-embedder", "cross_encoder": "my-reranker"}
    space = config_class(tuple(replace(d, choices=(*d.choices, listed[d.name]))
                               if d.name in listed else d for d in DIMENSIONS))
    config = space(**{**weak.dimension_values(), "answerer": "llm"}, answer_model="local/model")
    never = bucket_edits(config, "never_retrieved", "1")
    assert (("embedding_model", "my-embedder"),) in [tuple((e.field, e.value) for e in edits)
                                                     for edits in never]
    assert {e.value for edits in never for e in edits if e.field == "llm_query"} == \
        {"rewrite", "hyde"}
    below = bucket_edits(config, "ranked_below_cut", "1")
    assert ("cross_encoder", "my-reranker") in [(e.field, e.value) for ed in below for e in ed]
    partial = bucket_edits(config, "partially_retrieved", "1")
    assert "decompose" in {e.value for ed in partial for e in ed if e.field == "llm_query"}
    reranking = bucket_edits(config.with_values({"cross_encoder": "my-reranker"}),
                             "ranked_below_cut", "1")
    assert "cross_encoder_depth" in _fields(reranking)


def test_date_cues_are_offered_for_every_question_type_with_a_retriever_that_reads_them():
    from evolve.diagnosers.rules import RULES
    from search_space.dimension import SET_SEPARATOR

    weak = load_preset("weak")
    structured = SET_SEPARATOR.join(("bm25", "structured"))
    # BM25 alone reads no date cues: they come with the structured retriever, as one edit.
    for category in ("1", "2", "4"):
        offered = RULES["never_retrieved"](weak, category)
        assert (Edit("retrievers", structured), Edit("temporal_cues", True)) in offered
        assert (Edit("temporal_cues", True),) not in offered
    with_reader = weak.with_values({"retrievers": structured})
    for bucket in ("never_retrieved", "ranked_below_cut"):
        assert (Edit("temporal_cues", True),) in RULES[bucket](with_reader, "4")
    cued = with_reader.with_values({"temporal_cues": True})
    assert "temporal_cues" not in _fields(RULES["ranked_below_cut"](cued, "4"))


def test_the_learned_reranker_is_offered_for_evidence_outside_the_kept_ranks():
    from evolve.diagnosers.rules import RULES

    weak = load_preset("weak")
    assert (Edit("reranker", "ltr"),) in RULES["never_retrieved"](weak, "1")
    reranked = weak.with_values({"reranker": "ltr"})
    assert (Edit("rerank_depth", 200),) in RULES["never_retrieved"](reranked, "1")


def _edits(edits_list) -> set[tuple]:
    return {(edit.field, edit.value, edit.category) for edits in edits_list for edit in edits}


class _Buckets:
    """A store whose failure query returns fixed buckets (the rules' own arithmetic on them)."""

    def __init__(self, rows: list[dict], tokens: float | None = None) -> None:
        self.rows, self.tokens = rows, tokens

    def query(self, sql: str, params: list) -> list[dict]:
        if "avg(context_tokens)" in sql:   # the incumbent's mean context on dev
            return [{"tokens": self.tokens}]
        return [dict(row) for row in self.rows]


def _context(incumbent, rows, objective="recall_in_context", history=(), tokens=None):
    return DiagnosisContext(
        store=_Buckets(rows, tokens), run_id="r", round=1, incumbent=incumbent,
        benchmark_key="b", question_ids=["q"], objective=objective, max_context_tokens=1000,
        history=list(history), seed=0, n_proposals=4)


def test_answer_buckets_are_failures_only_of_an_objective_that_scores_answers():
    from evolve.diagnosers.rules import failure_buckets

    rows = [{"category": "1", "bucket": "in_context_answered_wrong", "n": 9, "mean_rank": 1.0},
            {"category": "2", "bucket": "temporal_wrong_date", "n": 5, "mean_rank": 1.0},
            {"category": "5", "bucket": "adversarial_false_answer", "n": 4, "mean_rank": None},
            {"category": "1", "bucket": "ranked_below_cut", "n": 3, "mean_rank": 30.0}]
    weak = load_preset("weak")
    for objective in ("recall_in_context", "recall_at_k"):
        assert [r["bucket"] for r in failure_buckets(_context(weak, rows, objective))] == \
            ["ranked_below_cut"]
        proposed = RulesDiagnoser().propose(_context(weak, rows, objective))
        assert not _fields(p.edits for p in proposed) & {"packing_order", "abstain_threshold",
                                                         "answer_style"}
    assert len(failure_buckets(_context(weak, rows, "answer_f1"))) == 4
    assert "abstain_threshold" in _fields(p.edits for p in RulesDiagnoser().propose(
        _context(weak, rows, "answer_f1")))


def test_top_k_widens_as_far_as_the_unused_context_budget_holds():
    from evolve.diagnosers.rules import bucket_edits

    weak = load_preset("weak").with_values({"top_k": 5, "context_budget": 1000})
    # Contexts that used a fifth of the budget: five times the units, in one edit.
    assert bucket_edits(weak, "ranked_below_cut", "1", 200.0)[:2] == [
        (Edit("top_k", 25),), (Edit("top_k", 25, "1"),)]
    # A full budget (or nothing measured): the 1.6 step, as before.
    for tokens in (990.0, None):
        assert bucket_edits(weak, "ranked_below_cut", "1", tokens)[0] == (Edit("top_k", 8),)
    # Measured over the incumbent's dev contexts: one global edit for every type's failures.
    rows = [{"category": c, "bucket": "ranked_below_cut", "n": 12, "mean_rank": 9.0}
            for c in ("1", "2")]
    assert RulesDiagnoser().propose(_context(weak, rows, tokens=250.0))[0].edits == \
        (Edit("top_k", 20),)


def test_an_edit_that_cannot_be_made_takes_no_place_in_its_buckets_order():
    from evolve.diagnosers.rules import RULES, edit_scores

    rows = [{"category": "1", "bucket": "ranked_below_cut", "n": 12, "mean_rank": 60.0}]
    # top_k at its bound: both top_k steps (the rule's first two edits) change nothing.
    full = load_preset("weak").with_values({"top_k": 50})
    order = RULES["ranked_below_cut"](full, "1")
    assert order[0] == (Edit("top_k", 50),) and order[1] == (Edit("top_k", 50, "1"),)
    scores, _ = edit_scores(_context(full, rows))
    # Nor does a per-type override to the value the type already has (another hash, the same
    # outcomes): it is not admissible at all.
    assert (Edit("top_k", 50),) not in scores and (Edit("top_k", 50, "1"),) not in scores
    assert scores[order[2]] == 12 and scores[order[3]] == 6
    # An edit tried with no effect leaves its place to the next one.
    inert = Attempt(1, "rules", Proposal(order[2], "", "rules").edit_json(), 0.0, "rejected")
    scores, _ = edit_scores(_context(full, rows, history=[inert]))
    assert order[2] not in scores and scores[order[3]] == 12


def test_evidence_kept_in_the_top_k_but_cut_by_the_budget_is_packed_out(tmp_path):
    from evolve.diagnosers.rules import RULES, failure_buckets

    bench = load_benchmark("synthetic", conversations=2, sessions=3, turns=8, questions=6)
    split = make_split(bench, "all")
    ids = [q.id for q in bench.questions]
    # Twenty units kept, room for about one: much evidence is ranked, kept, and not packed.
    tight = load_preset("weak").with_values({"top_k": 20, "context_budget": 100})
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("evolve-rules", "evolve", bench, split, {})
        evaluate_configs(Evaluator(bench, workers=0), [tight], ids, part="dev",
                         objective="recall_in_context", store=store, run_id="evolve-rules")
        context = DiagnosisContext(
            store=store, run_id="evolve-rules", round=1, incumbent=tight,
            benchmark_key=bench.key, question_ids=ids, objective="recall_in_context",
            max_context_tokens=1000, history=[], seed=0, n_proposals=4)
        packed_out = [r for r in failure_buckets(context) if r["bucket"] == "packed_out"]
        kept = store.query("SELECT count(*) AS n FROM question_results WHERE config_hash = ? "
                           "AND recall_in_context < recall_at_k", [tight.config_hash])
    # (Adversarial questions answered falsely are their own bucket, whatever their recall.)
    assert packed_out and 0 < sum(r["n"] for r in packed_out) <= kept[0]["n"]
    # A wider top_k cannot help what the budget cut; a cheaper unit or a better order can.
    edits = RULES["packed_out"](tight, "1")
    assert "top_k" not in _fields(edits)
    assert {"passage_tokens", "reranker", "session_weight"} <= _fields(edits)

