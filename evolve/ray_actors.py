"""Ray actors: each owns a shard of conversations and keeps its indexes between configs."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import ray

from benchmarks import ShardLoad
from evolve.systems import Resources, SystemRunner, load_system, space_of, system_factory


#: Set (by `memevolve --verbose`) to let Ray's own start-up notices and worker logs through.
VERBOSE_ENV = "MEMEVOLVE_VERBOSE"


def start_ray(workers: int, address: str | None) -> None:
    """Join the cluster at ``address``, or start Ray locally with ``workers`` CPUs.

    Unless MEMEVOLVE_VERBOSE is set, what Ray's native code writes to this process's stderr
    (the token notice, core_worker warnings) goes to ``ray_log_path()`` instead of the user's
    screen or log file, and the workers' own output stays in Ray's session logs."""
    verbose = bool(os.environ.get(VERBOSE_ENV))
    if address:
        options: dict[str, Any] = {"address": address}
    else:
        # "local" starts a new instance: without it ray.init joins any cluster this machine
        # already runs (another memevolve's, a `ray start`) and refuses our num_cpus.
        options = {"address": "local", "num_cpus": max(workers, 1),
                   "include_dashboard": False, "configure_logging": False}
    if verbose:
        ray.init(log_to_driver=True, **options)
        return
    log = ray_log_path()
    # Made here, not only by _native_stderr_to, which leaves a replaced stderr (a test
    # harness's) alone and so would not create it.
    log.parent.mkdir(parents=True, exist_ok=True)
    _native_stderr_to(log)
    # Some start-up notices come through Python's stderr, not the native one.
    with open(log, "a") as out, contextlib.redirect_stderr(out):
        ray.init(log_to_driver=False, **options)


def ray_log_path() -> Path:
    from evolve.embeddings import default_cache_dir

    return default_cache_dir() / "logs" / "ray-native.log"


def _native_stderr_to(path: Path) -> None:
    """Point file descriptor 2 (where C++ writes) at ``path`` for the rest of the process, and
    Python's sys.stderr at a copy of the original, so our own errors still reach the user. A
    stderr replaced by a test harness or an embedding program is left alone."""
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return
    try:
        if sys.stderr.fileno() != 2:
            return
    except (AttributeError, OSError, ValueError):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    original = os.dup(2)
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    sys.stderr = sys.__stderr__ = os.fdopen(original, "w", buffering=1,
                                            encoding=sys.stderr.encoding, errors="replace")


# A dead worker is restarted and its in-flight task retried; indexes are rebuilt lazily.
@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=3)
class ShardActor:
    """One shard's memory system: the built-in one, or the pipeline the driver named (by its
    'module:Class' and the folder it was imported from, so this worker imports the same)."""

    def __init__(self, conversations: list | ShardLoad, questions: list | None, embedder: Any,
                 llm: Any, oracle_gold_categories: bool = False, system: str | None = None,
                 system_root: str | None = None) -> None:
        if isinstance(conversations, ShardLoad):
            # Sent how to load the shard, not its data: the actor reads its own haystacks.
            conversations, questions = conversations.load()
        cls = load_system(system, system_root)
        self.space = space_of(cls)
        resources = Resources(questions, embedder, llm,
                              oracle_gold_categories=oracle_gold_categories)
        self.system = system_factory(cls)(conversations, resources)
        self.runner = SystemRunner(self.system, conversations, questions, llm)

    # Each call brings the artefacts (question-type predictors) its config references: a
    # restarted actor has only its constructor's arguments, so nothing sent once would survive.
    def evaluate(self, artefacts: dict[str, dict[str, Any]], config_json: str,
                 question_ids: list[str]):
        self.runner.add_artefacts(artefacts)
        config = self.space.model_validate_json(config_json)
        return self.runner.evaluate(config, question_ids)

    def prepare(self, artefacts: dict[str, dict[str, Any]], config_json: str,
                conversation_ids: list[str]) -> dict[str, int]:
        self.runner.add_artefacts(artefacts)
        config = self.space.model_validate_json(config_json)
        return self.runner.prepare(config, conversation_ids)

    def apply(self, artefacts: dict[str, dict[str, Any]], work: Any, *args: Any) -> Any:
        self.runner.add_artefacts(artefacts)
        return work(self.system, *args)

    def embedding_counters(self) -> dict[str, int]:
        return self.runner.embedding_counters()

    def where(self) -> dict[str, Any]:
        import os

        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def pid(self) -> int:
        import os

        return os.getpid()
