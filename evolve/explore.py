"""Exploration when progress stalls: Optuna TPE over the dimensions not yet tried, seeded and
replayed from the run store so that a resumed run samples exactly as an uninterrupted one."""
from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import optuna

from evolve.diagnosers.base import (Attempt, DiagnosisContext, Edit, Proposal,
                                    first_admissible)
from search_space.dimensions import DIMENSIONS
from search_space.optuna_space import distributions

optuna.logging.set_verbosity(logging.WARNING)


def untried_dimensions(history: list[Attempt], answerer: str) -> list[str]:
    tried = {e["field"] for a in history for e in json.loads(a.edit_json)}
    usable = [d.name for d in DIMENSIONS
              if d.name != "answerer" and (answerer == "llm" or not d.needs_llm)]
    fresh = [n for n in usable if n not in tried]
    return fresh or usable


def explore(context: DiagnosisContext, scores: dict[str, float]) -> list[Proposal]:
    """K proposals from TPE; past Optuna candidates of this run are told to the study first."""
    names = untried_dimensions(context.history, context.incumbent.answerer)
    dists = distributions(names, context.max_context_tokens)
    sampler = optuna.samplers.TPESampler(seed=context.seed * 1009 + context.round,
                                         n_startup_trials=5)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for attempt in context.history:
        if attempt.proposer != "optuna" or attempt.edit_json not in scores:
            continue
        params = {e["field"]: e["value"] for e in json.loads(attempt.edit_json)}
        if set(params) == set(dists) and all(dists[k]._contains(dists[k].to_internal_repr(v))
                                             for k, v in params.items()):
            study.add_trial(optuna.trial.create_trial(params=params, distributions=dists,
                                                      value=scores[attempt.edit_json]))

    def sampled() -> Iterator[Proposal]:
        # Read lazily: the study is asked only as often as proposals are still needed, which
        # keeps a resumed run's draws identical to an uninterrupted one's.
        for _ in range(context.n_proposals * 4):
            trial = study.ask(dists)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            edits = tuple(Edit(k, v) for k, v in sorted(trial.params.items()))
            yield Proposal(edits, f"TPE over untried dimensions {', '.join(names)}", "optuna")

    return first_admissible(context, sampled())
