"""The rules diagnoser: its buckets' edits, and the edits it stops offering (one that changed no
outcome, one that lost twice)."""
from __future__ import annotations

from benchmarks import load_benchmark
from benchmarks.splits import make_split
from evolve.diagnosers.base import Attempt, DiagnosisContext, Edit
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
