"""Bring your own memory system: a small third-party ranker (tinyrank) behind memevolve's
MemoryPipeline Protocol. Run from the repository root with PYTHONPATH=examples:

    PYTHONPATH=examples memevolve run --system byo_pipeline:TfidfPipeline
"""
from byo_pipeline.pipeline import TfidfPipeline

__all__ = ["TfidfPipeline"]
