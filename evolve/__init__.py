"""memevolve engine: CLI, evolution loop, evaluation on Ray, diagnosers, memory system, run store."""
from __future__ import annotations

import os

# litellm otherwise fetches its price list from the network at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

#: Public names, imported on first use so that `import evolve` (and the CLI) stays light.
_PUBLIC = {
    "Memory": "evolve.api",
    "RetrievedContext": "evolve.memory.system",
    "ContextUnit": "evolve.memory.system",
    "EmbedderSpec": "evolve.memory.system",
    "LLMSpec": "evolve.memory.system",
    "RetrievalConfig": "search_space.config",
    "SpaceConfig": "search_space.config",
    "MemoryPipeline": "evolve.systems",
    "Retrieval": "evolve.systems",
    "Resources": "evolve.systems",
    "Unit": "evolve.systems",
    "Dimension": "search_space.dimensions",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'evolve' has no attribute {name!r}")
