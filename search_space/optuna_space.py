"""The mapping of search-space dimensions to Optuna distributions."""
from __future__ import annotations

from typing import Any

import optuna

from search_space.dimensions import DIMENSIONS_BY_NAME, Dimension


def distribution(dim: Dimension, max_context_tokens: int | None = None,
                 ) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of a dimension; the context budget is capped by the token cap."""
    if dim.kind in ("bool", "choice", "set"):
        choices = {"bool": (False, True), "set": dim.subsets()}.get(dim.kind, dim.choices)
        return optuna.distributions.CategoricalDistribution(choices)
    high = dim.high
    if dim.name == "context_budget" and max_context_tokens is not None:
        high = min(high, max_context_tokens)
    if dim.kind == "int":
        return optuna.distributions.IntDistribution(int(dim.low), int(high), log=dim.log)
    return optuna.distributions.FloatDistribution(dim.low, high, log=dim.log)


def distributions(names: list[str], max_context_tokens: int | None = None,
                  space: dict[str, Dimension] | None = None,
                  ) -> dict[str, optuna.distributions.BaseDistribution]:
    """The distributions of ``names`` in ``space`` (name -> dimension; default: built-in)."""
    space = DIMENSIONS_BY_NAME if space is None else space
    return {n: distribution(space[n], max_context_tokens) for n in names}


def params_from_values(values: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {n: values[n] for n in names}
