"""Ray actors: each owns a shard of conversations and keeps its indexes between configs."""
from __future__ import annotations

from typing import Any

import ray

from evolve.memory.system import MemorySystem
from search_space.config import RetrievalConfig


# A dead worker is restarted and its in-flight task retried; indexes are rebuilt lazily.
@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=3)
class ShardActor:
    def __init__(self, conversations: list, questions: list, embedder: Any, llm: Any,
                 oracle_gold_categories: bool = False) -> None:
        self.system = MemorySystem(conversations, questions, embedder, llm,
                                   oracle_gold_categories=oracle_gold_categories)

    def add_artefacts(self, artefacts: dict[str, dict[str, Any]]) -> None:
        self.system.add_artefacts(artefacts)

    def evaluate(self, config_json: str, question_ids: list[str]):
        config = RetrievalConfig.model_validate_json(config_json)
        return self.system.evaluate(config, question_ids)

    def embedding_counters(self) -> dict[str, int]:
        return self.system.embedding_counters()

    def pid(self) -> int:
        import os

        return os.getpid()
