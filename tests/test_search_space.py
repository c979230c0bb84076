"""The retrieval config: validation against the declared space, identity, editing, files, Optuna."""
from __future__ import annotations

import json
import re

import pytest

from benchmarks.errors import MemevolveError
from search_space.config import (
    ConfigError,
    RetrievalConfig,
    load_config,
    load_preset,
    preset_names,
)
from search_space.dimensions import DIMENSIONS, DIMENSIONS_BY_NAME
from search_space.optuna_space import distribution, distributions

# --- validation ----------------------------------------------------------------------------------


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        RetrievalConfig.model_validate(data)
    return caught.value.problems


def test_defaults_are_the_declared_dimension_defaults():
    assert RetrievalConfig().dimension_values() == {d.name: d.default for d in DIMENSIONS}


def test_unknown_field_is_rejected_by_name():
    assert _problems({"top_kk": 5}) == ["unknown field 'top_kk'"]


def test_out_of_range_value_names_the_range():
    assert _problems({"top_k": 0}) == ["'top_k' must be between 1 and 50, got 0"]


def test_wrong_choice_lists_the_choices():
    assert _problems({"unit": "paragraph"}) == \
        ["'unit' must be one of turn, window, turn+summary, got 'paragraph'"]


def test_retrievers_is_a_set_of_the_registered_retrievers_in_one_spelling():
    from evolve.memory.retrievers import RETRIEVERS

    assert DIMENSIONS_BY_NAME["retrievers"].choices == tuple(RETRIEVERS)
    # Old config files wrote the members joined by '+'; any order or a list means the same set.
    assert RetrievalConfig(retrievers="bm25+dense").retrievers == "bm25+dense"
    assert RetrievalConfig(retrievers="dense+bm25").retrievers == "bm25+dense"
    assert RetrievalConfig(retrievers=["structured", "bm25"]).retrievers == "bm25+structured"
    assert RetrievalConfig(retrievers="dense+bm25").config_hash == \
        RetrievalConfig(retrievers="bm25+dense").config_hash


def test_a_retriever_set_with_an_unknown_member_lists_the_registered_ones():
    (problem,) = _problems({"retrievers": "bm25+splade"})
    assert problem.startswith("'retrievers' must be a non-empty set of bm25, dense, structured")


def test_every_retriever_set_is_an_optuna_choice():
    sets = distribution(DIMENSIONS_BY_NAME["retrievers"]).choices
    assert len(sets) == 2 ** len(DIMENSIONS_BY_NAME["retrievers"].choices) - 1
    assert "bm25" in sets and "bm25+dense+structured" in sets


def test_string_for_a_bool_is_rejected():
    assert _problems({"bm25_stemming": "yes"}) == \
        ["'bm25_stemming' must be true or false, got 'yes'"]


def test_string_for_a_number_is_rejected():
    assert _problems({"bm25_k1": "high"}) == ["'bm25_k1' must be a number, got 'high'"]


def test_bool_for_a_number_is_rejected():
    assert _problems({"top_k": True}) == ["'top_k' must be a number, got True"]


def test_fraction_for_a_whole_number_is_rejected():
    assert _problems({"top_k": 2.5}) == ["'top_k' must be a whole number, got 2.5"]


def test_global_field_cannot_be_overridden_per_category():
    assert _problems({"overrides": {"5": {"unit": "window"}}}) == \
        ["'overrides.5.unit' is global and cannot be overridden per category"]


def test_override_values_are_validated_with_their_path():
    assert _problems({"overrides": {"2": {"top_k": 99}}}) == \
        ["'overrides.2.top_k' must be between 1 and 50, got 99"]


def test_overrides_must_be_mappings():
    assert _problems({"overrides": {"2": 5}}) == ["'overrides.2' must be a mapping of fields"]


def test_every_bad_field_is_listed_in_one_error_with_its_domain():
    with pytest.raises(ConfigError) as caught:
        RetrievalConfig.model_validate({"top_k": 0, "fusion": "max", "mystery": 1,
                                        "bm25_b": 2.0, "overrides": {"5": {"unit": "window"}}})
    message = str(caught.value)
    assert len(caught.value.problems) == 5
    for fragment in ("'top_k' must be between 1 and 50", "'fusion' must be one of weighted, rrf",
                     "unknown field 'mystery'", "'bm25_b' must be between 0 and 1",
                     "'overrides.5.unit' is global", "Fix: see 'memevolve space'"):
        assert fragment in message


def test_config_error_is_a_user_error():
    assert issubclass(ConfigError, MemevolveError)


# --- identity ------------------------------------------------------------------------------------


def test_canonical_json_ignores_key_order():
    forward = RetrievalConfig.model_validate(
        {"top_k": 7, "unit": "window", "overrides": {"1": {"top_k": 3, "mmr_lambda": 0.5},
                                                     "5": {"top_k": 2}}})
    backward = RetrievalConfig.model_validate(
        {"overrides": {"5": {"top_k": 2}, "1": {"mmr_lambda": 0.5, "top_k": 3}},
         "unit": "window", "top_k": 7})
    assert forward.canonical_json() == backward.canonical_json()
    assert forward.config_hash == backward.config_hash


def test_hash_ignores_float_noise():
    noisy = RetrievalConfig(dense_weight=0.1 + 0.2)
    assert noisy.dense_weight == 0.3
    assert noisy.config_hash == RetrievalConfig(dense_weight=0.3).config_hash


def test_whole_float_for_an_int_hashes_like_the_int():
    assert RetrievalConfig(top_k=5.0).config_hash == RetrievalConfig(top_k=5).config_hash


def test_hash_changes_with_any_value():
    assert RetrievalConfig(top_k=6).config_hash != RetrievalConfig().config_hash


def test_hash_changes_with_an_override():
    overridden = RetrievalConfig().with_values({"top_k": 6}, category="5")
    assert overridden.config_hash != RetrievalConfig().config_hash


def test_answer_model_is_part_of_the_identity():
    assert RetrievalConfig(answer_model="openai/gpt-4o-mini").config_hash != \
        RetrievalConfig().config_hash


def test_provenance_is_not_part_of_the_identity():
    traced = RetrievalConfig(provenance={"run": "r1", "round": 3})
    assert traced.config_hash == RetrievalConfig().config_hash
    assert "provenance" not in json.loads(traced.canonical_json())


def test_canonical_json_is_compact_and_sorted():
    text = RetrievalConfig().canonical_json()
    assert ", " not in text and ": " not in text
    assert list(json.loads(text)) == sorted(json.loads(text))


# --- reading and editing -------------------------------------------------------------------------


def test_for_type_applies_that_types_overrides():
    config = RetrievalConfig(top_k=5, overrides={"5": {"top_k": 1, "include_dates": True}})
    effective = config.for_type("5")
    assert (effective.top_k, effective.include_dates, effective.overrides) == (1, True, {})


def test_for_type_without_overrides_keeps_the_global_values():
    config = RetrievalConfig(top_k=5, overrides={"5": {"top_k": 1}})
    assert config.for_type("2").top_k == 5 and config.for_type(None).top_k == 5


def test_value_reads_an_override_or_the_global_value():
    config = RetrievalConfig(top_k=5, overrides={"5": {"top_k": 1}})
    assert (config.value("top_k", "5"), config.value("top_k", "2"), config.value("top_k")) == \
        (1, 5, 5)


def test_with_values_returns_a_new_config_and_keeps_the_original():
    base = RetrievalConfig()
    changed = base.with_values({"top_k": 9, "fusion": "rrf"})
    assert (changed.top_k, changed.fusion) == (9, "rrf")
    assert (base.top_k, base.fusion) == (5, "weighted")


def test_with_values_for_a_category_adds_to_its_overrides():
    config = RetrievalConfig(overrides={"5": {"top_k": 1}})
    changed = config.with_values({"include_dates": True}, category="5")
    assert changed.overrides == {"5": {"include_dates": True, "top_k": 1}}
    assert config.overrides == {"5": {"top_k": 1}}


def test_with_values_validates():
    with pytest.raises(ConfigError, match="'top_k' must be between 1 and 50"):
        RetrievalConfig().with_values({"top_k": 500})


def test_with_values_rejects_a_global_field_for_a_category():
    with pytest.raises(ConfigError, match="'overrides.5.unit' is global"):
        RetrievalConfig().with_values({"unit": "window"}, category="5")


def test_with_values_drops_the_provenance():
    traced = RetrievalConfig(provenance={"run": "r1"})
    assert traced.with_values({"top_k": 4}).provenance == {}


def test_differences_name_changed_fields_and_overrides():
    base = RetrievalConfig()
    other = base.with_values({"top_k": 8}).with_values({"mmr_lambda": 0.5}, category="1")
    assert base.differences(other) == {"top_k": (5, 8), "overrides.1.mmr_lambda": (None, 0.5)}


def test_identical_configs_have_no_differences():
    assert RetrievalConfig(top_k=3).differences(RetrievalConfig(top_k=3)) == {}


# --- files and presets ---------------------------------------------------------------------------


def test_yaml_round_trip_keeps_the_hash(tmp_path):
    config = RetrievalConfig(unit="window", window_size=2, fusion="rrf", dense_weight=0.35,
                             overrides={"5": {"top_k": 2, "abstain_threshold": 0.4}})
    path = tmp_path / "config.yaml"
    path.write_text(config.to_yaml())
    assert load_config(path).config_hash == config.config_hash


def test_yaml_round_trip_keeps_the_provenance(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(RetrievalConfig(provenance={"run": "r1", "round": 4}).to_yaml())
    assert load_config(path).provenance == {"run": "r1", "round": 4}


def test_json_files_load_too(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"top_k": 3, "retrievers": "bm25+dense"}))
    assert (load_config(path).top_k, load_config(path).retrievers) == (3, "bm25+dense")


def test_presets_weak_and_strong_load_and_differ():
    assert {"weak", "strong"} <= set(preset_names())
    weak, strong = load_preset("weak"), load_preset("strong")
    assert weak.retrievers == "bm25" and "dense" in strong.retrievers
    assert weak.config_hash != strong.config_hash


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(MemevolveError, match="unknown preset 'medium'.*strong, weak"):
        load_preset("medium")


def test_missing_config_file_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(MemevolveError, match=re.escape(f"{path}: no such config file. Fix:")):
        load_config(path)


def test_bad_yaml_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("top_k: [5\nunit: turn\n")
    pattern = f"(?s){re.escape(str(path))}: not valid YAML.*Fix: correct the syntax"
    with pytest.raises(MemevolveError, match=pattern):
        load_config(path)


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- top_k\n- 5\n")
    pattern = re.escape(f"{path}: the file holds a list, not a mapping")
    with pytest.raises(ConfigError, match=pattern):
        load_config(path)


def test_bad_field_in_a_file_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("top_k: 0\nunit: turn\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: 'top_k' must be between 1 and 50")


# --- Optuna ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DIMENSIONS_BY_NAME))
def test_every_dimension_has_a_distribution_holding_its_default(name):
    dim = DIMENSIONS_BY_NAME[name]
    dist = distribution(dim)
    assert dist._contains(dist.to_internal_repr(dim.default))


def test_distributions_follow_the_declared_ranges_and_log_scale():
    budget = distribution(DIMENSIONS_BY_NAME["context_budget"])
    assert (budget.low, budget.high, budget.log) == (100, 8000, True)
    assert distribution(DIMENSIONS_BY_NAME["bm25_stemming"]).choices == (False, True)


def test_context_budget_is_capped_by_the_token_limit():
    capped = distributions(["context_budget", "top_k"], max_context_tokens=500)
    assert capped["context_budget"].high == 500
    assert capped["top_k"].high == 50


def test_a_token_limit_above_the_range_keeps_the_range():
    assert distribution(DIMENSIONS_BY_NAME["context_budget"], 20000).high == 8000
