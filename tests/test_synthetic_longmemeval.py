"""The LongMemEval-shaped synthetic benchmark (shape=longmemeval): haystacks like S and M."""
from __future__ import annotations

import statistics
from collections import Counter

import pytest

from benchmarks import BenchmarkError, load_benchmark
from benchmarks import _synthetic_longmemeval as lme
from benchmarks.longmemeval import parse_longmemeval_date

SMALL = {"shape": "longmemeval", "questions": 60, "sessions": 20}


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("synthetic", **SMALL)


def test_one_haystack_per_question_of_the_asked_size(bench):
    assert len(bench.questions) == len(bench.conversations) == 60
    for question, haystack in zip(bench.questions, bench.conversations):
        assert question.conversation_id == haystack.id
        assert len(haystack.sessions) == 20
        assert haystack.speakers == ("user", "assistant")


def test_same_options_give_the_same_data_and_a_seed_changes_it(bench):
    again = load_benchmark("synthetic", **{k: str(v) for k, v in SMALL.items()})
    assert again.model_dump() == bench.model_dump()
    other = load_benchmark("synthetic", **SMALL, seed=1)
    assert other.sha256 != bench.sha256 and other.key != bench.key
    assert [t.text for t in other.conversations[0].turns] != \
        [t.text for t in bench.conversations[0].turns]
    assert bench.key != load_benchmark("synthetic").key


def test_turn_lengths_are_like_longmemeval(bench):
    words = {role: [len(t.text.split()) for c in bench.conversations for t in c.turns
                    if t.speaker == role] for role in ("user", "assistant")}
    assert 85 <= statistics.mean(words["user"]) <= 115
    assert 225 <= statistics.mean(words["assistant"]) <= 275
    for conversation in bench.conversations:
        for session in conversation.sessions:
            assert [t.speaker for t in session.turns][:2] == ["user", "assistant"]
            assert len(session.turns) % 2 == 0


def test_filler_sessions_recur_across_haystacks_but_most_texts_are_distinct(bench):
    texts = [t.text for c in bench.conversations for t in c.turns]
    distinct = len(set(texts)) / len(texts)
    # Real S: 189k of 246k turn texts distinct (77%).
    assert 0.65 <= distinct <= 0.9
    haystacks_of = Counter(text for c in bench.conversations for text in {t.text for t in c.turns})
    assert max(haystacks_of.values()) >= 2


def test_evidence_turns_hold_the_answer_and_sit_in_both_roles():
    bench = load_benchmark("synthetic", shape="longmemeval", questions=300, sessions=4)
    roles = Counter()
    for question in bench.questions:
        turns = {t.id: t for t in bench.conversation_by_id[question.conversation_id].turns}
        assert question.evidence, question.id
        assert all(e in turns for e in question.evidence)
        assert sorted({turns[e].session_index for e in question.evidence}) == \
            list(question.evidence_sessions)
        roles.update(turns[e].speaker for e in question.evidence)
        if question.category in ("single-session-user", "single-session-assistant",
                                 "knowledge-update") and not question.adversarial:
            # The answer is stated in the (last) evidence turn.
            assert question.answers[0] in turns[question.evidence[-1]].text
    assert roles["user"] > roles["assistant"] > 0


def test_question_types_abstention_and_answers(bench):
    big = load_benchmark("synthetic", shape="longmemeval", questions=500, sessions=2)
    types = Counter(q.category for q in big.questions)
    assert set(types) == set(lme.TYPE_SHARES)
    assert types["multi-session"] > types["single-session-preference"]
    abstaining = [q for q in big.questions if q.adversarial]
    assert abstaining and all(q.id.endswith("_abs") for q in abstaining)
    for q in big.questions:
        if q.category == "temporal-reasoning":
            haystack = big.conversation_by_id[q.conversation_id]
            dates = [haystack.sessions[i - 1].date.date() for i in q.evidence_sessions]
            assert q.answers == (f"{abs((dates[1] - dates[0]).days)} days",)


def test_sessions_are_chronological_with_longmemeval_timestamps(bench):
    for conversation, question in zip(bench.conversations, bench.questions):
        dates = [s.date for s in conversation.sessions]
        assert dates == sorted(dates)
        assert all(parse_longmemeval_date(s.date_text) == s.date for s in conversation.sessions)
        assert question.question_date > dates[-1]


def test_turn_ids_are_longmemeval_unit_ids(bench):
    session = bench.conversations[0].sessions[2]
    assert [t.id for t in session.turns[:2]] == ["S3:1", "S3:2"]


def test_s_size_by_default_and_m_size_by_sessions():
    assert lme.DEFAULTS["sessions"] == 50 and lme.DEFAULTS["questions"] == 500
    m = load_benchmark("synthetic", shape="longmemeval", questions=2, sessions=500)
    assert [len(c.sessions) for c in m.conversations] == [500, 500]
    assert 8_000 <= m.counts()["turns"] <= 12_000


@pytest.mark.parametrize("options, field", [
    ({"shape": "longmemeval", "conversations": 3}, "conversations"),
    ({"shape": "longmemeval", "sessions": 0}, "sessions"),
    ({"shape": "longmemeval", "questions": "many"}, "questions"),
    ({"shape": "longmem"}, "shape"),
])
def test_bad_options_name_the_field_and_the_fix(options, field):
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("synthetic", **options)
    assert error.value.field == field and error.value.fix


def test_a_part_keeps_every_question_and_only_its_haystacks_unchanged(bench):
    from benchmarks import BenchmarkSource

    wanted = [bench.questions[3].conversation_id, bench.questions[41].conversation_id]
    part = load_benchmark("synthetic", keep=wanted, **SMALL)
    assert part.questions == bench.questions and part.key == bench.key
    assert [c.id for c in part.conversations] == wanted
    assert list(part.conversations) == [bench.conversation_by_id[c] for c in wanted]
    # The driver's part (no haystack) still names every conversation, through its questions.
    source = BenchmarkSource("synthetic", options=tuple(SMALL.items()))
    questions_only = source.load(keep=())
    assert questions_only.conversations == ()
    assert questions_only.conversation_ids() == bench.conversation_ids()
    conversations, questions = source.shard(wanted).load()
    assert [c.id for c in conversations] == wanted
    assert [q.conversation_id for q in questions] == wanted
