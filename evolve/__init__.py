"""memevolve engine: CLI, evolution loop, evaluation on Ray, diagnosers, memory system, run store."""
from __future__ import annotations

import os

# litellm otherwise fetches its price list from the network at import time.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"
