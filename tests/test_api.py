"""evolve.Memory: the tuned memory as a library, served by the evaluation's own retrieval path."""
from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks import load_benchmark
from benchmarks.errors import MemevolveError
from benchmarks.splits import make_split
from evolve import Memory, RetrievedContext
from evolve.evaluation import Evaluator, evaluate_configs
from evolve.store import RunStore
from search_space.config import load_preset

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "strong": load_preset("strong"),
    # Windows change at the end of a session when it grows: the incremental update must
    # rebuild exactly those.
    "windows": load_preset("strong").with_values({"unit": "window", "window_size": 2,
                                                  "neighbor_expansion": 1,
                                                  "packing_order": "chronological"}),
    # Session-level scores, passages and span packing read more unit sets than one.
    "operators": load_preset("strong").with_values({"session_weight": 0.4, "session_top": 2,
                                                    "passage_tokens": 12, "span_packing": True,
                                                    "session_headers": True}),
}


def _add_session_by_session(memory: Memory, conversation) -> None:
    """Each session added on its own, half a session at a time, searched in between, so every
    index is updated many times instead of being built once over the whole conversation."""
    for session in conversation.sessions:
        half = len(session.turns) // 2 or 1
        for part in (session.turns[:half], session.turns[half:]):
            if part:
                memory.add(conversation.id, part, date=session.date, session=session.index)
                memory.search("what happened?", conversation=conversation.id)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_search_returns_the_context_the_evaluation_stored(tmp_path):
    bench = load_benchmark("synthetic", conversations=3, sessions=4, questions=15)
    ids = [q.id for q in make_split(bench, "all").questions(bench, "all")]
    with RunStore(tmp_path / "m.duckdb") as store:
        store.create_run("parity", "eval", bench, make_split(bench, "all"), {})
        with Evaluator(bench, workers=2) as evaluator:
            results = evaluate_configs(evaluator, list(CONFIGS.values()), ids, part="all",
                                       objective="recall_in_context", store=store,
                                       run_id="parity")
        stored = {name: {r["question_id"]: r for r in
                         store.evaluation_results(result.evaluation_id)}
                  for name, result in zip(CONFIGS, results)}
    for name, config in CONFIGS.items():
        memory = Memory.from_config(config)
        for conversation in bench.conversations:
            _add_session_by_session(memory, conversation)
        for question in bench.questions:
            row = stored[name][question.id]
            context = memory.search(question.text, question.question_date,
                                    conversation=question.conversation_id)
            assert context.ids == row["context_ids"], (name, question.id)
            assert context.ranked_ids == row["retrieved_ids"], (name, question.id)
            assert context.tokens == row["context_tokens"]
            assert memory.answer(question.text, question.question_date,
                                 conversation=question.conversation_id) == row["answer"]


def test_a_search_returns_units_with_ids_text_scores_dates_and_tokens():
    memory = Memory.from_config(load_preset("weak"))
    memory.add("ab", [("Alice", "I adopted a cat named Miso."), ("Bob", "I went to Utah.")],
               date="2023-05-08")
    memory.add("ab", [("Alice", "Miso broke a vase today.")], date="2023-06-01")
    context = memory.search("What is the name of Alice's cat?")
    assert isinstance(context, RetrievedContext)
    assert context.ids[0] in {"D1:1", "D2:1"}
    best = context.units[0]
    assert best.score is not None and best.score > 0 and best.date.year == 2023
    assert best.text.endswith(best.text.split(": ", 1)[1]) and best.tokens > 0
    assert context.tokens == sum(u.tokens for u in context.units)
    assert context.text.splitlines() == [u.text for u in context.units]


def test_the_same_question_in_two_conversations_and_after_new_turns_ranks_anew():
    # The kept rankings (by ranking setting) must neither serve one conversation's ranking to
    # another nor outlive the turns they ranked.
    memory = Memory.from_config(load_preset("weak"))
    memory.add("ab", [("Alice", "I adopted a cat named Miso."), ("Bob", "I went to Utah.")],
               date="2023-05-08")
    memory.add("cd", [("Carl", "My dog is called Rex."), ("Dana", "Nice, a dog!")],
               date="2023-05-08")
    question = "What is the name of the pet?"
    first = memory.search(question, conversation="ab")
    assert all(u.speaker in {"Alice", "Bob"} for u in first.units)
    assert {u.speaker for u in memory.search(question, conversation="cd").units} \
        <= {"Carl", "Dana"}
    memory.add("ab", [("Alice", "The pet I have now is a parrot, its name is Kiwi.")],
               date="2023-06-01")
    again = memory.search(question, conversation="ab")
    assert "D2:1" in again.ids and "D2:1" not in first.ids


def test_bad_additions_get_clear_errors():
    memory = Memory.from_config(load_preset("weak"))
    memory.add("ab", [("Alice", "hello")], date="2023-05-08")
    memory.add("ab", [("Bob", "later")], date="2023-05-09")
    with pytest.raises(MemevolveError, match="session 1 is before its last session 2"):
        memory.add("ab", [("Alice", "late")], session=1)
    with pytest.raises(MemevolveError, match="not an ISO date"):
        memory.add("ab", [("Alice", "x")], date="next tuesday")
    with pytest.raises(MemevolveError, match="lacks speaker"):
        memory.add("ab", [{"text": "who said this"}])
    memory.add("cd", [("Carl", "hi")])
    with pytest.raises(MemevolveError, match="holds 2 conversations. Fix: pass conversation="):
        memory.search("who?")


def test_a_saved_memory_reopens_with_the_same_results_from_the_embedding_cache(tmp_path):
    memory = Memory.from_config(load_preset("strong"), path=tmp_path / "mem")
    memory.add("ab", [("Alice", "I adopted a cat named Miso."), ("Bob", "I went to Utah.")],
               date="2023-05-08")
    memory.add("ab", [("Bob", "My sister visits in June.")], date="2023-05-20")
    before = memory.search("When does Bob's sister visit?")
    reopened = Memory.open(tmp_path / "mem")
    after = reopened.search("When does Bob's sister visit?")
    assert after.ids == before.ids and after.text == before.text
    assert reopened.config == memory.config
    # Every vector came from the shared cache: nothing was embedded again.
    assert reopened._system.embedding_counters()["misses"] == 0


def test_opening_a_missing_memory_says_how_to_create_one(tmp_path):
    with pytest.raises(MemevolveError, match="no saved memory there. Fix: create one"):
        Memory.open(tmp_path / "nothing")


WRITER = """
import sys
from evolve import Memory
from search_space.config import load_preset
memory = Memory.from_config(load_preset("weak"), path=sys.argv[1])
memory.add("ab", [("Alice", "turn 0 about cats")], date="2023-01-01")
print("ready", flush=True)
for i in range(1, 60):
    memory.add("ab", [("Bob" if i % 2 else "Alice", f"turn {i} about cats and dogs")])
"""


@pytest.mark.timeout(200)
def test_readers_open_and_search_a_memory_while_another_process_adds(tmp_path):
    path = tmp_path / "shared"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        sizes = []
        while writer.poll() is None:
            memory = Memory.open(path)
            sizes.append(len(memory.conversation("ab").turns))
            assert memory.search("cats").ids
    finally:
        _, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert sizes and sizes == sorted(sizes)
    assert len(Memory.open(path).conversation("ab").turns) == 60


def test_threads_search_one_memory_while_it_grows():
    memory = Memory.from_config(load_preset("weak"))
    memory.add("ab", [("Alice", "seed turn about gardening")])
    failures: list[BaseException] = []

    def search() -> None:
        try:
            for _ in range(40):
                assert memory.search("gardening").ids
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    readers = [threading.Thread(target=search) for _ in range(4)]
    for thread in readers:
        thread.start()
    for i in range(40):
        memory.add("ab", [("Bob", f"gardening note {i}")])
    for thread in readers:
        thread.join()
    assert not failures
    assert len(memory.conversation("ab").turns) == 41


def test_the_readme_example_runs(tmp_path, monkeypatch):
    text = (REPO / "README.md").read_text()
    code = re.search(r"<!-- api-example:begin -->\n```python\n(.*?)```\n<!-- api-example:end -->",
                     text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tuned.yaml").write_text(load_preset("strong").to_yaml())
    exec(compile(code, "README.md", "exec"), {})
    assert Memory.open(tmp_path / "agent-memory").conversations == ["alice-bob"]
