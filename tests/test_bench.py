"""`memevolve bench search|eval|scale --smoke`: tables, rows, budgets; and the bounded caches."""
from __future__ import annotations

import itertools
import json

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from evolve.bench.search import verdicts
from evolve.cli import app
from evolve.store import RunStore

runner = CliRunner()


def _invoke(*args: str) -> str:
    result = runner.invoke(app, ["bench", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def cold_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMEVOLVE_CACHE_DIR", str(root / "cache"))
        output = _invoke("search", "--smoke", "--workers", "0", "--db", str(root / "b.duckdb"),
                         "--out", str(root / "out"))
    with RunStore(root / "b.duckdb") as store:
        summary = store.query("SELECT * FROM bench_summary ORDER BY fold, strategy, seed")
        curves = store.query("SELECT * FROM bench_search ORDER BY fold, strategy, seed, "
                             "eval_index")
        folds = json.loads(store.query("SELECT settings_json FROM runs WHERE kind = 'bench'")
                           [0]["settings_json"])["folds"]
        configs = {r["config_hash"] for r in store.query("SELECT config_hash FROM configs")}
    return root, output, summary, curves, configs, folds


def test_search_runs_every_fold_strategy_and_seed_at_the_smoke_budget(searched):
    _, output, summary, _, _, _ = searched
    assert {(r["fold"], r["strategy"], r["seed"], r["budget"]) for r in summary} == set(
        itertools.product((0, 1), ("memevolve", "optuna-tpe", "random", "hill-climber"),
                          (0, 1), (6,)))
    for strategy in ("memevolve", "optuna-tpe", "random", "hill-climber"):
        assert strategy in output


def test_a_search_reports_each_run_while_it_runs(searched):
    """Before a run's summary line, its own progress: memevolve's rounds, the others' best dev
    as it moves and their last evaluation."""
    import re

    _, output, _, _, _, _ = searched
    lines = output.splitlines()
    for fold, strategy, seed in itertools.product(
            ("fold0of2", "fold1of2"), ("memevolve", "optuna-tpe", "random", "hill-climber"),
            (0, 1)):
        head = f"{fold} {strategy} budget 6 seed {seed}"
        done = lines.index(next(l for l in lines if l.startswith(f"{head}: 6 evaluations")))
        progress = [l for l in lines[:done] if l.startswith(f"{head}: ")]
        if strategy == "memevolve":
            assert any(re.match(rf"{head}: round 1 \(\w+\): \w+; incumbent dev", l)
                       for l in progress), output
        else:
            assert re.fullmatch(rf"{head}: evaluation 1/6: dev ([\d.]+), best \1, \d+s",
                                progress[0]), output
            assert progress[-1].startswith(f"{head}: evaluation 6/6: dev "), output


def test_every_strategy_spends_exactly_its_budget(searched):
    _, _, summary, curves, _, _ = searched
    assert all(r["evaluations"] == r["budget"] for r in summary)
    for key, rows in itertools.groupby(curves, lambda r: (r["fold"], r["strategy"], r["seed"])):
        assert [r["eval_index"] for r in rows] == list(range(1, 7)), key


def test_all_strategies_start_from_the_same_config_in_each_fold(searched):
    _, _, _, curves, _, _ = searched
    for fold in (0, 1):
        assert len({r["config_hash"] for r in curves
                    if r["eval_index"] == 1 and r["fold"] == fold}) == 1


def test_best_so_far_never_falls_and_the_choice_is_scored_on_test(searched):
    _, _, summary, curves, configs, _ = searched
    for _, rows in itertools.groupby(curves, lambda r: (r["fold"], r["strategy"], r["seed"])):
        best = [r["best_so_far"] for r in rows]
        assert best == sorted(best)
    start_dev = {(r["fold"], r["strategy"], r["seed"]): r["dev_score"] for r in curves
                 if r["eval_index"] == 1}
    for row in summary:
        assert row["test_score"] is not None
        assert row["gap"] == pytest.approx(row["best_dev"] - row["test_score"])
        assert row["choice_hash"] in configs
        # The excess gap takes the start config's own dev - test on the fold off the gap.
        start = start_dev[row["fold"], row["strategy"], row["seed"]]
        assert row["excess_gap"] == pytest.approx(row["gap"] - (start - row["start_test"]))
    for fold in (0, 1):
        assert len({r["start_test"] for r in summary if r["fold"] == fold}) == 1


def test_the_hill_climber_keeps_any_dev_gain(searched):
    _, _, _, curves, _, _ = searched
    rows = [r for r in curves if r["strategy"] == "hill-climber"]
    for fold, seed in itertools.product((0, 1), (0, 1)):
        run = [r for r in rows if r["seed"] == seed and r["fold"] == fold]
        assert [r["best_so_far"] for r in run] == list(
            itertools.accumulate((r["dev_score"] for r in run), max))


def test_search_writes_the_curves_png_and_the_markdown_table(searched):
    root, _, _, _, _, _ = searched
    assert (root / "out" / "search_curves.png").stat().st_size > 0
    text = (root / "out" / "search.md").read_text()
    assert "memevolve bench search --smoke" in text and "| hill-climber | 6 | 2 x 2 |" in text
    assert "- budget 6: " in text and "smallest dev-test gap" in text
    # memevolve's own run store is kept for every fold and seed, none overwritten by the next.
    assert len(list((root / "out").glob("*/memevolve-*.duckdb"))) == 2 * 2


def test_the_smoke_folds_test_disjoint_conversations_and_tune_on_the_rest(searched):
    *_, folds = searched
    assert len(folds) == 2
    tests = [set(f["test"]) for f in folds]
    assert not tests[0] & tests[1]
    for fold in folds:
        assert not set(fold["dev"]) & set(fold["test"]) and fold["test"]
    assert set(folds[0]["dev"]) | tests[0] == set(folds[1]["dev"]) | tests[1]


def test_locomo_folds_by_conversation_and_longmemeval_by_repeated_stratified_splits(
        locomo, longmemeval):
    from benchmarks.errors import MemevolveError
    from evolve.bench.search import fold_splits

    folds = fold_splits(locomo, 5)
    assert [len(f.test) for f in folds] == [2] * 5 and [len(f.dev) for f in folds] == [8] * 5
    assert sorted(c for f in folds for c in f.test) == sorted(c.id for c in locomo.conversations)
    repeated = fold_splits(longmemeval, 3)
    assert len({f.test for f in repeated}) == 3
    assert all(set(f.dev) | set(f.test) == {c.id for c in longmemeval.conversations}
               for f in repeated)
    with pytest.raises(MemevolveError, match="only 10 conversations"):
        fold_splits(locomo, 11)


def _row(strategy, test_mean, test_sd, gap, auc, budget=30, excess=None, best_runs=None):
    return {"strategy": strategy, "budget": budget, "test_mean": test_mean,
            "test_sd": test_sd, "gap_mean": gap, "auc_mean": auc, "excess_mean": excess,
            "best_runs": best_runs, "runs": 5}


def test_verdicts_name_a_winner_only_outside_the_spread_and_the_smallest_gap():
    rows = [_row("memevolve", 0.742, 0.010, 0.023, 0.70, excess=0.031),
            _row("hill-climber", 0.738, 0.020, 0.073, 0.72, excess=-0.012),
            _row("random", 0.657, 0.050, -0.075, 0.60),
            _row("memevolve", 0.70, 0.01, 0.10, 0.65, budget=60),
            _row("optuna-tpe", 0.75, 0.02, 0.05, 0.66, budget=60, best_runs=4)]
    thirty, sixty = verdicts(rows)
    assert thirty.startswith("budget 30: no winner; best mean test memevolve 0.7420 leads "
                             "hill-climber by 0.0040, inside the spread (sd 0.0200)")
    assert thirty.endswith("smallest dev-test gap memevolve +0.0230; smallest excess gap (the "
                           "start's dev-test taken off) hill-climber -0.0120; largest AUC "
                           "hill-climber 0.7200")
    assert sixty.startswith("budget 60: winner optuna-tpe on mean test 0.7500, ahead of "
                            "memevolve by 0.0500 (outside the spread, sd 0.0200), best on "
                            "test in 4 of 5 folds x seeds")
    assert "smallest dev-test gap optuna-tpe +0.0500" in sixty and "excess" not in sixty


def test_the_verdict_gives_the_two_leaders_paired_differences_as_mean_and_standard_error():
    rows = [_row("memevolve", 0.80, 0.03, 0.02, 0.7), _row("hill-climber", 0.78, 0.03, 0.0, 0.6)]
    pairs = [{"budget": 30, "strategy": "memevolve", "other": "hill-climber", "pairs": 4,
              "test_diff": 0.02, "test_diff_sd": 0.01, "gap_diff": 0.02, "gap_diff_sd": 0.03},
             {"budget": 30, "strategy": "hill-climber", "other": "memevolve", "pairs": 4,
              "test_diff": -0.02, "test_diff_sd": 0.01, "gap_diff": -0.02, "gap_diff_sd": 0.03}]
    line, = verdicts(rows, pairs)
    assert ("paired over the same 4 folds x seeds, memevolve - hill-climber: test +0.0200 ± "
            "0.0050 (se), dev-test gap +0.0200 ± 0.0150;") in line
    assert "paired" not in verdicts(rows)[0]
    one = [{**pairs[0], "pairs": 1}]
    assert "paired" not in verdicts(rows, one)[0]


def test_paired_differences_are_those_of_the_same_fold_and_seed(searched):
    from evolve.bench.search import paired

    root, _, summary, _, _, _ = searched
    with RunStore(root / "b.duckdb") as store:
        run_id = summary[0]["run_id"]
        pairs = {(p["strategy"], p["other"]): p for p in paired(store, run_id)}
    by = {(r["strategy"], r["fold"], r["seed"]): r for r in summary}
    runs = [(f, s) for (name, f, s) in by if name == "memevolve"]
    diffs = [by["memevolve", f, s]["test_score"] - by["random", f, s]["test_score"]
             for f, s in runs]
    gaps = [by["memevolve", f, s]["gap"] - by["random", f, s]["gap"] for f, s in runs]
    mine = pairs["memevolve", "random"]
    assert mine["pairs"] == len(runs) == 4
    assert mine["test_diff"] == pytest.approx(sum(diffs) / 4)
    assert mine["gap_diff"] == pytest.approx(sum(gaps) / 4)
    assert pairs["random", "memevolve"]["test_diff"] == pytest.approx(-mine["test_diff"])
    assert len(pairs) == 4 * 3


def test_eval_smoke_measures_every_phase_cold_to_new_process(tmp_path):
    db = tmp_path / "b.duckdb"
    _invoke("eval", "--smoke", "--db", str(db), "--out", str(tmp_path / "out"))
    with RunStore(db) as store:
        rows = {r["phase"]: r for r in store.query("SELECT * FROM bench_throughput")}
    assert set(rows) == {"cold", "warm-store", "warm-indexes", "new-process-store",
                         "new-process-compute"}
    assert rows["cold"]["store_reuse"] == 0 and rows["cold"]["embed_misses"] > 0
    assert rows["warm-store"]["store_reuse"] == 1 and rows["new-process-store"]["store_reuse"] == 1
    # The second process finds every text in the embedding cache the first one filled.
    assert rows["new-process-compute"]["embed_misses"] == 0
    assert rows["new-process-compute"]["embed_hits"] > 0
    assert all(r["questions_per_s"] > 0 and r["tree_rss_mb"] >= 1 for r in rows.values())
    assert (tmp_path / "out" / "eval.md").read_text().count("| synthetic-smoke |") == 5


def test_eval_measures_the_config_it_is_given_and_its_reranker_training_apart(tmp_path):
    from benchmarks import load_benchmark
    from benchmarks.splits import make_split
    from evolve.bench.throughput import SYNTHETIC_SIZES
    from evolve.question_types import train_on_split
    from search_space.artefacts import artefact_hash

    db = tmp_path / "b.duckdb"
    config = tmp_path / "hybrid.yaml"
    bench = load_benchmark("synthetic", **SYNTHETIC_SIZES["synthetic-smoke"])
    predictor = train_on_split(bench, make_split(bench, "random", seed=0, test_fraction=0.25))
    # As long as an exported config with a reranker's model: more than one argument holds.
    body = {"kind": "note", "text": "x" * 200_000}
    config.write_text(yaml.safe_dump({
        "retrievers": "bm25+dense", "session_weight": 0.4, "reranker": "ltr",
        "rerank_depth": 20, "question_types": artefact_hash(predictor),
        "artefacts": {artefact_hash(body): body, artefact_hash(predictor): predictor}}))
    _invoke("eval", "--smoke", "--config", str(config), "--db", str(db),
            "--out", str(tmp_path / "out"))
    with RunStore(db) as store:
        rows = {r["phase"]: r for r in store.query("SELECT * FROM bench_throughput")}
    assert {r["retrievers"] for r in rows.values()} == {"bm25+dense"}
    # The cold phase trains the rerankers of the base and of the variants that change its
    # features; every later phase finds them (in memory, or in the store), and the rates
    # leave the training out.
    cold = rows.pop("cold")
    assert 0 < cold["train_s"] < cold["wall_s"] - cold["startup_s"]
    assert cold["configs_per_s"] == pytest.approx(
        cold["configs"] / (cold["wall_s"] - cold["startup_s"] - cold["train_s"]))
    assert all(r["train_s"] == 0 for r in rows.values())
    table = (tmp_path / "out" / "eval.md").read_text()
    assert "--config" in table and "| train s |" in table


def test_scale_smoke_times_each_stage_and_the_cache_serves_the_second_pass(tmp_path,
                                                                            longmemeval_path):
    from evolve.bench.scale import COLD_STAGES, WARM_STAGES

    db = tmp_path / "b.duckdb"
    _invoke("scale", "--smoke", "--data", str(longmemeval_path), "--db", str(db),
            "--out", str(tmp_path / "out"))
    with RunStore(db) as store:
        rows = {r["stage"]: r for r in store.query("SELECT * FROM bench_scale")}
    assert set(rows) == set(COLD_STAGES + WARM_STAGES)
    for name in ("units", "bm25-index", "evaluation", "units-warm", "evaluation-warm"):
        assert rows[name]["n"] == 5
    assert rows["embedding-cold"]["cache_hits"] < rows["embedding-cold"]["texts"]
    assert rows["embedding-warm"]["cache_hits"] == rows["embedding-warm"]["texts"] > 0
    # In this process (--smoke: workers 0) there is no actor, and the driver's peak only grows.
    assert all(r["actor_peaks_mb"] == [] and r["driver_peak_mb"] > 0 for r in rows.values())
    assert rows["evaluation"]["driver_peak_mb"] >= rows["load"]["driver_peak_mb"]
    assert "| embedding-warm |" in (tmp_path / "out" / "scale.md").read_text()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_scale_on_ray_reports_each_actors_peak_memory(tmp_path):
    db = tmp_path / "b.duckdb"
    _invoke("scale", "-b", "synthetic", "--benchmark-option", "shape=longmemeval",
            "--benchmark-option", "questions=4", "--benchmark-option", "sessions=3",
            "--workers", "2", "--embedder", "onnx", "--db", str(db),
            "--out", str(tmp_path / "out"))
    with RunStore(db) as store:
        rows = {r["stage"]: r for r in store.query("SELECT * FROM bench_scale")}
    assert rows["load"]["actor_peaks_mb"] == []
    for name in ("start", "embedding-cold", "evaluation-warm"):
        peaks = rows[name]["actor_peaks_mb"]
        assert len(peaks) == 2 and all(p > 50 for p in peaks)
        assert rows[name]["actors_peak_mb"] == pytest.approx(sum(peaks))
    # The actors embedded with onnx: texts asked cold, every one served by the cache warm.
    assert rows["embedding-cold"]["texts"] > rows["embedding-cold"]["cache_hits"]
    assert rows["embedding-warm"]["cache_hits"] == rows["embedding-warm"]["texts"]
    # Each actor loaded its own haystacks (the driver only the questions); they counted them.
    assert "4 questions, 12 sessions, " in (tmp_path / "out" / "scale.md").read_text()


@pytest.mark.parametrize("item, says", [("index_roles=bogus", "must be one of all, user"),
                                         ("index_roles", "is not FIELD=VALUE")])
def test_scale_refuses_a_bad_set_with_the_fix(tmp_path, item, says):
    result = runner.invoke(app, ["bench", "scale", "--smoke", "--set", item,
                                 "--db", str(tmp_path / "b.duckdb")])
    assert result.exit_code == 2 and says in result.output and "Fix:" in result.output


def test_scale_refuses_an_unknown_embedder(tmp_path):
    result = runner.invoke(app, ["bench", "scale", "--smoke", "--embedder", "word2vec",
                                 "--db", str(tmp_path / "b.duckdb")])
    assert result.exit_code == 2 and "use one of" in result.output


def test_a_store_without_the_bench_tables_is_refused_with_a_fix(tmp_path):
    db = tmp_path / "old.duckdb"
    RunStore(db).close()
    with duckdb.connect(str(db)) as connection:
        connection.execute("DROP TABLE bench_search")
    result = runner.invoke(app, ["bench", "search", "--smoke", "--db", str(db)])
    assert result.exit_code == 2
    assert "Fix: pass --db with a new file" in result.output


def test_bounded_cache_drops_the_least_recently_used():
    from evolve.memory.bounded import BoundedCache

    cache: BoundedCache[int] = BoundedCache(2)
    cache["a"], cache["b"] = 1, 2
    assert cache["a"] == 1
    cache["c"] = 3
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2


def test_bm25_keeps_a_bounded_number_of_indexes_per_unit_set():
    from benchmarks import load_benchmark
    from evolve.memory.query import process_query
    from evolve.memory.retrievers import BM25_SETTINGS_KEPT, BM25Retriever
    from evolve.memory.units import build_units
    from search_space.config import RetrievalConfig

    conversation = load_benchmark("synthetic", conversations=1, sessions=2, turns=6,
                                  questions=3).conversations[0]
    units = build_units(conversation, "turn", 1)
    query = process_query("What did they do?", conversation.speakers, use_keywords=False,
                          speaker_swap=False)
    bm25 = BM25Retriever()
    for i in range(BM25_SETTINGS_KEPT + 3):
        bm25.scores(units, query, RetrievalConfig(bm25_k1=0.5 + i / 10))
    assert len(bm25._indexes[id(units)]) == BM25_SETTINGS_KEPT


@pytest.fixture(scope="module")
def prefixes(tmp_path_factory):
    """Each strategy once at budget 6 and once at budget 4, on the smoke benchmark's first
    fold: the smaller budget read from the larger run's prefix and run on its own."""
    from benchmarks import load_benchmark
    from evolve.bench.cli import SMOKE_SYNTHETIC
    from evolve.bench.search import SearchSetup, fold_splits, run_strategy
    from evolve.evaluation import Evaluator

    root = tmp_path_factory.mktemp("prefix")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMEVOLVE_CACHE_DIR", str(root / "cache"))
        bench = load_benchmark("synthetic", None, **SMOKE_SYNTHETIC)
        setup = SearchSetup(bench, fold_splits(bench, 2)[0], candidates=2)
        with Evaluator(bench, workers=0) as evaluator:
            return {name: (run_strategy(name, setup, evaluator, 6, 0),
                           run_strategy(name, setup, evaluator, 4, 0))
                    for name in ("hill-climber", "random", "memevolve")}


@pytest.mark.parametrize("name", ["hill-climber", "random"])
def test_a_smaller_budget_read_from_the_prefix_is_the_run_of_that_budget(prefixes, name):
    long, short = prefixes[name]
    read = long.prefix(4)
    assert read.config_hashes == short.config_hashes and read.spent == 4
    assert read.best_so_far == short.best_so_far and read.curve() == short.curve()
    assert read.choice.config_hash == short.choice.config_hash
    assert read.choice_dev == short.choice_dev and read.auc == pytest.approx(short.auc)
    assert [c.config.config_hash for c in read.choices] == \
        [c.config.config_hash for c in short.choices]


def test_memevolves_prefix_stops_before_the_round_that_crosses_the_budget(prefixes):
    long, short = prefixes["memevolve"]
    read = long.prefix(4)
    assert read.spent <= 4 + 1e-9
    # The same rounds up to the crossing one, which the run of 4 shrank to fit.
    assert short.config_hashes[:len(read.config_hashes) - 1] == read.config_hashes[:-1] or \
        short.config_hashes[:len(read.config_hashes)] == read.config_hashes
    # Its choice is the incumbent after the last whole round inside the budget.
    assert read.choice.config_hash == [c for c in long.choices if c.after <= read.spent + 1e-9
                                       ][-1].config.config_hash
    assert read.choice.config_hash in {c.config.config_hash for c in short.choices}
    assert long.prefix(6).choice.config_hash == long.choice.config_hash
    with pytest.raises(ValueError):
        long.prefix(7)


def test_every_budget_of_a_search_comes_from_one_run_per_strategy(tmp_path):
    out = _invoke("search", "--smoke", "--workers", "0", "--budgets", "3,6", "--seeds", "0",
                  "--strategies", "hill-climber,memevolve", "--db", str(tmp_path / "b.duckdb"),
                  "--out", str(tmp_path / "out"))
    assert "budget 3 seed 0: 3 evaluations (the first 3 of 6)" in out
    with RunStore(tmp_path / "b.duckdb") as store:
        rows = store.query("SELECT fold, strategy, budget, evaluations, best_dev, test_score "
                           "FROM bench_summary ORDER BY fold, strategy, budget")
        curves = store.query("SELECT fold, strategy, budget, eval_index, config_hash FROM "
                             "bench_search ORDER BY fold, strategy, budget, eval_index")
    assert {(r["strategy"], r["budget"]) for r in rows} == {
        (s, b) for s in ("hill-climber", "memevolve") for b in (3, 6)}
    assert all(r["test_score"] is not None and r["evaluations"] <= r["budget"] + 1e-9
               for r in rows)
    for fold, strategy in itertools.product((0, 1), ("hill-climber", "memevolve")):
        short = [r["config_hash"] for r in curves
                 if (r["fold"], r["strategy"], r["budget"]) == (fold, strategy, 3)]
        long = [r["config_hash"] for r in curves
                if (r["fold"], r["strategy"], r["budget"]) == (fold, strategy, 6)]
        assert long[:len(short)] == short
    # One memevolve run store per fold and seed: the budget-3 rows came from the budget-6 run.
    assert len(list((tmp_path / "out").glob("*/memevolve-*.duckdb"))) == 2


def test_a_prefix_keeps_the_choice_made_by_its_budget_and_drops_the_crossing_round():
    from evolve.bench.search import Trace
    from search_space.config import load_preset

    weak = load_preset("weak")
    wider, widest = weak.with_values({"top_k": 9}), weak.with_values({"top_k": 20})
    trace = Trace("memevolve", 0, 6)
    trace.add(weak.config_hash, 0.5, 0.5, elapsed=1.0)
    trace.choose(weak, 0.5)
    # Round 1: two screened candidates (half of dev each) and one promoted; the wider wins.
    for h, cost, t in ((widest.config_hash, 0.5, 2.0), ("x", 0.5, 2.0),
                       (wider.config_hash, 1.0, 2.0)):
        trace.add(h, 0.6, 0.5 if h != wider.config_hash else 0.6, cost, t)
    trace.choose(wider, 0.6)
    # Round 2 crosses budget 4: two full candidates, the widest wins after 5 evaluations.
    trace.add("y", 0.55, 0.6, 1.0, 3.0)
    trace.add(widest.config_hash, 0.7, 0.7, 1.0, 3.0)
    trace.choose(widest, 0.7)
    assert [c.after for c in trace.choices] == [1.0, 3.0, 5.0]
    four = trace.prefix(4)
    assert four.spent == 4.0 and four.config_hashes[-1] == "y"
    assert (four.choice.config_hash, four.choice_dev) == (wider.config_hash, 0.6)
    assert four.wall_s == 3.0 and four.budget == 4
    assert trace.prefix(2).choice.config_hash == weak.config_hash
    assert trace.prefix(5).choice.config_hash == widest.config_hash
    # The prefix's curve and AUC are those of a run that stopped there.
    assert four.curve() == trace.curve()[:4]


def test_the_summary_counts_the_folds_each_strategy_was_best_on_test(searched):
    from evolve.bench.search import summary

    root, _, rows, _, _, _ = searched
    with RunStore(root / "b.duckdb") as store:
        [run] = store.query("SELECT run_id FROM runs WHERE kind = 'bench'")
        table = summary(store, run["run_id"])
    top = {}
    for r in rows:
        top[r["fold"], r["seed"]] = max(top.get((r["fold"], r["seed"]), -1.0), r["test_score"])
    for line in table:
        assert line["best_runs"] == sum(
            1 for r in rows if r["strategy"] == line["strategy"]
            and r["test_score"] >= top[r["fold"], r["seed"]])
    assert sum(line["best_runs"] for line in table) >= len(top)
    for line in table:
        gaps = [r["best_dev"] - r["test_score"] for r in rows if r["strategy"] ==
                line["strategy"] and r["budget"] == line["budget"]]
        assert line["gap_mean"] == pytest.approx(sum(gaps) / len(gaps))
        assert line["gap_size_mean"] == pytest.approx(sum(map(abs, gaps)) / len(gaps))


def test_the_verdict_names_the_smallest_gap_size_apart_from_the_smallest_mean_gap():
    """Gaps of opposite signs cancel in the mean: the verdict names the smallest mean size
    too, and only over several runs, where the two can differ."""
    rows = [{**_row("memevolve", 0.80, 0.01, 0.011, 0.8), "gap_size_mean": 0.028},
            {**_row("hill-climber", 0.76, 0.04, 0.008, 0.7), "gap_size_mean": 0.038}]
    line, = verdicts(rows)
    assert ("smallest dev-test gap hill-climber +0.0080; smallest mean size of the dev-test gap "
            "over its folds x seeds memevolve 0.0280; largest AUC") in line
    alone = [{**r, "runs": 1} for r in rows]
    assert "mean size" not in verdicts(alone)[0]


#: The part-runs of `parts`: two strategies, one seed, each fold in its own run.
PART_STRATEGIES, PART_SEED = ("hill-climber", "memevolve"), 1


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """The smoke search again, fold by fold (`--only-folds 0`, then 1), into one store."""
    root = tmp_path_factory.mktemp("parts")
    db, outputs = root / "b.duckdb", []
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMEVOLVE_CACHE_DIR", str(root / "cache"))
        for fold in (0, 1):
            outputs.append(_invoke(
                "search", "--smoke", "--workers", "0", "--only-folds", str(fold),
                "--strategies", ",".join(PART_STRATEGIES), "--seeds", str(PART_SEED),
                "--db", str(db), "--out", str(root / f"out{fold}")))
    with RunStore(db) as store:
        ids = [r["run_id"] for r in store.query(
            "SELECT run_id FROM runs WHERE kind = 'bench' ORDER BY started_at")]
    return root, db, ids, outputs


def _picked(rows, keep):
    return sorted(({k: r[k] for k in keep} for r in rows if r["seed"] == PART_SEED
                   and r["strategy"] in PART_STRATEGIES), key=lambda r: tuple(map(str, r.values())))


def test_only_folds_runs_those_folds_as_a_full_run_does(searched, parts):
    """`--only-folds F` runs fold F alone: a measurement over folds can be made in parts, and
    each part's runs are the full run's, evaluation by evaluation."""
    _, _, summary, curves, _, _ = searched
    root, db, ids, outputs = parts
    assert len(ids) == 2 and all("1 folds x 1 seeds" in o for o in outputs)
    # A part of one fold still heads its lines with the fold, of all K.
    assert "fold1of2 hill-climber budget 6 seed 1: evaluation 6/6" in outputs[1]
    assert "--only-folds 1" in (root / "out1" / "search.md").read_text()
    with RunStore(db) as store:
        for fold, run_id in enumerate(ids):
            assert {r["fold"] for r in store.query(
                "SELECT fold FROM bench_search WHERE run_id = ?", [run_id])} == {fold}
        keep = ("fold", "strategy", "seed", "eval_index", "config_hash", "dev_score")
        assert _picked(store.query("SELECT * FROM bench_search"), keep) == _picked(curves, keep)
        keep = ("fold", "strategy", "budget", "choice_hash", "best_dev", "test_score",
                "start_test", "gap", "auc")
        assert _picked(store.query("SELECT * FROM bench_summary"), keep) == _picked(summary,
                                                                                  keep)


def test_pool_gives_the_parts_one_table_as_one_run_would(searched, parts):
    """`bench pool` over the two part-runs: the means over both folds of the full run's rows."""
    _, _, summary, _, _, _ = searched
    root, db, ids, _ = parts
    output = _invoke("pool", *ids, "--db", str(db), "--out", str(root / "pooled"))
    assert f"{ids[0]}: folds 0" in output and f"{ids[1]}: folds 1" in output
    assert "2 of 2 folds x 1 seeds, pooled over 2 runs" in output
    text = (root / "pooled" / "search-pooled.md").read_text()
    assert f"memevolve bench pool {ids[0]} {ids[1]}" in text
    for strategy in PART_STRATEGIES:
        rows = [r for r in summary if r["strategy"] == strategy and r["seed"] == PART_SEED]
        test = sum(r["test_score"] for r in rows) / len(rows)
        auc = sum(r["auc"] for r in rows) / len(rows)
        assert f"| {strategy} | 6 | 2 x 1 | " in text
        line = next(x for x in text.splitlines() if x.startswith(f"| {strategy} | 6 |"))
        size = sum(abs(r["best_dev"] - r["test_score"]) for r in rows) / len(rows)
        assert f"{test:.4f} ± " in line and f"| {auc:.4f} |" in line and f"| {size:.4f} |" in line
    assert "paired over the same 2 folds x seeds" in text
    # One part alone: the table says which folds it lacks.
    alone = _invoke("pool", ids[1], "--db", str(db), "--out", str(root / "alone"))
    assert "folds 0 of 2 are in none of these runs" in alone


def test_pool_refuses_runs_that_are_not_parts_of_one_measurement(searched, parts, tmp_path):
    import shutil

    root, db, ids, _ = parts
    copy = tmp_path / "b.duckdb"
    shutil.copy(db, copy)
    # A second run of fold 1 with the same settings: its runs would count twice.
    with duckdb.connect(str(copy)) as connection:
        for name in ("runs", "bench_summary"):
            columns = [c[0] for c in connection.execute(f"DESCRIBE {name}").fetchall()]
            values = ", ".join("'again' AS run_id" if c == "run_id" else c for c in columns)
            connection.execute(f"INSERT INTO {name} SELECT {values} FROM {name} "
                               f"WHERE run_id = '{ids[1]}'")
    for args, says in [((ids[1], "again"), "was run by both"),
                       ((ids[0], ids[0]), "list each run once"),
                       ((ids[0], "nosuchrun"), "nosuchrun: no bench search run")]:
        result = runner.invoke(app, ["bench", "pool", *args, "--db", str(copy)])
        assert result.exit_code == 2 and says in result.output and "Fix:" in result.output
    # The full smoke run measured four strategies and both folds: not a part of the same one.
    full = searched[0] / "b.duckdb"
    shutil.copy(full, tmp_path / "full.duckdb")
    with RunStore(tmp_path / "full.duckdb") as store:
        other = store.query("SELECT run_id FROM runs WHERE kind = 'bench'")[0]["run_id"]
    with duckdb.connect(str(copy)) as connection:
        connection.execute(f"ATTACH '{tmp_path / 'full.duckdb'}' AS whole (READ_ONLY)")
        for name in ("runs", "bench_summary"):
            connection.execute(f"INSERT INTO {name} SELECT * FROM whole.{name} "
                               f"WHERE run_id = '{other}'")
    result = runner.invoke(app, ["bench", "pool", ids[0], other, "--db", str(copy)])
    assert result.exit_code == 2 and "differs from" in result.output
    assert "strategies" in result.output and "Fix:" in result.output


@pytest.mark.parametrize("args, says", [
    (["--only-folds", "2"], "fold 2 is not one of the 2 folds"),
    (["--only-folds", "x"], "is not a comma-separated list"),
    (["--split", "default", "--only-folds", "0", "--benchmark", "synthetic"],
     "no --folds K was given")])
def test_only_folds_refuses_a_fold_that_is_not_there(tmp_path, args, says):
    result = runner.invoke(app, ["bench", "search", *(["--smoke"] if "--split" not in args
                                                      else []), *args,
                                 "--db", str(tmp_path / "b.duckdb")])
    assert result.exit_code == 2 and says in result.output and "Fix:" in result.output
