"""Budget tiers: memory modules offered as low/mid/high config patches over a base, and a cost model."""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmarks.errors import MemevolveError
from search_space.config import (ConfigError, RetrievalConfig, load_preset, preset_names,
                                 validate_values)
from search_space.dimensions import DIMENSIONS, DIMENSIONS_BY_NAME

DEFAULT_TIERS = Path(__file__).with_name("default.yaml")
TIER_NAMES = ("low", "mid", "high")
#: The module whose tiers may patch a dimension, by the dimension's group; a group not named
#: here (units, query, hierarchy, time, feedback, multihop, a retriever's own knobs) belongs
#: to retrieval, so a new operator or retriever is routable without an edit here.
GROUP_MODULES: dict[str, str] = {"fusion": "expansion", "selection": "expansion",
                                 "context": "expansion", "answer": "answering"}
#: Dimensions whose module is not their group's: how many units are kept is a retrieval depth.
FIELD_MODULES: dict[str, str] = {"top_k": "retrieval"}
MODULES = ("retrieval", "expansion", "answering")
#: The fields each module may patch: a field belongs to one module, so tier patches never clash.
MODULE_FIELDS: dict[str, tuple[str, ...]] = {
    module: tuple(d.name for d in DIMENSIONS
                  if FIELD_MODULES.get(d.name, GROUP_MODULES.get(d.group, "retrieval")) == module)
    for module in MODULES}
#: Measures of the cost model, as named in a tiers file's ``cost`` section.
COST_MEASURES = ("context_tokens", "llm_usd", "latency_ms")


class TiersError(MemevolveError):
    """A tiers file that does not describe a valid tier space: names the file, module, tier and
    field, and the fix."""


@dataclass(frozen=True)
class Module:
    """One memory module: a config patch per tier, low to high."""

    name: str
    patches: tuple[dict[str, Any], ...]

    @property
    def needs_llm(self) -> bool:
        return any(p.get("answerer") == "llm" for p in self.patches)


@dataclass(frozen=True)
class TierSpace:
    """The modules a router chooses tiers for, the fixed base config and the cost weights."""

    source: str
    base: RetrievalConfig
    modules: tuple[Module, ...]
    cost_weights: dict[str, float]
    #: litellm model of the LLM answering tiers (answerer: llm); part of the identity.
    answer_model: str | None = None

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules)

    @property
    def combos(self) -> list[tuple[int, ...]]:
        """Every tier combination, one tier index per module, all-low first."""
        return list(itertools.product(range(len(TIER_NAMES)), repeat=len(self.modules)))

    @property
    def tiers_hash(self) -> str:
        """Identity of the space: the same hash means the same configs and cost model."""
        body = {"base": self.base.config_hash,
                "modules": [[m.name, list(m.patches)] for m in self.modules],
                "cost": self.cost_weights, "answer_model": self.answer_model}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def combo_label(self, combo: tuple[int, ...]) -> str:
        """'LMH': one letter per module, in module order."""
        return "".join(TIER_NAMES[t][0].upper() for t in combo)

    def combo_from_label(self, label: str) -> tuple[int, ...]:
        letters = [n[0].upper() for n in TIER_NAMES]
        if len(label) != len(self.modules) or any(ch not in letters for ch in label):
            raise TiersError(f"'{label}' is not a tier combination of {self.source}. Fix: give "
                             f"one of L, M, H per module ({', '.join(self.module_names)}).")
        return tuple(letters.index(ch) for ch in label)

    @property
    def needs_llm(self) -> bool:
        return any(m.needs_llm for m in self.modules)

    def config(self, combo: tuple[int, ...]) -> RetrievalConfig:
        patch: dict[str, Any] = {}
        for module, tier in zip(self.modules, combo):
            patch.update(module.patches[tier])
        config = self.base.with_values(patch)
        if config.answerer != "llm":
            return config
        if self.answer_model is None:
            raise TiersError(f"{self.source}: combination {self.combo_label(combo)} answers with "
                             "an LLM but no answering model is given. Fix: pass --answer-model, "
                             "or route only modules without LLM tiers (--modules).")
        return config.model_copy(update={"answer_model": self.answer_model})

    def configs(self) -> list[RetrievalConfig]:
        return [self.config(c) for c in self.combos]

    def select(self, names: list[str]) -> "TierSpace":
        """Route only ``names``; every other module is fixed at its low tier (folded into base)."""
        unknown = [n for n in names if n not in self.module_names]
        if unknown:
            raise TiersError(f"{self.source}: no module {', '.join(map(repr, unknown))}. Fix: "
                             f"choose among {', '.join(self.module_names)}.")
        if not names:
            raise TiersError(f"{self.source}: no module left to route. Fix: name at least one "
                             f"of {', '.join(self.module_names)}.")
        fixed: dict[str, Any] = {}
        for module in self.modules:
            if module.name not in names:
                fixed.update(module.patches[0])
        return TierSpace(self.source, self.base.with_values(fixed),
                         tuple(m for m in self.modules if m.name in names), self.cost_weights,
                         self.answer_model)

    def with_answer_model(self, model: str | None) -> "TierSpace":
        return TierSpace(self.source, self.base, self.modules, self.cost_weights, model)

    def to_dict(self) -> dict[str, Any]:
        """A self-contained description (inline base) that ``tiers_from_dict`` reads back."""
        return {"base": self.base.model_dump(),
                "modules": {m.name: dict(zip(TIER_NAMES, m.patches)) for m in self.modules},
                "cost": dict(self.cost_weights), "answer_model": self.answer_model}


def load_tiers(path: str | Path = DEFAULT_TIERS) -> TierSpace:
    """Read and validate a tiers YAML file; every error names the file, module, tier and field."""
    path = Path(path)
    if not path.exists():
        raise TiersError(f"{path}: no such tiers file. Fix: pass --tiers with a YAML file like "
                         f"{DEFAULT_TIERS}.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TiersError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax.") from None
    return tiers_from_dict(data, str(path))


def tiers_from_dict(data: Any, source: str) -> TierSpace:
    if not isinstance(data, dict):
        raise TiersError(f"{source}: a tiers file must be a mapping. Fix: give it base, modules "
                         f"and cost sections, like {DEFAULT_TIERS}.")
    unknown = sorted(set(data) - {"base", "modules", "cost", "answer_model"})
    if unknown:
        raise TiersError(f"{source}: unknown section {', '.join(map(repr, unknown))}. Fix: use "
                         "base, modules, cost and answer_model only.")
    base = _base(data.get("base", "weak"), source)
    modules = data.get("modules")
    if not isinstance(modules, dict) or not modules:
        raise TiersError(f"{source}: 'modules' must map module names to their tiers. Fix: "
                         f"declare some of {', '.join(MODULE_FIELDS)}.")
    parsed = tuple(_module(name, tiers, source) for name, tiers in modules.items())
    return TierSpace(source, base, parsed, _cost_weights(data.get("cost") or {}, source),
                     data.get("answer_model"))


def _base(spec: Any, source: str) -> RetrievalConfig:
    if isinstance(spec, str):
        if spec not in preset_names():
            raise TiersError(f"{source}: base '{spec}' is not a preset. Fix: use one of "
                             f"{', '.join(preset_names())}, or an inline config mapping.")
        return load_preset(spec)
    if not isinstance(spec, dict):
        raise TiersError(f"{source}: 'base' must be a preset name or a config mapping. Fix: "
                         f"use one of {', '.join(preset_names())}, or inline config fields.")
    try:
        return RetrievalConfig.model_validate(spec)
    except ConfigError as exc:
        raise ConfigError(exc.problems, f"{source}: base") from None


def _module(name: Any, tiers: Any, source: str) -> Module:
    if name not in MODULE_FIELDS:
        raise TiersError(f"{source}: unknown module '{name}'. Fix: use one of "
                         f"{', '.join(MODULE_FIELDS)}.")
    where = f"{source}: module '{name}'"
    if not isinstance(tiers, dict) or sorted(tiers) != sorted(TIER_NAMES):
        found = ", ".join(map(str, tiers)) if isinstance(tiers, dict) else type(tiers).__name__
        raise TiersError(f"{where} must declare exactly the tiers {', '.join(TIER_NAMES)} "
                         f"(found {found}). Fix: declare all three, each a mapping of config fields "
                         "({} keeps the base).")
    patches = []
    for tier in TIER_NAMES:
        patch = tiers[tier] or {}
        if not isinstance(patch, dict):
            raise TiersError(f"{where}, tier '{tier}' must be a mapping of config fields. Fix: "
                             "write it as {field: value, ...}, or {} to keep the base.")
        problems = []
        for field in patch:
            if field not in DIMENSIONS_BY_NAME:
                problems.append(f"unknown field '{field}'")
            elif field not in MODULE_FIELDS[name]:
                owner = next(m for m, fields in MODULE_FIELDS.items() if field in fields)
                problems.append(f"field '{field}' belongs to module '{owner}'")
        if not problems:
            clean, problems = validate_values(patch)
        if problems:
            raise TiersError(f"{where}, tier '{tier}': {'; '.join(problems)}. Fix: use fields of "
                             f"this module ({', '.join(MODULE_FIELDS[name])}) with values "
                             "from 'memevolve space'.")
        patches.append(dict(sorted(clean.items())))
    return Module(str(name), tuple(patches))


def _cost_weights(spec: Any, source: str) -> dict[str, float]:
    if not isinstance(spec, dict):
        raise TiersError(f"{source}: 'cost' must map measures to weights. Fix: e.g. "
                         "cost: {context_tokens: 1.0}.")
    weights = {"context_tokens": 1.0, "llm_usd": 1.0, "latency_ms": 0.0}
    for measure, weight in spec.items():
        if measure not in COST_MEASURES:
            raise TiersError(f"{source}: unknown cost measure '{measure}'. Fix: use "
                             f"{', '.join(COST_MEASURES)}.")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise TiersError(f"{source}: cost weight of '{measure}' must be a number >= 0, "
                             f"got {weight!r}. Fix: give a non-negative number.")
        weights[measure] = float(weight)
    if not any(weights.values()):
        raise TiersError(f"{source}: every cost weight is 0, so nothing costs anything. Fix: "
                         "give context_tokens a positive weight.")
    return weights
