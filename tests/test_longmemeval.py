"""LongMemEval adapter: per-question haystacks, gold sessions and turns, no leaking ids."""
from __future__ import annotations

import json

import pytest

from benchmarks import BenchmarkError, load_benchmark


def test_real_file_counts(longmemeval):
    assert longmemeval.variant == "oracle"
    assert len(longmemeval.questions) == 500
    assert len(longmemeval.conversations) == 500
    assert sum(q.adversarial for q in longmemeval.questions) == 30
    assert longmemeval.category_counts()["temporal-reasoning"] == 133


def test_every_question_has_its_own_haystack(longmemeval):
    assert all(q.conversation_id == q.id for q in longmemeval.questions)


def test_session_ids_never_reach_the_model(longmemeval):
    dumped = longmemeval.conversations[0].model_dump_json()
    assert "answer_" not in dumped


def test_gold_sessions_and_turns(longmemeval):
    q = longmemeval.questions[0]
    assert q.evidence_sessions and q.evidence
    conv = longmemeval.conversation_by_id[q.conversation_id]
    assert set(q.evidence) <= conv.turn_ids()


def test_assistant_turns_are_indexed(longmemeval):
    conv = longmemeval.conversations[0]
    assert {t.speaker for t in conv.turns} == {"user", "assistant"}


def test_question_date_is_parsed(longmemeval):
    assert all(q.question_date is not None for q in longmemeval.questions)


def _record(**changes):
    record = {"question_id": "q1", "question_type": "single-session-user", "question": "Where?",
              "answer": "Paris", "question_date": "2023/05/30 (Tue) 23:40",
              "haystack_dates": ["2023/05/20 (Sat) 10:00"], "haystack_session_ids": ["answer_x"],
              "haystack_sessions": [[{"role": "user", "content": "I live in Paris",
                                      "has_answer": True},
                                     {"role": "assistant", "content": "Nice"}]],
              "answer_session_ids": ["answer_x"]}
    record.update(changes)
    return record


def test_variant_is_given_or_inferred(tmp_path):
    path = tmp_path / "longmemeval_s_cleaned.json"
    path.write_text(json.dumps([_record()]))
    assert load_benchmark("longmemeval", path).variant == "s"
    other = tmp_path / "mine.json"
    other.write_text(json.dumps([_record()]))
    assert load_benchmark("longmemeval", other).variant == "oracle"
    assert load_benchmark("longmemeval", other, variant="m").variant == "m"


def test_missing_has_answer_means_false(tmp_path):
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([_record()]))
    q = load_benchmark("longmemeval", path).questions[0]
    assert q.evidence == ("S1:1",) and q.evidence_sessions == (1,)


def test_non_parallel_lists_are_rejected(tmp_path):
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([_record(haystack_dates=[])]))
    with pytest.raises(BenchmarkError, match="record q1.*parallel"):
        load_benchmark("longmemeval", path)


def test_locomo_file_is_named_when_passed_as_longmemeval(locomo_path):
    with pytest.raises(BenchmarkError, match="looks like a locomo"):
        load_benchmark("longmemeval", locomo_path)


def test_a_part_of_the_file_keeps_every_question_and_only_its_haystacks(longmemeval,
                                                                        longmemeval_path):
    wanted = [longmemeval.questions[7].conversation_id, longmemeval.questions[300].conversation_id]
    part = load_benchmark("longmemeval", longmemeval_path, keep=wanted)
    assert part.questions == longmemeval.questions and part.key == longmemeval.key
    assert list(part.conversations) == [longmemeval.conversation_by_id[c] for c in wanted]
    assert part.variant == longmemeval.variant
