"""Benchmarks: adapters into one data model, splits, scorers, dataset fetch and verify."""
from __future__ import annotations

from benchmarks import locomo, longmemeval, membench, synthetic  # noqa: F401  (registers)
from benchmarks._registry import (BenchmarkSource, ShardLoad, adapter_names, detect,
                                  get_adapter, load_benchmark, parse_options)
from benchmarks.errors import BenchmarkError, MemevolveError
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn

__all__ = [
    "Benchmark", "BenchmarkError", "BenchmarkSource", "Conversation", "MemevolveError",
    "Question", "Session", "ShardLoad", "Turn", "adapter_names", "detect", "get_adapter",
    "load_benchmark", "parse_options",
]
