"""Named, seeded dev/test splits by conversation (one conversation's questions never straddle)."""
from __future__ import annotations

import random
from collections import defaultdict

from pydantic import BaseModel, ConfigDict

from benchmarks.errors import MemevolveError
from benchmarks.model import Benchmark, Question

SPLIT_NAMES = ("default", "budgetmem", "random", "stratified", "all")


class Split(BaseModel):
    """Which conversations are dev (tuned on) and which are test (reported once)."""

    model_config = ConfigDict(frozen=True)

    name: str
    seed: int
    benchmark_key: str
    dev: tuple[str, ...]
    test: tuple[str, ...]

    def questions(self, benchmark: Benchmark, part: str) -> list[Question]:
        if part not in ("dev", "test", "all"):
            raise MemevolveError(f"unknown split part '{part}'. Fix: use dev, test or all.")
        wanted = set(self.dev if part == "dev" else self.test if part == "test"
                     else self.dev + self.test)
        return [q for q in benchmark.questions if q.conversation_id in wanted]


def make_split(benchmark: Benchmark, name: str = "default", *, seed: int = 0,
               test_fraction: float = 0.2) -> Split:
    """Build split ``name``; 'default' is budgetmem on LoCoMo, stratified on LongMemEval."""
    if name not in SPLIT_NAMES:
        raise MemevolveError(f"unknown split '{name}'. Fix: use one of {', '.join(SPLIT_NAMES)}.")
    if not 0.0 < test_fraction < 1.0:
        raise MemevolveError(f"test fraction {test_fraction} is outside (0, 1). "
                             "Fix: pass a fraction such as 0.2.")
    if name == "default":
        name = {"locomo": "budgetmem", "longmemeval": "stratified"}.get(benchmark.name, "random")
    ids = benchmark.conversation_ids()
    if name == "all":
        dev, test = ids, []
    elif name == "budgetmem":
        if benchmark.name != "locomo" or len(ids) != 10:
            raise MemevolveError("the 'budgetmem' split (conversations 0-7 dev, 8-9 test) is "
                                 "defined for the 10 LoCoMo conversations only. "
                                 "Fix: use --split random or stratified.")
        dev, test = ids[:8], ids[8:]
    elif name == "random":
        dev, test = _random_split(ids, seed, test_fraction)
    else:
        dev, test = _stratified_split(benchmark, seed, test_fraction)
    return Split(name=name, seed=seed, benchmark_key=benchmark.key, dev=tuple(dev),
                 test=tuple(test))


def _random_split(ids: list[str], seed: int, test_fraction: float) -> tuple[list[str], list[str]]:
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    n_test = max(1, round(len(ids) * test_fraction)) if len(ids) > 1 else 0
    test = set(shuffled[:n_test])
    return [i for i in ids if i not in test], [i for i in ids if i in test]


def _stratified_split(benchmark: Benchmark, seed: int,
                      test_fraction: float) -> tuple[list[str], list[str]]:
    """Per category of a conversation's first question, the same share goes to test."""
    by_category: dict[str, list[str]] = defaultdict(list)
    first_category: dict[str, str] = {}
    for q in benchmark.questions:
        first_category.setdefault(q.conversation_id, q.category)
    # conversation_ids(): a driver whose actors load the haystacks has the questions only.
    ids = benchmark.conversation_ids()
    for conversation_id in ids:
        by_category[first_category.get(conversation_id, "")].append(conversation_id)
    rng = random.Random(seed)
    test: set[str] = set()
    for category in sorted(by_category):
        members = sorted(by_category[category])
        rng.shuffle(members)
        test.update(members[:round(len(members) * test_fraction)])
    return [i for i in ids if i not in test], [i for i in ids if i in test]
