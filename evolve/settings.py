"""What defines an evolution run, declared once: the `memevolve run` options (flags, defaults,
help, ranges) are generated from this model, and the run store keeps it for --resume."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


def _cli(help_text: str, *flags: str, **kw: Any) -> Any:
    """A field that `memevolve run` offers as an option (``flags`` default to --field-name)."""
    return Field(description=help_text, json_schema_extra={"cli": list(flags)}, **kw)


class EvolveSettings(BaseModel):
    """Everything that defines an evolution run; stored with the run so --resume needs nothing.

    Fields declared with ``_cli`` become `memevolve run` options; the others are filled by the
    command from options it declares itself (model names become litellm settings, --config
    and --preset become a start config)."""

    benchmark: str = _cli("locomo, longmemeval, membench or synthetic (embedded).",
                          "--benchmark", "-b", default="synthetic")
    data: str | None = None
    benchmark_options: dict[str, Any] = Field(default_factory=dict, description="Adapter "
                                              "options, e.g. synthetic conversations=3.")
    variant: str | None = _cli("Benchmark variant (LongMemEval: oracle, s, m; inferred).",
                               default=None)
    split: str = _cli("default, budgetmem, random, stratified or all.", default="default")
    split_seed: int = _cli("Seed of the split.", default=0)
    system: str | None = _cli("The memory system to tune: package.module:Class implementing "
                              "evolve.MemoryPipeline, importable here (e.g. with PYTHONPATH); "
                              "default: the built-in one.", default=None)
    preset: str | None = "weak"
    config_path: str | None = None
    diagnoser: str = _cli("rules (no LLM) or llm.", default="rules")
    diagnoser_model: dict[str, Any] | None = None
    objective: str = _cli("Metric to optimise: recall_in_context, recall_at_k, answer_f1 or "
                          "judge.", default="recall_in_context")
    max_context_tokens: int = _cli("Cap on the context budget.", "--max-context-tokens",
                                   default=1000, ge=100)
    candidates: int = _cli("Candidates evaluated in parallel per round.", default=4, ge=1,
                           le=32)
    max_rounds: int = _cli("Stop after this many rounds.", default=20, ge=1)
    explore_after: int = _cli("Explore with Optuna after N rounds without gain.", default=2,
                              ge=1)
    converge_after: int = _cli("Converge after M rounds without acceptance.", default=4, ge=1)
    max_evaluations: int | None = _cli("Budget of dev evaluations; an evaluation counts by "
                                         "the questions it scores, so screening a candidate "
                                         "on half of dev costs 0.5.", default=None, ge=1)
    max_tokens: int | None = _cli("Budget: LLM tokens.", default=None, ge=1)
    max_dollars: float | None = _cli("Budget: LLM dollars.", default=None, gt=0)
    max_wall_s: float | None = _cli("Budget: wall-clock seconds.", default=None, gt=0)
    confidence: float = _cli("Confidence of the guard: a gain is accepted at one-sided level "
                             "(1 - confidence) / 2 in a sign-flip test over conversations, "
                             "Holm-corrected over a round's candidates.", default=0.95, gt=0.5,
                             lt=1.0)
    min_effect: float = _cli("Smallest mean gain worth accepting.", default=0.005, ge=0.0)
    screen_fraction: float = _cli("Share of the dev conversations (seeded, new each round) a "
                                  "round's candidates are screened on before the best go to "
                                  "full dev and the guard; 0 or 1: no screening.", default=0.5,
                                  ge=0.0, le=1.0)
    promote: int = _cli("Candidates promoted from screening to full dev (a round with no more "
                        "candidates than this is not screened).", default=2, ge=1)
    seed: int = _cli("Seed of every random choice (bootstrap, Optuna).", default=0)
    workers: int | None = _cli("Ray workers (default: one per core; 0 = in this process).",
                               default=None, ge=0)
    answer_model: dict[str, Any] | None = None
    judge_model: dict[str, Any] | None = None
    oracle_gold_categories: bool = _cli(
        "ORACLE ablation: choose per-type overrides by the questions' gold categories instead "
        "of the predictor trained on dev. A deployed memory never knows them: never a result.",
        "--oracle-gold-categories", default=False)
    strict_llm: bool = _cli("Exit non-zero when every round of the LLM diagnoser fell back to "
                            "rules.", "--strict-llm", default=False)
