"""The retrieval configuration: frozen, validated against the declared space, canonical and hashed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar, Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from benchmarks.errors import MemevolveError
from search_space.dimensions import DIMENSIONS, DIMENSIONS_BY_NAME, Dimension
from search_space.dimension import CONDITIONS

PRESET_DIR = Path(__file__).with_name("presets")
#: Fields of every config besides its space's dimensions (a dimension may not take these names).
META_FIELDS = ("overrides", "answer_model", "question_types", "provenance", "artefacts",
               "system")
#: ``question_types`` value that routes overrides on the questions' GOLD categories: an oracle
#: for ablations only, which evaluation refuses unless asked for by this very name.
ORACLE_GOLD_CATEGORIES = "oracle-gold-categories"


class ConfigError(MemevolveError):
    """A configuration outside the space; lists every bad field with its allowed domain."""

    def __init__(self, problems: list[str], source: str = "config", fix: str | None = None,
                 ) -> None:
        self.problems = problems
        self.fix = fix
        lines = "; ".join(problems)
        super().__init__(f"{source}: {lines}. Fix: " + (fix or "see 'memevolve space' (with "
                         "--system, your pipeline's) for every field's allowed values."))


def _python_type(dim: Dimension) -> Any:
    if dim.kind == "choice":
        return Literal[dim.choices]  # type: ignore[valid-type]
    return {"int": int, "float": float, "bool": bool, "set": str}[dim.kind]


def _normalise(dim: Dimension, value: Any) -> Any:
    value = dim.validate(value)
    # Rounded so that 0.1 + 0.2 and 0.3 hash alike.
    return round(value, 6) if dim.kind == "float" else value


def validate_values(values: dict[str, Any], *, where: str = "", per_category: bool = False,
                    space: dict[str, Dimension] | None = None,
                    ) -> tuple[dict[str, Any], list[str]]:
    """Check dimension values against ``space`` (name -> dimension; default: the built-in
    space); return the normalised values and one problem line per bad field."""
    space = DIMENSIONS_BY_NAME if space is None else space
    clean: dict[str, Any] = {}
    problems: list[str] = []
    for name, value in values.items():
        dim = space.get(name)
        label = f"{where}{name}"
        if dim is None:
            problems.append(f"unknown field '{label}'")
            continue
        if per_category and dim.scope != "per_category":
            problems.append(f"'{label}' is global and cannot be overridden per category")
            continue
        try:
            clean[name] = _normalise(dim, value)
        except ValueError as exc:
            problems.append(f"'{label}' {exc}")
    return clean, problems


class SpaceConfig(BaseModel):
    """A point of one search space: its dimensions' values, plus per-category overrides.

    Each space has its own subclass, built by ``config_class`` from the space's dimensions (the
    built-in one is ``RetrievalConfig``); everything below reads the space from the class."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The space's dimensions, in declaration order (set by ``config_class``).
    dimensions: ClassVar[tuple[Dimension, ...]] = ()
    dimensions_by_name: ClassVar[dict[str, Dimension]] = {}
    #: The memory system the space belongs to ('package.module:Class'); None: the built-in one.
    system_name: ClassVar[Optional[str]] = None

    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Predicted question type -> {per-category field: "
        "value}; the type comes from the question-type predictor named by question_types.")
    answer_model: Optional[str] = Field(default=None, description="litellm model of the LLM "
                                        "answerer (answerer=llm); part of the identity.")
    question_types: Optional[str] = Field(
        default=None, description="Content hash of the question-type predictor (an artefact "
        "trained on a dev split) whose predicted type selects the overrides; "
        f"'{ORACLE_GOLD_CATEGORIES}' routes on gold labels (oracle ablations only).")
    provenance: dict[str, Any] = Field(default_factory=dict, exclude=True,
                                       description="Where an exported config came from; not "
                                       "part of its identity.")
    artefacts: dict[str, dict[str, Any]] = Field(
        default_factory=dict, exclude=True, description="Learned parts an exported file carries "
        "(artefact hash -> body); the hashes, not the bodies, are part of the identity.")
    system: Optional[str] = Field(default=None, description="The memory system this config "
                                  "tunes ('package.module:Class'; absent: the built-in one); part "
                                  "of the identity, so two systems never share a stored outcome.")

    @model_validator(mode="before")
    @classmethod
    def _check_against_space(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ConfigError([f"a config must be a mapping, got {type(data).__name__}"])
        data = dict(data)
        system = data.setdefault("system", cls.system_name)
        if system != cls.system_name:
            theirs = f"memory system '{system}'" if system else "the built-in memory system"
            raise ConfigError([f"this config is for {theirs}, not for "
                               f"{cls.system_name or 'the built-in one'} (configs of two systems "
                               "never mix)"], fix=f"pass --system {system}." if system else
                              "drop --system, or pass a config of that system.")
        meta = {k: data.pop(k) for k in META_FIELDS if k in data}
        space = cls.dimensions_by_name
        values, problems = validate_values(data, space=space)
        overrides = meta.get("overrides") or {}
        clean_overrides: dict[str, dict[str, Any]] = {}
        if not isinstance(overrides, dict):
            problems.append("'overrides' must map a category to {field: value}")
            overrides = {}
        for category, fields in overrides.items():
            if not isinstance(fields, dict):
                problems.append(f"'overrides.{category}' must be a mapping of fields")
                continue
            clean, bad = validate_values(fields, where=f"overrides.{category}.", per_category=True,
                                         space=space)
            problems.extend(bad)
            if clean:
                clean_overrides[str(category)] = dict(sorted(clean.items()))
        question_types = meta.get("question_types")
        if question_types is not None and not isinstance(question_types, str):
            problems.append("'question_types' must be a predictor's artefact hash (a string)")
        if problems:
            raise ConfigError(problems)
        return {**values, **meta, "overrides": dict(sorted(clean_overrides.items()))}

    # Identity -----------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What the hash covers: the dump, without ``system`` for the built-in system (so that
        its hashes are the ones every store already holds)."""
        body = self.model_dump()
        if body["system"] is None:
            del body["system"]
        # The dimensions first, as a person reads an exported file.
        return {**{d.name: body.pop(d.name) for d in self.dimensions}, **body}

    def canonical_json(self) -> str:
        return json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    # Reading ------------------------------------------------------------------------------
    def for_type(self, question_type: str | None) -> "SpaceConfig":
        """The effective settings for one (predicted) question type, overrides applied."""
        patch = self.overrides.get(question_type) if question_type is not None else None
        if not patch:
            return self
        return self.model_copy(update={**patch, "overrides": {}})

    @property
    def routes_on_gold(self) -> bool:
        return self.question_types == ORACLE_GOLD_CATEGORIES

    def value(self, name: str, category: str | None = None) -> Any:
        if category is not None and name in self.overrides.get(category, {}):
            return self.overrides[category][name]
        return getattr(self, name)

    def is_active(self, name: str) -> bool:
        """Whether dimension ``name`` can change an outcome of this config: its ``active_when``
        holds globally or for a question type's override."""
        dim = self.dimensions_by_name[name]
        if dim.active_when is None:
            return True
        other = dim.active_when[0]
        values = [getattr(self, other)] + [patch[other] for patch in self.overrides.values()
                                           if other in patch]
        return any(dim.holds_for(value) for value in values)

    def choices(self, name: str) -> tuple[Any, ...]:
        """A choice dimension's domain in this config's space (the model lists vary by user)."""
        return self.dimensions_by_name[name].choices

    def dimension_values(self) -> dict[str, Any]:
        return {d.name: getattr(self, d.name) for d in self.dimensions}

    # Editing ------------------------------------------------------------------------------
    def with_values(self, values: dict[str, Any], category: str | None = None) -> "SpaceConfig":
        """A new, validated config with ``values`` set globally or for one category."""
        data = self.model_dump()
        data["provenance"] = {}
        if category is None:
            data.update(values)
        else:
            data["overrides"] = {k: dict(v) for k, v in data["overrides"].items()}
            data["overrides"].setdefault(category, {}).update(values)
        # An edited config keeps the learned parts it carries (they are not in the dump).
        return type(self).model_validate(data).model_copy(
            update={"artefacts": self.artefacts})

    def differences(self, other: "SpaceConfig") -> dict[str, tuple[Any, Any]]:
        """Field -> (self value, other value) for every field that differs (overrides as
        'overrides.<category>.<field>')."""
        out: dict[str, tuple[Any, Any]] = {}
        for name in self.dimensions_by_name:
            if getattr(self, name) != getattr(other, name):
                out[name] = (getattr(self, name), getattr(other, name))
        for category in sorted(set(self.overrides) | set(other.overrides)):
            mine, theirs = self.overrides.get(category, {}), other.overrides.get(category, {})
            for name in sorted(set(mine) | set(theirs)):
                if mine.get(name) != theirs.get(name):
                    out[f"overrides.{category}.{name}"] = (mine.get(name), theirs.get(name))
        for name in ("answer_model", "question_types"):
            if getattr(self, name) != getattr(other, name):
                out[name] = (getattr(self, name), getattr(other, name))
        return out

    # Files --------------------------------------------------------------------------------
    def to_yaml(self) -> str:
        body = self.identity()
        if self.provenance:
            body["provenance"] = self.provenance
        if self.artefacts:
            body["artefacts"] = self.artefacts
        return yaml.safe_dump(body, sort_keys=False)


_CLASSES: dict[tuple[tuple[Dimension, ...], Optional[str]], type[SpaceConfig]] = {}


def config_class(dimensions: Sequence[Dimension], system: str | None = None,
                 name: str = "Config") -> type[SpaceConfig]:
    """The config class of a space: one field per dimension (type, default, description from
    the Dimension), validated against the space. One class per (dimensions, system)."""
    key = (tuple(dimensions), system)
    if key not in _CLASSES:
        names = {d.name for d in key[0]}
        for d in key[0]:
            if d.active_when is not None and (d.active_when[0] not in names
                                              or d.active_when[1] not in CONDITIONS):
                raise ValueError(f"dimension {d.name!r}: active_when {d.active_when!r} must name "
                                 f"a dimension of the space and one of {', '.join(CONDITIONS)}")
        cls = create_model(  # type: ignore[call-overload]
            name, __base__=SpaceConfig, __module__=__name__,
            system=(Optional[str], Field(
                default=system, description=SpaceConfig.model_fields["system"].description)),
            **{d.name: (_python_type(d), Field(default=d.default, description=d.description))
               for d in key[0]})
        cls.dimensions = key[0]
        cls.dimensions_by_name = {d.name: d for d in key[0]}
        cls.system_name = system
        _CLASSES[key] = cls
    return _CLASSES[key]


#: Every tunable knob of the built-in memory system, plus per-category overrides.
RetrievalConfig = config_class(DIMENSIONS, None, "RetrievalConfig")


def load_config(path: str | Path, space: type[SpaceConfig] | None = None) -> SpaceConfig:
    """Read a YAML or JSON config file, with errors that name the file and each bad field."""
    path = Path(path)
    if not path.exists():
        raise MemevolveError(f"{path}: no such config file. Fix: pass a YAML file written by "
                             "'memevolve export' or use --preset weak|strong.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise MemevolveError(f"{path}: not valid YAML ({exc}). Fix: correct the syntax.") from None
    if data is None:
        # An empty file is almost always a mistake (a failed export, the wrong path): running
        # every default silently would hide it.
        raise MemevolveError(f"{path}: the config file is empty. Fix: set at least one field "
                             "(see 'memevolve space'), or use --preset weak|strong.")
    if not isinstance(data, dict):
        raise ConfigError([f"the file holds a {type(data).__name__}, not a mapping"], str(path))
    provenance = data.get("provenance") or {}
    artefacts = data.get("artefacts") or {}
    try:
        config = (space or RetrievalConfig).model_validate(data)
    except ConfigError as exc:
        raise ConfigError(exc.problems, str(path), exc.fix) from None
    if not isinstance(artefacts, dict):
        raise ConfigError(["'artefacts' must map an artefact hash to its body"], str(path))
    from search_space.artefacts import artefact_hash

    for key, body in artefacts.items():
        if not isinstance(body, dict) or artefact_hash(body) != key:
            raise ConfigError([f"artefact '{key}' does not match its content hash (edited or "
                               "truncated); re-export the config with 'memevolve export'"],
                              str(path))
    return config.model_copy(update={"provenance": provenance, "artefacts": artefacts})


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> RetrievalConfig:
    path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise MemevolveError(f"unknown preset '{name}'. Fix: use one of "
                             f"{', '.join(preset_names())}.")
    return load_config(path)
