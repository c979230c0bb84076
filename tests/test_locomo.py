"""LoCoMo adapter on the real file and on small broken copies written by the tests."""
from __future__ import annotations

import json

import pytest

from benchmarks import BenchmarkError, load_benchmark
from benchmarks.locomo import parse_evidence, parse_locomo_date


def test_real_file_counts(locomo):
    assert locomo.counts() == {"conversations": 10, "sessions": 272, "turns": 5882,
                               "questions": 1986}
    assert locomo.category_counts() == {"1": 282, "2": 321, "3": 96, "4": 841, "5": 446}


def test_image_turns_carry_their_caption(locomo):
    by_conv = {c.id: {t.id: t for t in c.turns} for c in locomo.conversations}
    evidence = [by_conv[q.conversation_id][e] for q in locomo.questions for e in q.evidence]
    assert len(evidence) == 2820
    image = [t for t in evidence if t.caption]
    assert len(image) == 1070
    assert all("[shares a photo of" in t.content for t in image)


def test_session_dates_are_parsed(locomo):
    first = locomo.conversations[0].sessions[0]
    assert first.date is not None and (first.date.year, first.date.month, first.date.day,
                                       first.date.hour, first.date.minute) == (2023, 5, 8, 13, 56)
    assert all(s.date is not None for c in locomo.conversations for s in c.sessions)


def test_empty_sessions_are_skipped(locomo):
    conv26 = locomo.conversation_by_id["conv-26"]
    assert len(conv26.sessions) == 19
    assert all(s.turns for s in conv26.sessions)


def test_category5_is_adversarial_without_gold_answer(locomo):
    cat5 = [q for q in locomo.questions if q.category == "5"]
    assert len(cat5) == 446 and all(q.adversarial and q.answers == () for q in cat5)
    assert sum(q.adversarial_answer is not None for q in cat5) >= 440


def test_dirty_evidence_is_counted_not_dropped(locomo):
    assert locomo.warnings["evidence id names no turn"] == 2
    assert locomo.warnings["question without evidence"] == 4
    dangling = [q for q in locomo.questions if "D10:19" in q.unresolved_evidence]
    assert [q.conversation_id for q in dangling] == ["conv-42"]


@pytest.mark.parametrize("raw, expected", [
    ("D8:6; D9:17", ["D8:6", "D9:17"]),
    ("D", []),
    ("D:11:26", ["D11:26"]),
    ("D9:1 D4:4 D4:6", ["D9:1", "D4:4", "D4:6"]),
    ("D30:05", ["D30:5"]),
    (["D1:3", "D1:3"], ["D1:3"]),
])
def test_parse_evidence_is_lenient(raw, expected):
    assert parse_evidence(raw) == expected


def test_parse_date():
    assert parse_locomo_date("7:55 pm on 9 June, 2023").hour == 19
    assert parse_locomo_date("sometime") is None


def _write(tmp_path, data, name="locomo10.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _tiny():
    return [{"sample_id": "c1",
             "conversation": {"speaker_a": "A", "speaker_b": "B",
                              "session_1_date_time": "1:56 pm on 8 May, 2023",
                              "session_1": [{"speaker": "A", "dia_id": "D1:1", "text": "hi"},
                                            {"speaker": "B", "dia_id": "D1:2", "text": "yo",
                                             "blip_caption": "a dog"}]},
             "qa": [{"question": "Who?", "answer": 7, "evidence": ["D1:2", "D3:1"],
                     "category": 4}]}]


def test_tiny_file_loads_with_int_answer_and_dangling_id(tmp_path):
    bench = load_benchmark("locomo", _write(tmp_path, _tiny()))
    q = bench.questions[0]
    assert q.answers == ("7",) and q.evidence == ("D1:2",) and q.unresolved_evidence == ("D3:1",)
    assert bench.warnings == {"evidence id names no turn": 1}


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(BenchmarkError, match="no such file.*--data"):
        load_benchmark("locomo", tmp_path / "nope.json")


def test_truncated_json_is_reported(tmp_path):
    text = json.dumps(_tiny())[:-20]
    with pytest.raises(BenchmarkError, match="not valid JSON.*truncated"):
        load_benchmark("locomo", _write(tmp_path, text))


def test_wrong_type_names_record_and_field(tmp_path):
    data = _tiny()
    data[0]["qa"][0]["category"] = "four"
    with pytest.raises(BenchmarkError) as info:
        load_benchmark("locomo", _write(tmp_path, data))
    message = str(info.value)
    assert "c1/qa[0]" in message and "'category'" in message and "str" in message


def test_missing_field_names_record_and_field(tmp_path):
    data = _tiny()
    del data[0]["conversation"]["session_1"][1]["text"]
    with pytest.raises(BenchmarkError, match=r"c1/session_1\[1\].*'text'"):
        load_benchmark("locomo", _write(tmp_path, data))


def test_file_of_another_benchmark_is_named(tmp_path, longmemeval_path):
    with pytest.raises(BenchmarkError, match="looks like a longmemeval"):
        load_benchmark("locomo", longmemeval_path)
