-- memevolve run store (DuckDB). One file holds every run; SQL is the API for analysis.
-- schema_version is checked on open: a file written by another version is refused, not migrated
-- silently.

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
    kind          VARCHAR NOT NULL,          -- eval | evolve | bench
    benchmark_key VARCHAR NOT NULL,
    split_name    VARCHAR NOT NULL,
    split_seed    INTEGER NOT NULL,
    split_json    VARCHAR NOT NULL,          -- dev/test conversation ids
    settings_json VARCHAR NOT NULL,          -- CLI settings (objective, budgets, seed, ...)
    status        VARCHAR NOT NULL,          -- running | converged | budget_spent | done | failed
    started_at    TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at   TIMESTAMP
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
    score         DOUBLE,                    -- mean objective over the part
    wall_s        DOUBLE NOT NULL,
    created_at    TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE IF NOT EXISTS evaluation_questions (
    evaluation_id VARCHAR NOT NULL,
    question_id   VARCHAR NOT NULL,
    PRIMARY KEY (evaluation_id, question_id)
);

-- The outcome of one question under one config: a pure function of (config, benchmark,
-- question), hence the cache key. Reused across runs.
CREATE TABLE IF NOT EXISTS question_results (
    config_hash        VARCHAR NOT NULL,
    benchmark_key      VARCHAR NOT NULL,
    question_id        VARCHAR NOT NULL,
    conversation_id    VARCHAR NOT NULL,
    category           VARCHAR NOT NULL,
    adversarial        BOOLEAN NOT NULL,
    retrieved_ids      VARCHAR[] NOT NULL,   -- unit ids in rank order (rank = position + 1)
    context_ids        VARCHAR[] NOT NULL,   -- units packed into the context, in context order
    evidence_ids       VARCHAR[] NOT NULL,   -- gold turn ids
    recall_at_5        DOUBLE,               -- NULL when the question has no gold evidence
    recall_at_10       DOUBLE,
    recall_at_k        DOUBLE,
    recall_in_context  DOUBLE,               -- evidence recall within the context budget
    session_recall_at_5 DOUBLE,
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

CREATE TABLE IF NOT EXISTS llm_calls (
    call_key          VARCHAR NOT NULL,
    run_id            VARCHAR,
    model             VARCHAR NOT NULL,
    purpose           VARCHAR NOT NULL,      -- answer | diagnose | judge
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
    evaluations_used  INTEGER NOT NULL,
    tokens_used       BIGINT NOT NULL,
    cost_used         DOUBLE NOT NULL,
    wall_s            DOUBLE NOT NULL,
    committed_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (run_id, round)
);

CREATE TABLE IF NOT EXISTS candidates (
    run_id         VARCHAR NOT NULL,
    round          INTEGER NOT NULL,
    candidate      INTEGER NOT NULL,
    parent_hash    VARCHAR NOT NULL,
    config_hash    VARCHAR NOT NULL,
    proposer       VARCHAR NOT NULL,         -- rules | llm | optuna
    edit_json      VARCHAR NOT NULL,
    rationale      VARCHAR NOT NULL,
    dev_score      DOUBLE,
    delta          DOUBLE,                   -- paired mean gain over the incumbent
    ci_low         DOUBLE,
    ci_high        DOUBLE,
    p_value        DOUBLE,
    decision       VARCHAR NOT NULL,         -- accepted | rejected | reverted | invalid
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
