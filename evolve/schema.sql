-- memevolve run store (DuckDB). One file holds every run; SQL is the API for analysis.
-- schema_version is checked on open: an older file is migrated (store.py MIGRATIONS), a newer
-- or unknown one is refused.

CREATE TABLE IF NOT EXISTS meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- A benchmark as loaded (content hash) and a named, seeded split of it.
CREATE TABLE IF NOT EXISTS benchmarks (
    benchmark_key VARCHAR PRIMARY KEY,      -- name:variant:sha256[:16]
    name          VARCHAR NOT NULL,
    variant       VARCHAR NOT NULL,
    source        VARCHAR NOT NULL,
    sha256        VARCHAR NOT NULL,
    n_questions   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS configs (
    config_hash    VARCHAR PRIMARY KEY,
    canonical_json VARCHAR NOT NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- A run: an `eval`, an evolution (`run`) or a benchmark harness run.
CREATE TABLE IF NOT EXISTS runs (
    run_id        VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL,          -- eval | evolve | bench | router
    benchmark_key VARCHAR NOT NULL,
    split_name    VARCHAR NOT NULL,
    split_seed    INTEGER NOT NULL,
    split_json    VARCHAR NOT NULL,          -- dev/test conversation ids
    settings_json VARCHAR NOT NULL,          -- CLI settings (objective, budgets, seed, ...)
    status        VARCHAR NOT NULL,          -- running | converged | budget_spent | done |
                                             -- failed | interrupted
    started_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at   TIMESTAMP,
    owner_host    VARCHAR,                   -- the process driving it (a running run whose
    owner_pid     INTEGER,                   -- process is gone shows as interrupted)
    owner_started BIGINT                     -- its start time (clock ticks since boot): a
                                             -- reused pid is not mistaken for the owner
);

-- One evaluation of a config on a part (dev/test) of a run's split.
CREATE TABLE IF NOT EXISTS evaluations (
    evaluation_id VARCHAR PRIMARY KEY,
    run_id        VARCHAR NOT NULL,
    config_hash   VARCHAR NOT NULL,
    benchmark_key VARCHAR NOT NULL,
    part          VARCHAR NOT NULL,          -- dev | test | all
    n_questions   INTEGER NOT NULL,
    n_reused      INTEGER NOT NULL,          -- rows served from the cache
    objective     VARCHAR NOT NULL,
    score         DOUBLE,                    -- headline: mean objective over the part's
                                             -- non-adversarial questions (BudgetMem protocol)
    adversarial_score DOUBLE,                -- the same over its adversarial questions only
                                             -- (LoCoMo category 5, LongMemEval _abs)
    wall_s        DOUBLE NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS evaluation_questions (
    evaluation_id VARCHAR NOT NULL,
    question_id   VARCHAR NOT NULL,
    PRIMARY KEY (evaluation_id, question_id)
);

-- The outcome of one question under one config: a pure function of (config, benchmark,
-- question) in a context (context_key), hence the cache key. Reused across runs; a row
-- recomputed in another context (new engine version, judge, LLM settings) replaces it.
CREATE TABLE IF NOT EXISTS question_results (
    config_hash        VARCHAR NOT NULL,
    benchmark_key      VARCHAR NOT NULL,
    question_id        VARCHAR NOT NULL,
    context_key        VARCHAR NOT NULL DEFAULT '', -- engine/scorer version, embedder, answer
                                             -- and judge reply settings (outcome_context_key)
    conversation_id    VARCHAR NOT NULL,
    category           VARCHAR NOT NULL,     -- gold label: for scoring and reports only
    adversarial        BOOLEAN NOT NULL,
    question_type      VARCHAR,              -- the type the overrides were chosen by: predicted
                                             -- from the text (gold only for an oracle config);
                                             -- NULL when the config has no predictor
    retrieved_ids      VARCHAR[] NOT NULL,   -- unit ids in rank order (rank = position + 1)
    context_ids        VARCHAR[] NOT NULL,   -- units packed into the context, in context order
    evidence_ids       VARCHAR[] NOT NULL,   -- gold turn ids
    recall_at_5        DOUBLE,               -- NULL when the question has no gold evidence
    recall_at_10       DOUBLE,
    recall_at_k        DOUBLE,
    recall_in_context  DOUBLE,               -- evidence recall within the context budget
    session_recall_at_5 DOUBLE,               -- gold sessions among the first 5 distinct ones
    turn_recall_at_5   DOUBLE,               -- gold turns among the first 5 turns of the ranking
    turn_recall_at_10  DOUBLE,               -- expanded to turns (comparable across unit kinds)
    -- LongMemEval's official retrieval metrics (run_retrieval.py, turn granularity over the
    -- user turns); NULL where a question has no user-side gold turn, as officially skipped.
    lme_session_recall_any_at_5 DOUBLE,
    lme_session_recall_any_at_10 DOUBLE,
    lme_session_recall_all_at_5 DOUBLE,
    lme_session_recall_all_at_10 DOUBLE,
    lme_session_ndcg_at_5 DOUBLE,
    lme_session_ndcg_at_10 DOUBLE,
    lme_turn_recall_any_at_5 DOUBLE,
    lme_turn_recall_any_at_10 DOUBLE,
    lme_turn_recall_all_at_5 DOUBLE,
    lme_turn_recall_all_at_10 DOUBLE,
    lme_turn_ndcg_at_5 DOUBLE,
    lme_turn_ndcg_at_10 DOUBLE,
    evidence_rank      INTEGER,              -- best rank of any gold unit (NULL: not retrieved)
    context_tokens     INTEGER NOT NULL,
    answer             VARCHAR NOT NULL,
    abstained          BOOLEAN NOT NULL,
    answer_f1          DOUBLE,               -- official LoCoMo scoring (cat 5: not-mentioned rule)
    judge_correct      BOOLEAN,              -- LLM judge verdict, NULL when no judge ran
    latency_ms         DOUBLE NOT NULL,
    llm_prompt_tokens  INTEGER NOT NULL DEFAULT 0,
    llm_completion_tokens INTEGER NOT NULL DEFAULT 0,
    llm_cost_usd       DOUBLE NOT NULL DEFAULT 0,
    invalid_reason     VARCHAR,              -- infrastructure failure: not scored
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (config_hash, benchmark_key, question_id)
);

-- Learned parts of configs (question-type predictors), by content hash; a config names one in
-- its canonical JSON (question_types), so export and resume find it here.
CREATE TABLE IF NOT EXISTS artefacts (
    artefact_hash VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL,          -- question_types
    body_json     VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS llm_calls (
    call_key          VARCHAR NOT NULL,
    run_id            VARCHAR,
    model             VARCHAR NOT NULL,
    purpose           VARCHAR NOT NULL,      -- answer | query | diagnose | judge
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd          DOUBLE NOT NULL,
    latency_s         DOUBLE NOT NULL,
    cached            BOOLEAN NOT NULL,
    ok                BOOLEAN NOT NULL,
    error             VARCHAR,
    attempts          INTEGER NOT NULL,
    created_at        TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Evolution: one row per round, one per candidate, each decision with its statistics.
CREATE TABLE IF NOT EXISTS rounds (
    run_id            VARCHAR NOT NULL,
    round             INTEGER NOT NULL,
    incumbent_hash    VARCHAR NOT NULL,
    incumbent_score   DOUBLE NOT NULL,
    mode              VARCHAR NOT NULL,      -- diagnose | explore
    decision          VARCHAR NOT NULL,      -- accept | keep | converge | budget
    reason            VARCHAR NOT NULL,
    rng_state         VARCHAR NOT NULL,      -- for an exact resume
    evaluations_used  DOUBLE NOT NULL,       -- by the questions scored: a candidate screened
                                             -- on half of dev adds 0.5
    tokens_used       BIGINT NOT NULL,
    cost_used         DOUBLE NOT NULL,
    wall_s            DOUBLE NOT NULL,           -- run time so far, every session included
    committed_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    diagnoser_fallback VARCHAR,                  -- why the LLM diagnoser fell back to rules
    PRIMARY KEY (run_id, round)
);

CREATE TABLE IF NOT EXISTS candidates (
    run_id         VARCHAR NOT NULL,
    round          INTEGER NOT NULL,
    candidate      INTEGER NOT NULL,
    parent_hash    VARCHAR NOT NULL,
    config_hash    VARCHAR,                  -- NULL: an invalid proposal (outside the space)
    proposer       VARCHAR NOT NULL,         -- rules | llm | explore | combine | pool
    edit_json      VARCHAR NOT NULL,
    rationale      VARCHAR NOT NULL,
    dev_score      DOUBLE,
    delta          DOUBLE,                   -- paired mean gain over the incumbent
    ci_low         DOUBLE,
    ci_high        DOUBLE,
    p_value        DOUBLE,
    dev_questions  INTEGER,                  -- questions dev_score and delta are over: all of
                                             -- dev, or the round's screening subsample
    decision       VARCHAR NOT NULL,         -- accepted | rejected | reverted | invalid |
                                             -- screened (not promoted to full dev)
    reason         VARCHAR NOT NULL,
    PRIMARY KEY (run_id, round, candidate)
);

-- Dimensions an LLM diagnoser proposed that the space lacks: for a person, never executed.
CREATE TABLE IF NOT EXISTS dimension_proposals (
    run_id      VARCHAR NOT NULL,
    round       INTEGER NOT NULL,
    name        VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    rationale   VARCHAR NOT NULL
);

-- Budget-tier router. The outcome of every tier combination (one config each) on every question
-- of a split, with the cost measures of the tiers' cost model; written by `router train`.
CREATE TABLE IF NOT EXISTS router_outcomes (
    tiers_hash            VARCHAR NOT NULL,   -- the tier space (tiers file, base, cost model)
    benchmark_key         VARCHAR NOT NULL,
    question_id           VARCHAR NOT NULL,
    conversation_id       VARCHAR NOT NULL,
    combo                 VARCHAR NOT NULL,   -- one tier letter per module, e.g. 'LMH'
    config_hash           VARCHAR NOT NULL,
    run_id                VARCHAR NOT NULL,   -- the `router train` run that logged it
    recall_in_context     DOUBLE,             -- quality measures; NULL when undefined
    recall_at_k           DOUBLE,
    answer_f1             DOUBLE,
    context_tokens        INTEGER NOT NULL,
    llm_prompt_tokens     INTEGER NOT NULL,
    llm_completion_tokens INTEGER NOT NULL,
    llm_usd               DOUBLE NOT NULL,    -- LLM tokens at list price (local models: 0)
    latency_ms            DOUBLE NOT NULL,
    PRIMARY KEY (tiers_hash, benchmark_key, question_id, combo)
);

-- A trained router: one policy per seed in one file; the selected seed serves `eval --router`.
CREATE TABLE IF NOT EXISTS router_models (
    model_id            VARCHAR PRIMARY KEY,  -- the `router train` run id
    path                VARCHAR NOT NULL,
    tiers_hash          VARCHAR NOT NULL,
    benchmark_key       VARCHAR NOT NULL,
    feature_fingerprint VARCHAR NOT NULL,
    objective           VARCHAR NOT NULL,
    lambda_min          DOUBLE NOT NULL,
    lambda_max          DOUBLE NOT NULL,
    seeds               INTEGER[] NOT NULL,
    val_area            DOUBLE[] NOT NULL,    -- validation frontier area per seed (selection)
    selected_seed       INTEGER NOT NULL,
    train_wall_s        DOUBLE NOT NULL,      -- policy training, all seeds
    created_at          TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- The accuracy-cost frontier of a `router eval` run on the test questions: the router per
-- lambda (mean and t-interval over seeds), every fixed combination, the per-query oracle and
-- an evolved config.
CREATE TABLE IF NOT EXISTS router_frontier (
    run_id             VARCHAR NOT NULL,
    model_id           VARCHAR NOT NULL,
    method             VARCHAR NOT NULL,      -- router | fixed | oracle | evolved
    label              VARCHAR NOT NULL,      -- lambda, combination or config hash
    cost_lambda        DOUBLE,                -- the cost weight (router, oracle)
    n_seeds            INTEGER NOT NULL,
    n_questions        INTEGER NOT NULL,
    quality            DOUBLE NOT NULL,
    quality_ci_low     DOUBLE,
    quality_ci_high    DOUBLE,
    context_tokens     DOUBLE NOT NULL,       -- mean per question
    context_tokens_ci_low  DOUBLE,
    context_tokens_ci_high DOUBLE,
    cost               DOUBLE,                -- mean normalised cost (all-high = 1 per weight)
    PRIMARY KEY (run_id, method, label)
);

-- `memevolve bench search`: every strategy at equal budgets of dev evaluations. One row per
-- evaluation of a (strategy, seed, budget) run, in order; the start config is eval_index 1.
CREATE TABLE IF NOT EXISTS bench_search (
    run_id       VARCHAR NOT NULL,          -- the bench run (runs.kind = 'bench')
    fold         INTEGER NOT NULL,          -- dev/test fold (0 for a single split)
    strategy     VARCHAR NOT NULL,          -- memevolve | optuna-tpe | random | hill-climber
    seed         INTEGER NOT NULL,
    budget       INTEGER NOT NULL,          -- dev evaluations allowed
    eval_index   INTEGER NOT NULL,          -- 1..budget
    config_hash  VARCHAR NOT NULL,
    dev_score    DOUBLE,                    -- this config's mean objective on dev
    best_so_far  DOUBLE,                    -- dev score of the config the strategy would return
                                            -- now (memevolve: its guarded incumbent)
    PRIMARY KEY (run_id, fold, strategy, seed, budget, eval_index)
);

-- One row per (strategy, seed, budget) run: its choice on dev, scored once on test.
CREATE TABLE IF NOT EXISTS bench_summary (
    run_id       VARCHAR NOT NULL,
    fold         INTEGER NOT NULL,
    strategy     VARCHAR NOT NULL,
    seed         INTEGER NOT NULL,
    budget       INTEGER NOT NULL,
    evaluations  DOUBLE NOT NULL,           -- dev evaluations spent (repeats count), by the
                                            -- questions scored
    distinct_configs INTEGER NOT NULL,
    choice_hash  VARCHAR NOT NULL,          -- in configs: 'memevolve export' reads it
    best_dev     DOUBLE,
    test_score   DOUBLE,                    -- headline: non-adversarial test questions
    test_adversarial DOUBLE,                -- adversarial test questions, apart
    gap          DOUBLE,                    -- best_dev - test_score
    start_test   DOUBLE,                    -- the start config's test_score on this fold
    excess_gap   DOUBLE,                    -- gap less the start config's own dev - test:
                                            -- the dev gain that did not hold on test
    auc          DOUBLE,                    -- mean of best_so_far over the budget
    wall_s       DOUBLE NOT NULL,           -- the run, its one test evaluation included
    PRIMARY KEY (run_id, fold, strategy, seed, budget)
);

-- `memevolve bench eval`: evaluation throughput per dataset, phase and worker count.
CREATE TABLE IF NOT EXISTS bench_throughput (
    run_id           VARCHAR NOT NULL,      -- one `bench eval` (no runs row: it spans benchmarks)
    dataset          VARCHAR NOT NULL,      -- locomo | synthetic-10k | synthetic-100k | ...
    benchmark_key    VARCHAR NOT NULL,
    n_turns          INTEGER NOT NULL,
    n_questions      INTEGER NOT NULL,
    retrievers       VARCHAR NOT NULL,      -- of the base config of the 8 evaluated at once
    workers          INTEGER NOT NULL,      -- Ray actors (0 = in the driver process)
    phase            VARCHAR NOT NULL,      -- cold | warm-store | warm-indexes |
                                            -- new-process-store | new-process-compute
    configs          INTEGER NOT NULL,
    wall_s           DOUBLE NOT NULL,
    startup_s        DOUBLE NOT NULL,       -- Ray start and actor creation (in wall_s too)
    questions_per_s  DOUBLE NOT NULL,       -- configs x questions / (wall_s - startup_s - train_s)
    configs_per_s    DOUBLE NOT NULL,       -- configs / (wall_s - startup_s - train_s)
    store_reuse      DOUBLE NOT NULL,       -- share of outcomes read from the run store
    embed_hits       BIGINT NOT NULL,       -- texts found in the embedding cache
    embed_misses     BIGINT NOT NULL,       -- texts that had to be embedded
    driver_rss_mb    DOUBLE NOT NULL,       -- getrusage peak of the measuring process
    tree_rss_mb      DOUBLE NOT NULL,       -- sampled peak of it plus every descendant (Ray)
    note             VARCHAR NOT NULL,
    -- learned rerankers trained for the configs (in wall_s too; NULL: measured before it was)
    train_s          DOUBLE,
    PRIMARY KEY (run_id, dataset, workers, phase)
);

-- `memevolve bench scale`: per-question index and embedding times on LongMemEval.
CREATE TABLE IF NOT EXISTS bench_scale (
    run_id        VARCHAR NOT NULL,
    benchmark_key VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,         -- evolve.bench.scale COLD_STAGES, WARM_STAGES
    n             INTEGER NOT NULL,         -- questions timed (1: a stage timed as a whole)
    total_s       DOUBLE NOT NULL,          -- wall clock of the stage
    mean_ms       DOUBLE NOT NULL,
    p50_ms        DOUBLE NOT NULL,
    p95_ms        DOUBLE NOT NULL,
    max_ms        DOUBLE NOT NULL,
    texts         BIGINT NOT NULL,          -- texts embedded or looked up (embedding stages)
    cache_hits    BIGINT NOT NULL,
    driver_peak_mb DOUBLE,                  -- peak RSS (MiB) up to the stage's end; NULL in
    actors_peak_mb DOUBLE,                  -- rows of schema 5: sum over the actors,
    actor_peaks_mb DOUBLE[],                -- each actor's (shard order),
    tree_peak_mb  DOUBLE,                   -- the sampled process tree (Ray's processes too)
    PRIMARY KEY (run_id, stage)
);
