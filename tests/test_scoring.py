"""Hand-worked checks of the offline benchmark scores against the official definitions."""
from __future__ import annotations

import math

import pytest

from benchmarks.model import Question
from benchmarks.scoring import (
    aggregate_longmemeval,
    evidence_recall_at_k,
    evidence_recall_within_budget,
    locomo_answer_score,
    longmemeval_retrieval_metrics,
    mean_by_category,
    membench_accuracy,
    membench_step_recall,
    multi_hop_f1,
    ndcg_at_k,
    normalize_answer,
    recall_all_at_k,
    recall_any_at_k,
    says_not_mentioned,
    session_recall_at_k,
    token_f1,
)


def _question(category: str = "4", answers: tuple[str, ...] = (), **fields: object) -> Question:
    return Question(id="q1", conversation_id="conv-1", text="What?", category=category,
                    answers=answers, **fields)


# --- normalisation and token F1 ------------------------------------------------------------------

def test_normalize_drops_case_punctuation_and_article_words() -> None:
    # "The cat, and a dog!" -> "the cat and a dog" -> a/the/and removed -> "cat dog"
    assert normalize_answer("The cat, and a dog!") == "cat dog"


def test_normalize_removes_commas_inside_numbers() -> None:
    # The comma goes before anything else, so "1,000" stays one token "1000".
    assert normalize_answer("1,000 dollars") == "1000 dollars"


def test_token_f1_of_extra_predicted_token() -> None:
    # pred "Paris, France" -> [pari, franc]; gold "paris" -> [pari]; overlap 1
    # precision 1/2, recall 1/1, F1 = 2 * 1/2 * 1 / (1/2 + 1) = 2/3
    assert token_f1("Paris, France", "paris") == pytest.approx(2 / 3)


def test_token_f1_compares_porter_stems() -> None:
    # "running" and "runs" both stem to "run": precision 1, recall 1
    assert token_f1("running", "runs") == 1.0


def test_token_f1_ignores_articles() -> None:
    # "the Eiffel Tower" normalises to "eiffel tower", the same tokens as the gold
    assert token_f1("the Eiffel Tower", "Eiffel Tower") == 1.0


def test_token_f1_counts_repeated_tokens_once_per_gold_occurrence() -> None:
    # pred [dog, dog], gold [dog]: Counter overlap min(2, 1) = 1
    # precision 1/2, recall 1, F1 = 2/3
    assert token_f1("dog dog", "dog") == pytest.approx(2 / 3)


def test_token_f1_without_overlap_is_zero() -> None:
    assert token_f1("blue", "red") == 0.0


# --- LoCoMo answer score by category -------------------------------------------------------------

def test_int_like_gold_scores_as_text() -> None:
    # Category 2, gold "2022" (an int in the raw file): pred [in, 2022] vs [2022]
    # precision 1/2, recall 1, F1 = 2/3
    question = _question("2", ("2022",))
    assert locomo_answer_score("In 2022", question) == pytest.approx(2 / 3)


def test_multi_hop_averages_best_match_per_gold_item() -> None:
    # gold items [hiking, painting]; predicted items ["went hiking", "painting"]
    # hiking: best of F1("went hiking", "hiking") = (P 1/2, R 1) 2/3 and 0 -> 2/3
    # painting: F1("painting", "painting") = 1
    # mean (2/3 + 1) / 2 = 5/6
    assert multi_hop_f1("went hiking, painting", "hiking, painting") == pytest.approx(5 / 6)


def test_category_1_uses_the_comma_list_rule() -> None:
    # gold items [hiking, painting], one predicted item "painting": (0 + 1) / 2 = 1/2,
    # where plain token F1 would give P 1, R 1/2, F1 2/3
    question = _question("1", ("hiking, painting",))
    assert locomo_answer_score("painting", question) == pytest.approx(1 / 2)


def test_category_3_scores_only_the_part_before_the_semicolon() -> None:
    # gold "Likely yes; she loves the outdoors" -> "Likely yes"; pred has the same tokens -> 1
    question = _question("3", ("Likely yes; she loves the outdoors",))
    assert locomo_answer_score("likely yes", question) == 1.0


def test_category_5_rewards_saying_not_mentioned() -> None:
    question = _question("5", adversarial=True, adversarial_answer="a lake at sunset")
    assert locomo_answer_score("Not mentioned in the conversation", question) == 1.0


def test_category_5_gives_nothing_for_the_adversarial_answer() -> None:
    question = _question("5", adversarial=True, adversarial_answer="a lake at sunset")
    assert locomo_answer_score("a lake at sunset", question) == 0.0


def test_no_information_available_also_counts_as_abstaining() -> None:
    assert says_not_mentioned("Sorry, NO INFORMATION AVAILABLE about that.")


def test_longmemeval_abstention_uses_the_category_5_rule() -> None:
    question = _question("single-session-user", ("You did not mention your car colour",),
                         adversarial=True)
    assert locomo_answer_score("Your car colour is not mentioned.", question) == 1.0


def test_non_locomo_category_takes_the_best_gold_answer() -> None:
    # pred [blue] vs "blue car" [blue, car]: P 1, R 1/2, F1 2/3; vs "blue": 1 -> best 1
    question = _question("single-session-user", ("blue car", "blue"))
    assert locomo_answer_score("blue", question) == 1.0


def test_question_without_answers_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="q1"):
        locomo_answer_score("anything", _question("4"))


# --- evidence recall -----------------------------------------------------------------------------

def test_evidence_recall_counts_distinct_gold_once() -> None:
    # gold {D1:1, D1:3} (D1:1 listed twice); top 2 = [D1:1, D1:1] finds one of two -> 1/2
    retrieved = ["D1:1", "D1:1", "D1:2"]
    assert evidence_recall_at_k(retrieved, ["D1:1", "D1:1", "D1:3"], k=2) == 0.5


def test_evidence_recall_looks_only_at_top_k() -> None:
    assert evidence_recall_at_k(["a", "b", "c"], {"c"}, k=2) == 0.0


def test_evidence_recall_without_gold_is_none() -> None:
    assert evidence_recall_at_k(["a", "b"], [], k=2) is None


def test_budget_includes_a_unit_ending_exactly_at_the_budget() -> None:
    # 40 + 60 = 100 tokens fits a budget of 100, so gold "b" is seen
    assert evidence_recall_within_budget(["a", "b", "c"], [40, 60, 10], {"b"}, budget=100) == 1.0


def test_budget_stops_at_the_first_unit_that_overflows() -> None:
    # 40 + 60 = 100 > 99: the prefix is [a]; "c" (10 tokens) would fit but comes after "b"
    assert evidence_recall_within_budget(["a", "b", "c"], [40, 60, 10], {"c"}, budget=99) == 0.0


def test_budget_needs_one_token_count_per_unit() -> None:
    with pytest.raises(ValueError, match="token count"):
        evidence_recall_within_budget(["a", "b"], [10], {"a"}, budget=100)


def test_session_recall_deduplicates_sessions_in_rank_order() -> None:
    # [3, 3, 3, 1, 2] -> distinct [3, 1, 2]; top 2 sessions [3, 1] hold one of gold {1, 2} -> 1/2
    assert session_recall_at_k([3, 3, 3, 1, 2], {1, 2}, k=2) == 0.5


# --- LongMemEval retrieval metrics ---------------------------------------------------------------

def test_recall_any_needs_one_gold_in_top_k() -> None:
    assert recall_any_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, k=2) == 1.0


def test_recall_all_needs_every_gold_in_top_k() -> None:
    assert recall_all_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, k=2) == 0.0
    assert recall_all_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, k=4) == 1.0


def test_ndcg_matches_the_official_discount() -> None:
    # relevances [0, 1, 0, 1]; official dcg = rel[0] + rel[1]/log2(2) + rel[2]/log2(3)
    # + rel[3]/log2(4) = 0 + 1 + 0 + 1/2 = 3/2; ideal [1, 1] -> 1 + 1/log2(2) = 2; nDCG 3/4.
    # (The textbook log2(rank + 1) discount would give (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3)).)
    assert ndcg_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, k=4) == pytest.approx(0.75)
    textbook = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["x", "g1", "y", "g2"], {"g1", "g2"}, k=4) != pytest.approx(textbook)


def test_ndcg_ideal_counts_at_most_k_gold() -> None:
    # 3 gold, k = 2: ideal [1, 1] -> 2; ranked [g1, x] -> dcg 1; nDCG 1/2
    assert ndcg_at_k(["g1", "x"], {"g1", "g2", "g3"}, k=2) == 0.5


def test_ndcg_ideal_ignores_gold_outside_the_corpus() -> None:
    # "gone" is not in the corpus: ideal [1] -> 1; ranked [g1, x] -> dcg 1; nDCG 1
    assert ndcg_at_k(["g1", "x"], {"g1", "gone"}, k=2, corpus_ids=["g1", "x"]) == 1.0


def test_ndcg_counts_a_repeated_gold_id_once() -> None:
    # [g, g]: only the first g is relevant -> dcg 1; ideal 1; nDCG 1, not 2
    assert ndcg_at_k(["g", "g"], {"g"}, k=2) == 1.0


def test_ndcg_without_gold_is_zero() -> None:
    assert ndcg_at_k(["a", "b"], set(), k=2) == 0.0


def test_longmemeval_metrics_at_both_levels() -> None:
    # sessions [0, 0, 1] -> distinct [0, 1]; gold {1} at rank 2 (undiscounted): any@1 0, any@2 1,
    # ndcg@2 = 1/1. Turns [t2, t1, t9], gold {t1} at rank 2: the same numbers.
    metrics = longmemeval_retrieval_metrics(["t2", "t1", "t9"], {"t1"}, [0, 0, 1], {1}, ks=(1, 2))
    for level in ("session", "turn"):
        assert metrics[f"{level}_recall_any@1"] == 0.0
        assert metrics[f"{level}_recall_any@2"] == 1.0
        assert metrics[f"{level}_recall_all@2"] == 1.0
        assert metrics[f"{level}_ndcg@1"] == 0.0
        assert metrics[f"{level}_ndcg@2"] == 1.0


def test_longmemeval_metrics_have_three_metrics_per_level_and_k() -> None:
    # 2 levels x 3 metrics x k in (5, 10, 50) = 18 keys
    metrics = longmemeval_retrieval_metrics(["t1"], {"t1"}, [0], {0})
    assert len(metrics) == 18
    assert "session_recall_any@5" in metrics and "turn_ndcg@10" in metrics


def test_longmemeval_metrics_leave_out_a_level_without_gold() -> None:
    metrics = longmemeval_retrieval_metrics(["t1"], set(), [0], {0}, ks=(5,))
    assert set(metrics) == {"session_recall_any@5", "session_recall_all@5", "session_ndcg@5"}


def test_longmemeval_aggregate_skips_abstention_questions() -> None:
    # the _abs question's 1.0 is left out: mean of 0.0 and 1.0 over 2 questions
    abstention = _question("single-session-user", ("not there",), adversarial=True)
    plain = _question("single-session-user", ("there",))
    rows = [(abstention, {"turn_recall_any@5": 1.0}), (plain, {"turn_recall_any@5": 0.0}),
            (plain, {"turn_recall_any@5": 1.0})]
    assert aggregate_longmemeval(rows) == {"turn_recall_any@5": (0.5, 2)}


# --- MemBench ------------------------------------------------------------------------------------

def test_membench_accuracy_ignores_case_and_spaces() -> None:
    question = _question("simple", choices={"A": "x", "B": "y"}, correct_choice="B")
    assert membench_accuracy(" b ", question) == 1.0


def test_membench_accuracy_of_a_wrong_or_missing_choice_is_zero() -> None:
    question = _question("simple", choices={"A": "x", "B": "y"}, correct_choice="B")
    assert membench_accuracy("A", question) == 0.0
    assert membench_accuracy(None, question) == 0.0


def test_membench_accuracy_needs_a_correct_choice() -> None:
    with pytest.raises(ValueError, match="correct_choice"):
        membench_accuracy("A", _question("simple"))


def test_membench_step_recall_uses_all_retrieved_steps() -> None:
    # target steps {3, 7}; retrieved [7, 1, 2] holds one of them -> 1/2
    question = _question("simple", evidence=("3", "7"))
    assert membench_step_recall(["7", "1", "2"], question) == 0.5


# --- aggregation ---------------------------------------------------------------------------------

def test_mean_by_category_skips_none() -> None:
    # category 1: (1.0 + 0.0) / 2 with the None ignored; category 4: 0.5 / 1; "5" only None
    rows = [("1", 1.0), ("1", 0.0), ("1", None), ("4", 0.5), ("5", None)]
    assert mean_by_category(rows) == {"1": (0.5, 2), "4": (0.5, 1)}


# --- LongMemEval official metrics, ported from run_retrieval.py / eval_utils.py ---------------

def test_official_turn_metrics_follow_the_official_ids_and_widening():
    from benchmarks.scoring import longmemeval_official_turn_metrics

    # Session 1 (an answer session): user turns u1 (gold) and u2; session 2: u3, u4.
    session_of = {"u1": 1, "u2": 1, "u3": 2, "u4": 2}
    corpus = ["u1", "u2", "u3", "u4"]
    metrics = longmemeval_official_turn_metrics(["u2", "u3", "u4", "u1"], corpus, ["u1"],
                                                session_of, [1], ks=(1, 2))
    # Turn level: the gold turn is ranked 4th.
    assert metrics["turn_recall_any@1"] == 0.0 and metrics["turn_recall_any@2"] == 0.0
    # Session level: u2 is 'noans1', a session other than 'answer1': the first 2 distinct
    # sessions (noans1, s2) hold no gold, even though u2 sits in the gold session.
    assert metrics["session_recall_any@2"] == 0.0 and metrics["session_ndcg@2"] == 0.0


def test_official_session_ndcg_counts_the_widened_prefix():
    from benchmarks.scoring import longmemeval_official_turn_metrics

    session_of = {"a": 1, "b": 1, "c": 2}
    metrics = longmemeval_official_turn_metrics(["c", "a", "b"], ["a", "b", "c"], ["a", "b"],
                                                session_of, [1], ks=(1,))
    # k=1 at session level widens to 1 turn (s2): no gold; turn nDCG@1 is 0 as well.
    assert metrics["session_recall_any@1"] == 0.0 and metrics["turn_ndcg@1"] == 0.0
    full = longmemeval_official_turn_metrics(["a", "c", "b"], ["a", "b", "c"], ["a", "b"],
                                             session_of, [1], ks=(2,))
    # Official DCG: ranks 0 and 1 undiscounted, rank 2 by log2(3); ideal is two relevant turns.
    assert full["turn_ndcg@2"] == pytest.approx(1.0 / 2.0)
    assert full["session_recall_all@2"] == 1.0


def test_a_question_without_a_user_side_target_is_skipped():
    from benchmarks.scoring import longmemeval_official_turn_metrics

    assert longmemeval_official_turn_metrics(["a"], ["a"], [], {"a": 1}, [1]) == {}


def test_turn_recall_counts_turns_not_units():
    from benchmarks.scoring import turn_recall_at_k

    # Two 3-turn windows: the first 5 turns hold t1..t5, not t6.
    assert turn_recall_at_k(["t1", "t2", "t3", "t4", "t5", "t6"], ["t2", "t6"], 5) == 0.5


def test_official_targets_are_user_turns_with_has_answer(longmemeval):
    scored = [q for q in longmemeval.questions if q.target_turns and not q.adversarial]
    assert len(scored) == 419
    by_id = {t.id: t for c in longmemeval.conversations for t in c.turns}
    assert all(by_id[t].speaker == "user" for q in scored[:50] for t in q.target_turns)
