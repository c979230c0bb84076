"""Splits are by conversation, named, seeded and reproducible."""
from __future__ import annotations

import pytest

from benchmarks.errors import MemevolveError
from benchmarks.splits import make_split


def test_locomo_default_is_budgetmem(locomo):
    split = make_split(locomo)
    assert split.name == "budgetmem"
    assert split.dev == tuple(c.id for c in locomo.conversations[:8])
    assert split.test == tuple(c.id for c in locomo.conversations[8:])


def test_no_conversation_straddles_dev_and_test(locomo):
    split = make_split(locomo, "random", seed=3)
    dev_convs = {q.conversation_id for q in split.questions(locomo, "dev")}
    test_convs = {q.conversation_id for q in split.questions(locomo, "test")}
    assert dev_convs and test_convs and not dev_convs & test_convs


def test_random_split_is_seeded(locomo):
    assert make_split(locomo, "random", seed=1) == make_split(locomo, "random", seed=1)
    assert {make_split(locomo, "random", seed=s).test for s in range(6)}.__len__() > 1


def test_longmemeval_split_is_stratified_by_type(longmemeval):
    split = make_split(longmemeval, seed=0)
    test = split.questions(longmemeval, "test")
    by_type = {}
    for q in test:
        by_type[q.category] = by_type.get(q.category, 0) + 1
    totals = longmemeval.category_counts()
    assert split.name == "stratified"
    assert all(abs(by_type[c] - 0.2 * n) <= 1 for c, n in totals.items())


def test_budgetmem_needs_locomo(longmemeval):
    with pytest.raises(MemevolveError, match="LoCoMo"):
        make_split(longmemeval, "budgetmem")


@pytest.mark.parametrize("name", ["default", "stratified", "random", "all"])
def test_a_split_of_the_questions_alone_is_the_split_of_the_whole_benchmark(longmemeval_path,
                                                                          name):
    """A driver whose actors load the haystacks splits the questions-only benchmark."""
    from benchmarks import BenchmarkSource

    for source in (BenchmarkSource("longmemeval", str(longmemeval_path)),
                   BenchmarkSource("synthetic", options=(("shape", "longmemeval"),
                                                         ("questions", 40), ("sessions", 4)))):
        assert source.loads_part
        whole, questions_only = source.load(), source.load(keep=())
        assert not questions_only.conversations
        assert make_split(questions_only, name, seed=3) == make_split(whole, name, seed=3)
