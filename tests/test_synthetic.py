"""The embedded synthetic benchmark: deterministic, LoCoMo-shaped, exact evidence, not trivial."""
from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

import benchmarks.synthetic as synthetic
from benchmarks._registry import get_adapter, load_benchmark
from benchmarks.errors import BenchmarkError

STOPWORDS = set("a an the and or of to in on at for from with by is was were be been has have "
                "had did do does what which who where when how their them they it its my me i "
                "you your this that as new now about".split())


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9']+", text.lower()) if w not in STOPWORDS}


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("synthetic")


def turns_of(bench, question):
    return {t.id: t for t in bench.conversation_by_id[question.conversation_id].turns}


def of_category(bench, category):
    return [q for q in bench.questions if q.category == category]


def test_adapter_is_registered_and_embedded():
    adapter = get_adapter("synthetic")
    assert adapter.name == "synthetic" and adapter.embedded is True


def test_default_size(bench):
    assert bench.counts() == {"conversations": 10, "sessions": 120, "turns": 2400,
                              "questions": 250}


def test_same_parameters_give_identical_benchmark(bench):
    again = load_benchmark("synthetic")
    assert again.model_dump() == bench.model_dump()


def test_other_seed_gives_other_data(bench):
    other = load_benchmark("synthetic", seed=1)
    assert other.sha256 != bench.sha256
    assert [t.text for t in other.conversations[0].turns] != \
        [t.text for t in bench.conversations[0].turns]


def test_sha256_and_source_describe_generator_and_parameters(bench):
    params = dict(synthetic.DEFAULTS)
    assert bench.sha256 == synthetic.parameters_sha256(params)
    assert bench.sha256 != synthetic.parameters_sha256({**params, "turns": 15})
    assert bench.source == "synthetic:seed=0,conversations=10,sessions=12,turns=20,questions=25"


def test_every_locomo_category_is_present(bench):
    assert set(bench.category_counts()) == {"1", "2", "3", "4", "5"}


def test_every_evidence_id_names_a_turn(bench):
    for question in bench.questions:
        turns = turns_of(bench, question)
        assert question.evidence and set(question.evidence) <= set(turns)
        assert question.evidence_sessions == tuple(sorted({turns[e].session_index
                                                           for e in question.evidence}))


def test_turn_ids_are_locomo_dia_ids(bench):
    for conversation in bench.conversations:
        for session in conversation.sessions:
            assert [t.id for t in session.turns] == [f"D{session.index}:{n}"
                                                     for n in range(1, len(session.turns) + 1)]


def test_two_named_speakers_take_the_turns(bench):
    for conversation in bench.conversations:
        assert len(set(conversation.speakers)) == 2
        assert {t.speaker for t in conversation.turns} == set(conversation.speakers)


def test_session_dates_increase_and_match_their_locomo_text(bench):
    for conversation in bench.conversations:
        dates = [s.date for s in conversation.sessions]
        assert dates == sorted(dates) and len(set(dates)) == len(dates)
        for session in conversation.sessions:
            parsed = datetime.strptime(session.date_text, "%I:%M %p on %d %B, %Y")
            assert parsed == session.date


def test_some_turns_are_image_turns_with_captions(bench):
    captioned = [t for c in bench.conversations for t in c.turns if t.caption]
    assert captioned and all("[shares a photo of" in t.content for t in captioned)


def test_temporal_answers_are_resolved_against_the_session_date(bench):
    questions = of_category(bench, "2")
    assert questions
    for question in questions:
        conversation = bench.conversation_by_id[question.conversation_id]
        (evidence,) = question.evidence
        turn = turns_of(bench, question)[evidence]
        day = conversation.sessions[turn.session_index - 1].date
        text = turn.text.lower()
        phrases = [p for p in (*synthetic.RELATIVE_DAYS, *synthetic.RELATIVE_SPANS)
                   if re.search(rf"\b{p}\b", text)]
        assert len(phrases) == 1, turn.text
        (phrase,) = phrases
        if phrase in synthetic.RELATIVE_DAYS:
            then = day - timedelta(days=synthetic.RELATIVE_DAYS[phrase])
            expected = f"{then.day} {then.strftime('%B')} {then.year}"
        else:
            expected = f"The {phrase.split()[1]} before {day.day} {day.strftime('%B')} {day.year}"
        assert question.answers == (expected,)


def test_adversarial_questions_are_flagged_without_gold_answer(bench):
    for question in bench.questions:
        if question.category == "5":
            assert question.adversarial and question.answers == ()
            assert question.adversarial_answer
        else:
            assert not question.adversarial and question.answers and \
                question.adversarial_answer is None


def test_adversarial_premise_names_the_speaker_who_did_not_say_it(bench):
    for question in of_category(bench, "5"):
        speakers = bench.conversation_by_id[question.conversation_id].speakers
        (evidence,) = question.evidence
        actual = turns_of(bench, question)[evidence].speaker
        (other,) = set(speakers) - {actual}
        assert other in question.text and actual not in question.text


def test_single_hop_answer_is_a_span_of_its_evidence_turn(bench):
    for question in of_category(bench, "4"):
        (evidence,) = question.evidence
        assert question.answers[0] in turns_of(bench, question)[evidence].content


def test_single_hop_questions_paraphrase_their_evidence(bench):
    for question in of_category(bench, "4"):
        turns = turns_of(bench, question)
        names = content_words(" ".join(bench.conversation_by_id[
            question.conversation_id].speakers))
        asked = content_words(question.text) - names - content_words(question.answers[0])
        assert not asked & content_words(turns[question.evidence[0]].content), question.text


def test_multi_hop_answers_list_facts_from_several_turns(bench):
    questions = of_category(bench, "1")
    assert questions
    for question in questions:
        items = question.answers[0].split(", ")
        turns = turns_of(bench, question)
        assert len(items) >= 2 and len(question.evidence) == len(items)
        for item in items:
            assert sum(item in turns[e].content for e in question.evidence) >= 1


def test_open_domain_answers_carry_a_rationale(bench):
    questions = of_category(bench, "3")
    assert questions
    assert all(len(q.answers[0].split("; ")) == 2 for q in questions)


def test_single_hop_answers_have_lexical_distractors(bench):
    for question in of_category(bench, "4")[:12]:
        answer_words = content_words(question.answers[0])
        others = [t for t in turns_of(bench, question).values()
                  if t.id not in question.evidence and answer_words & content_words(t.content)]
        assert others, question.text


def test_scales_to_thousands_of_turns():
    bench = load_benchmark("synthetic", conversations=20, sessions=30, turns=20)
    assert bench.counts() == {"conversations": 20, "sessions": 600, "turns": 12000,
                              "questions": 500}


def test_conversation_is_the_same_whatever_the_count(bench):
    more = load_benchmark("synthetic", conversations=12)
    assert more.conversations[:10] == bench.conversations


def test_options_given_as_text_are_accepted():
    assert load_benchmark("synthetic", conversations="2").counts()["conversations"] == 2


@pytest.mark.parametrize("option, value", [("conversations", 0), ("turns", -3),
                                           ("questions", 101), ("sessions", "six")])
def test_bad_parameter_names_its_field(option, value):
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("synthetic", **{option: value})
    assert error.value.field == option and error.value.fix


def test_unknown_option_is_an_error():
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("synthetic", speakers=3)
    assert error.value.field == "speakers" and "seed" in str(error.value)


def test_too_many_questions_for_the_turns_is_an_error():
    with pytest.raises(BenchmarkError) as error:
        load_benchmark("synthetic", sessions=1, turns=10, questions=25)
    assert error.value.field == "questions" and "raise sessions or turns" in str(error.value)


def test_a_file_path_is_refused(tmp_path):
    with pytest.raises(BenchmarkError, match="reads no file"):
        get_adapter("synthetic").load(tmp_path / "x.json")
