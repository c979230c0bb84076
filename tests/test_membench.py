"""MemBench adapter on small fixture files in both schemas, and on broken ones."""
from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime
from pathlib import Path

import pytest

import benchmarks.membench  # noqa: F401  (registers the adapter)
from benchmarks._registry import get_adapter, load_benchmark, sha256_of
from benchmarks.errors import BenchmarkError

CHOICES = {"A": "Heat", "B": "Alien", "C": "Up", "D": "Jaws"}

THIRD_AGENT = {
    "movie_fan": [{
        "tid": 0,
        "message_list": [
            {"mid": 0, "message": "I watched Alien at the Rex with my sister.",
             "time": "'2024-10-01 08:00' Tuesday", "place": "Rex cinema"},
            {"mid": 1, "message": "My sister prefers comedies.",
             "time": "'2024-10-01 09:30' Tuesday", "place": "Cafe Nord"},
            {"mid": 2, "message": "Bought tickets for Jaws next week.",
             "time": "'2024-10-02 19:00' Wednesday", "place": "Home"},
        ],
        "QA": {"qid": 0, "question": "Which film did the user see with their sister?",
               "answer": "Alien", "choices": CHOICES, "ground_truth": "B",
               "target_step_id": [0], "time": "'2024-10-03 10:00' Thursday"},
    }],
}

FIRST_AGENT = {
    "traveller": [{
        "tid": 4,
        "message_list": [
            [{"sid": 0, "user_message": "I'm planning a trip to Oslo.",
              "assistant_message": "Oslo is lovely in spring.",
              "time": "'2024-03-01 10:00' Friday", "place": "Office"},
             {"sid": 1, "user_message": "My budget is 900 euros.",
              "assistant_message": "That is workable.",
              "time": "'2024-03-01 10:05' Friday", "place": "Office"}],
            [{"sid": 0, "user_message": "I booked the Fjord Hotel.",
              "assistant_message": "Great choice.",
              "time": "'2024-03-04 18:00' Monday", "place": "Home"},
             {"sid": 1, "user_message": "My flight leaves at 7 am.",
              "assistant_message": "Set an alarm!",
              "time": "'2024-03-04 18:10' Monday", "place": "Home"}],
        ],
        "QA": {"qid": 2, "question": "Where is the user staying on the trip, and for how much?",
               "answer": "Fjord Hotel, 900 euros",
               "choices": {"A": "Fjord Hotel, 900 euros", "B": "Hostel, 500 euros",
                           "C": "Fjord Hotel, 500 euros", "D": "Hostel, 900 euros"},
               "ground_truth": "A", "target_step_id": [[0, 1], [1, 0]],
               "time": "'2024-03-05 09:00' Tuesday"},
    }],
}


def write(path: Path, payload: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


def load(path: Path, **kwargs):
    return load_benchmark("membench", path, **kwargs)


@pytest.fixture
def third_file(tmp_path: Path) -> Path:
    return write(tmp_path / "MemData" / "ThirdAgent" / "simple.json", THIRD_AGENT)


@pytest.fixture
def first_file(tmp_path: Path) -> Path:
    return write(tmp_path / "MemData" / "FirstAgent" / "aggregative.json", FIRST_AGENT)


def broken(tmp_path: Path, mutate) -> Path:
    payload = copy.deepcopy(THIRD_AGENT)
    mutate(payload["movie_fan"][0])
    return write(tmp_path / "ThirdAgent" / "simple.json", payload)


def test_adapter_is_registered_and_reads_files():
    adapter = get_adapter("membench")
    assert adapter.name == "membench" and adapter.embedded is False


def test_third_agent_trajectory_becomes_one_conversation(third_file):
    bench = load(third_file)
    assert bench.name == "membench" and bench.variant == "ThirdAgent"
    assert [c.id for c in bench.conversations] == ["ThirdAgent/simple/movie_fan/0"]
    assert [t.id for t in bench.conversations[0].turns] == ["m0", "m1", "m2"]


def test_third_agent_question_keeps_choices_and_maps_evidence(third_file):
    question = load(third_file).questions[0]
    assert question.id == "ThirdAgent/simple/movie_fan/0/0"
    assert question.category == "simple"
    assert question.answers == ("Alien",)
    assert question.choices == CHOICES and question.correct_choice == "B"
    assert question.evidence == ("m0",) and question.unresolved_evidence == ()


def test_times_are_parsed_from_quoted_strings_with_weekday(third_file):
    bench = load(third_file)
    assert bench.conversations[0].sessions[0].date == datetime(2024, 10, 1, 8, 0)
    assert bench.questions[0].question_date == datetime(2024, 10, 3, 10, 0)


def test_third_agent_messages_are_grouped_by_calendar_day(third_file):
    sessions = load(third_file).conversations[0].sessions
    assert [[t.id for t in s.turns] for s in sessions] == [["m0", "m1"], ["m2"]]


def test_turn_text_carries_time_and_place(third_file):
    turn = load(third_file).conversations[0].turns[0]
    assert turn.text.startswith("I watched Alien at the Rex with my sister.")
    assert "2024-10-01 08:00" in turn.text and "Rex cinema" in turn.text


def test_first_agent_turn_session_pairs_map_to_step_ids(first_file):
    question = load(first_file).questions[0]
    # [0, 1] is turn 0 of session 1; [1, 0] is turn 1 of session 0.
    assert question.evidence == ("S1:0", "S0:1")
    assert question.evidence_sessions == (0, 1)


def test_first_agent_sessions_and_turn_text(first_file):
    conversation = load(first_file).conversations[0]
    assert conversation.id == "FirstAgent/aggregative/traveller/4"
    assert [[t.id for t in s.turns] for s in conversation.sessions] == [["S0:0", "S0:1"],
                                                                        ["S1:0", "S1:1"]]
    assert conversation.sessions[1].date == datetime(2024, 3, 4, 18, 0)
    text = conversation.sessions[1].turns[0].text
    assert "I booked the Fjord Hotel." in text and "Great choice." in text


def test_unresolved_targets_are_counted(tmp_path):
    path = broken(tmp_path, lambda t: t["QA"].update(target_step_id=[0, 7]))
    bench = load(path)
    assert bench.questions[0].evidence == ("m0",)
    assert bench.questions[0].unresolved_evidence == ("m7",)
    assert bench.warnings["target step names no message"] == 1


def test_directory_loads_every_qtype_file_of_both_variants(tmp_path, third_file, first_file):
    write(tmp_path / "MemData" / "ThirdAgent" / "noisy.json", THIRD_AGENT)
    bench = load(tmp_path / "MemData")
    assert bench.variant == "FirstAgent+ThirdAgent"
    assert bench.category_counts() == {"aggregative": 1, "noisy": 1, "simple": 1}
    assert len({c.id for c in bench.conversations}) == 3


def test_variant_option_selects_one_folder_of_memdata(tmp_path, third_file, first_file):
    bench = load(tmp_path / "MemData", variant="FirstAgent")
    assert bench.variant == "FirstAgent"
    assert [c.id for c in bench.conversations] == ["FirstAgent/aggregative/traveller/4"]


def test_directory_hash_is_the_hash_of_sorted_file_hashes(tmp_path, third_file, first_file):
    expected = hashlib.sha256("\n".join(sorted([sha256_of(third_file), sha256_of(first_file)]))
                              .encode()).hexdigest()
    assert load(tmp_path / "MemData").sha256 == expected


def test_single_file_hash_is_the_file_hash(third_file):
    assert load(third_file).sha256 == sha256_of(third_file)


def test_sniff_tells_the_two_schemas_apart():
    adapter = get_adapter("membench")
    assert adapter.sniff(THIRD_AGENT) == "ThirdAgent"
    assert adapter.sniff(FIRST_AGENT) == "FirstAgent"


def test_sniff_rejects_locomo_and_longmemeval_shapes():
    adapter = get_adapter("membench")
    assert adapter.sniff([{"sample_id": "conv-1", "conversation": {}, "qa": []}]) is None
    assert adapter.sniff([{"question_id": "q1", "haystack_sessions": []}]) is None


def test_schema_disagreeing_with_folder_name_is_an_error(tmp_path):
    path = write(tmp_path / "FirstAgent" / "simple.json", THIRD_AGENT)
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert str(path) in str(error.value)
    assert "ThirdAgent schema" in str(error.value) and "FirstAgent" in str(error.value)


def test_schema_disagreeing_with_variant_option_is_an_error(third_file):
    with pytest.raises(BenchmarkError, match="--variant"):
        load(third_file, variant="FirstAgent")


def test_wrong_field_type_names_file_record_and_field(tmp_path):
    path = broken(tmp_path, lambda t: t["QA"].update(question=5))
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert error.value.path == str(path)
    assert error.value.record == "movie_fan/0/0" and error.value.field == "question"
    assert "int where str is expected" in str(error.value)


def test_missing_qa_field_names_the_field(tmp_path):
    path = broken(tmp_path, lambda t: t["QA"].pop("target_step_id"))
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert (error.value.record, error.value.field) == ("movie_fan/0/0", "target_step_id")
    assert "missing" in str(error.value) and str(path) in str(error.value)


def test_ground_truth_outside_the_choices_is_an_error(tmp_path):
    path = broken(tmp_path, lambda t: t["QA"].update(ground_truth="E"))
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert error.value.field == "ground_truth" and "A, B, C, D" in str(error.value)


def test_duplicate_mid_is_an_error(tmp_path):
    path = broken(tmp_path, lambda t: t["message_list"][1].update(mid=0))
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert error.value.field == "mid" and error.value.record.startswith("movie_fan/0/")


def test_first_agent_session_that_is_not_a_list_is_an_error(tmp_path):
    payload = copy.deepcopy(FIRST_AGENT)
    payload["traveller"][0]["message_list"].append({"sid": 0})
    path = write(tmp_path / "FirstAgent" / "simple.json", payload)
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert error.value.record == "traveller/4/message_list[2]"
    assert error.value.field == "message_list"


def test_truncated_json_names_the_file(tmp_path):
    path = tmp_path / "ThirdAgent" / "simple.json"
    path.parent.mkdir()
    path.write_text(json.dumps(THIRD_AGENT)[:120])
    with pytest.raises(BenchmarkError) as error:
        load(path)
    assert str(path) in str(error.value) and "not valid JSON" in str(error.value)


def test_locomo_file_is_rejected_with_a_hint(tmp_path):
    import benchmarks.locomo  # noqa: F401  (so the hint can name it)

    locomo_like = [{"sample_id": "conv-1", "conversation": {"speaker_a": "A", "speaker_b": "B"},
                    "qa": [{"question": "Q?", "answer": "A", "evidence": [], "category": 4}]}]
    path = write(tmp_path / "locomo10.json", locomo_like)
    with pytest.raises(BenchmarkError) as error:
        load(path)
    message = str(error.value)
    assert str(path) in message and "not a MemBench" in message and "locomo" in message


def test_directory_without_qtype_files_is_an_error(tmp_path):
    (tmp_path / "MemData").mkdir()
    with pytest.raises(BenchmarkError, match="no MemBench"):
        load(tmp_path / "MemData")


def test_unknown_option_is_an_error(third_file):
    with pytest.raises(BenchmarkError, match="unknown --benchmark-option 'shuffle'"):
        load(third_file, shuffle=True)
