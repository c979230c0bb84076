"""The LLM diagnoser: a seeded prompt of failure buckets and sampled failures in, edits validated
against the space out; falls back to the rules diagnoser when the model fails."""
from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from benchmarks.errors import MemevolveError
from evolve.diagnosers.base import DiagnosisContext, Edit, Proposal, register
from evolve.diagnosers.rules import RulesDiagnoser, failure_buckets
from evolve.evaluation import objective_column
from evolve.llm import LLMClient, LLMError, LLMReplyError, LLMSettings, Messages, ResponseCache
from evolve.diagnosers.base import context_budgets
from search_space.config import ConfigError, SpaceConfig, validate_values
from search_space.dimensions import space_documentation

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class PromptSize:
    """How much of the failures and the history one prompt shows."""

    failures: int
    #: Attempts shown, latest first; None: the whole history.
    history: int | None
    edits: int
    units: int
    ids: int
    chars: int
    #: Per-question-type statistics (questions, mean objective, zero and partial recall).
    per_type: bool


#: Sized for a small local model with a context of a few thousand tokens (about 2,500).
SMALL = PromptSize(failures=5, history=10, edits=4, units=3, ids=8, chars=120, per_type=False)
#: About 20,000 tokens: 30 failures with their context and gold evidence, the whole history.
LARGE = PromptSize(failures=30, history=None, edits=12, units=8, ids=20, chars=400,
                   per_type=True)
#: Input tokens from which a model gets the large prompt (room for it and the reply).
LARGE_CONTEXT = 32_000
#: Fields the user chooses, never the tuner (an LLM answerer needs a model and a key).
NOT_TUNED = ("answerer",)

SYSTEM = ("You tune the retrieval configuration of the long-term memory of an LLM agent. You "
          "read failure statistics and sampled failures on development questions, then propose "
          "small configuration edits likely to raise the objective. Reply with one JSON object "
          "and nothing else.")

FAILURE_SQL = """
SELECT question_id, conversation_id, category, question_type, retrieved_ids, context_ids,
       evidence_ids, recall_in_context, evidence_rank, answer
FROM question_results
WHERE config_hash = ? AND benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[]))
  AND invalid_reason IS NULL AND recall_in_context < 1
ORDER BY question_id
"""

SUMMARY_SQL = """
SELECT count(*) AS n, avg(CAST({column} AS DOUBLE)) AS score
FROM question_results
WHERE config_hash = ? AND benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[]))
  AND invalid_reason IS NULL
"""


class EditReply(BaseModel):
    field: str
    value: Any
    category: str | int | None = None


class ProposalReply(BaseModel):
    edits: list[EditReply]
    # Small models write null for a field they have nothing to say about.
    rationale: str | None = None


class DimensionReply(BaseModel):
    name: str
    description: str
    rationale: str | None = None


class DiagnosisReply(BaseModel):
    """The JSON the model must return; without "proposals" it is not a reply (and is sent
    back for repair), so that any stray JSON object does not pass as "nothing to propose"."""

    proposals: list[ProposalReply]
    new_dimensions: list[DimensionReply] = Field(default_factory=list)


@register
class LLMDiagnoser:
    """Asks an LLM for at most K proposals of 1-3 edits; drops invalid ones with a note, records
    proposed new dimensions, and falls back to the rules diagnoser when the LLM fails.

    ``model`` holds LLMSettings fields; its ``max_tokens`` bounds the reply (a proposal takes
    about 60 tokens, so 512 leaves room for several). The prompt is sized to the model's
    context window as litellm knows it: about 2,500 tokens (SMALL: a local server needs a
    context of 4,096 or more) or, from LARGE_CONTEXT input tokens, about 20,000 (LARGE).
    """

    name = "llm"

    def __init__(self, model: dict[str, Any] | None) -> None:
        if not model:
            raise MemevolveError("the llm diagnoser needs a model. Fix: set diagnoser_model "
                                 "(LLM settings: model, api_base, ...) or pass --diagnoser-model.")
        try:
            settings = LLMSettings(**model)
        except ValidationError as exc:
            raise MemevolveError(f"diagnoser_model is not valid LLM settings: {exc}. Fix: give "
                                 "at least 'model' (a litellm model name).") from None
        self.client = LLMClient(settings, ResponseCache())
        self.size = prompt_size(settings)
        self.params = structured_output(settings)

    def propose(self, context: DiagnosisContext) -> list[Proposal]:
        try:
            reply, _ = self.client.complete_json(diagnosis_messages(context, self.size),
                                                 DiagnosisReply, purpose="diagnose",
                                                 **self.params)
        except LLMReplyError as exc:
            return self._fall_back(context, f"invalid JSON after one repair: "
                                            f"{_clip(exc.validation_error, 200)}")
        except LLMError as exc:
            return self._fall_back(context, _clip(str(exc), 300))
        finally:
            self._record_calls(context)
        _record_dimensions(context, reply.new_dimensions)
        if not reply.proposals:
            context.notes.append("llm reply held no proposals")
        return validated_proposals(context, reply.proposals)

    def _record_calls(self, context: DiagnosisContext) -> None:
        context.llm_calls.extend(call.as_row() for call in self.client.drain_calls())

    def _fall_back(self, context: DiagnosisContext, why: str) -> list[Proposal]:
        log.warning("llm diagnoser failed (%s); falling back to rules", why)
        context.notes.append(f"llm diagnoser failed ({why}); fell back to rules")
        context.fallback = why
        return RulesDiagnoser().propose(context)


def context_window(settings: LLMSettings) -> int | None:
    """The model's input tokens from litellm's model information (its local cost map); None for
    a local server (whose context is whatever it was started with) or a model litellm lacks."""
    if settings.is_local:
        return None
    import litellm

    try:
        info = litellm.get_model_info(settings.model)
    except Exception:  # litellm raises a bare Exception for a model it does not map
        return None
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def prompt_size(settings: LLMSettings) -> PromptSize:
    window = context_window(settings)
    return LARGE if window is not None and window >= LARGE_CONTEXT else SMALL


def structured_output(settings: LLMSettings) -> dict[str, Any]:
    """The request parameters that ask the provider for DiagnosisReply JSON in its structured-
    output mode, where litellm says the model has one; else none (the reply is parsed and
    repaired once, as always)."""
    if settings.is_local:
        return {}
    import litellm

    try:
        supported = litellm.supports_response_schema(model=settings.model)
    except Exception:  # unknown model: no structured output
        supported = False
    if not supported:
        return {}
    return {"response_format": {"type": "json_schema", "json_schema": {
        "name": "diagnosis", "schema": DiagnosisReply.model_json_schema()}}}


def diagnosis_messages(context: DiagnosisContext, size: PromptSize = SMALL) -> Messages:
    """The prompt, a pure function of the store's rows and the context (its seed and round
    included). What stays the same every round (the task, the space, the reply format) comes
    first, so local servers and providers reuse their cache of that prefix."""
    system = "\n\n".join([
        SYSTEM,
        "## Search space: field (type: allowed values; default; scope): meaning\n"
        + space_documentation(context.space.dimensions),
        _instructions(context, _categories(context))])
    summary = context.store.query(
        SUMMARY_SQL.format(column=objective_column(context.objective)),
        [context.incumbent.config_hash, context.benchmark_key, context.question_ids])[0]
    score = "n/a" if summary["score"] is None else f"{summary['score']:.4f}"
    user = "\n\n".join([
        f"## Round {context.round}: {context.objective} is now {score} over {summary['n']} dev "
        "questions",
        *([_per_type(context)] if size.per_type else []),
        "## Failure buckets (category | bucket | questions | mean rank of first gold unit)\n"
        + _buckets(context),
        _failures(context, size),
        "## Current config (fields that differ from the defaults)\n" + _current(context.incumbent),
        _history(context, size),
        "Reply with the JSON object only."])
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def validated_proposals(context: DiagnosisContext, replies: list[ProposalReply]
                        ) -> list[Proposal]:
    """The admissible, distinct proposals; each dropped one leaves a note saying why."""
    categories = set(_categories(context))
    proposals: list[Proposal] = []
    seen: dict[str, int] = {}
    for number, reply in enumerate(replies, start=1):
        if len(proposals) == context.n_proposals:
            context.notes.append(f"llm proposals {number}-{len(replies)} ignored: only "
                                 f"{context.n_proposals} asked for")
            break
        proposal, why = _proposal(context, reply, categories)
        if proposal is None:
            context.invalid.append({
                "proposer": LLMDiagnoser.name, "reason": why,
                "edit_json": json.dumps([{"field": e.field, "value": e.value,
                                          "category": e.category} for e in reply.edits],
                                        sort_keys=True, default=str),
                "rationale": _clip(reply.rationale or "", 500) or "(no rationale given)"})
        else:
            config = context.admissible(proposal)
            if config is None:
                why = _inadmissible(context, proposal)
            elif config.config_hash in seen:
                why = f"same config as proposal {seen[config.config_hash]}"
            else:
                seen[config.config_hash] = number
                proposals.append(proposal)
                continue
        context.notes.append(f"llm proposal {number} rejected: {why}")
    return proposals


def _proposal(context: DiagnosisContext, reply: ProposalReply,
              categories: set[str]) -> tuple[Proposal | None, str | None]:
    if not 1 <= len(reply.edits) <= 3:
        return None, f"{len(reply.edits)} edits (1 to 3 allowed)"
    edits = []
    for item in reply.edits:
        category = None if item.category in (None, "") else str(item.category)
        if item.field in NOT_TUNED:
            return None, f"'{item.field}' is chosen by the user, not tuned"
        if category is not None and category not in categories:
            return None, f"unknown category '{category}' (known: {', '.join(sorted(categories))})"
        clean, problems = validate_values({item.field: item.value},
                                          per_category=category is not None,
                                          space=context.space.dimensions_by_name)
        if problems:
            return None, "; ".join(problems)
        edits.append(Edit(item.field, clean[item.field], category))
    proposal = Proposal(tuple(edits), _clip(reply.rationale or "", 500) or
                        "(no rationale given)", LLMDiagnoser.name)
    try:
        config = proposal.apply(context.incumbent)
    except ConfigError as exc:
        return None, "; ".join(exc.problems)
    idle = [e.field for e in edits if context.space.dimensions_by_name[e.field].needs_llm
            and getattr(config, "answerer", None) != "llm"]
    if idle:
        return None, f"{', '.join(idle)} only matters with answerer=llm"
    return proposal, None


def _inadmissible(context: DiagnosisContext, proposal: Proposal) -> str:
    """Why ``context.admissible`` refused a proposal that applies cleanly."""
    config = proposal.apply(context.incumbent)
    budgets = context_budgets(config)
    if max(budgets) > context.max_context_tokens:
        return (f"context_budget {max(budgets)} exceeds the cap of "
                f"{context.max_context_tokens} tokens")
    if config == context.incumbent:
        return "changes nothing"
    return "that config was already tried"


def _record_dimensions(context: DiagnosisContext, replies: list[DimensionReply]) -> None:
    for reply in replies:
        name = reply.name.strip()
        if name in context.space.dimensions_by_name:
            context.notes.append(f"llm new dimension '{name}' ignored: already in the space")
        elif name and reply.description.strip():
            context.new_dimensions.append({"name": _clip(name, 100),
                                           "description": _clip(reply.description, 500),
                                           "rationale": _clip(reply.rationale or "", 500)})


def _buckets(context: DiagnosisContext) -> str:
    rows = failure_buckets(context)
    if not rows:
        return "(no failing questions)"
    return "\n".join(f"{r['category']} | {r['bucket']} | {r['n']} | "
                     f"{'-' if r['mean_rank'] is None else round(r['mean_rank'], 1)}"
                     for r in rows)


#: Grouped by the PREDICTED type (as ``category``): the key of the overrides the LLM may propose.
PER_TYPE_SQL = """
SELECT question_type AS category, count(*) AS n, avg(CAST({column} AS DOUBLE)) AS score,
       count(*) FILTER (WHERE recall_in_context = 0) AS zero,
       count(*) FILTER (WHERE recall_in_context > 0 AND recall_in_context < 1) AS partial
FROM question_results
WHERE config_hash = ? AND benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[]))
  AND invalid_reason IS NULL
GROUP BY question_type ORDER BY question_type
"""


def _per_type(context: DiagnosisContext) -> str:
    rows = context.store.query(
        PER_TYPE_SQL.format(column=objective_column(context.objective)),
        [context.incumbent.config_hash, context.benchmark_key, context.question_ids])
    return "\n".join([f"## Per predicted question type (type | questions | {context.objective} | "
                      "zero recall | partial recall)"] +
                     [f"{r['category']} | {r['n']} | "
                      f"{'n/a' if r['score'] is None else round(r['score'], 4)} | "
                      f"{r['zero']} | {r['partial']}" for r in rows])


def _failures(context: DiagnosisContext, size: PromptSize) -> str:
    rows = context.store.query(FAILURE_SQL, [context.incumbent.config_hash,
                                             context.benchmark_key, context.question_ids])
    sample = stratified_sample(rows, size.failures, context.seed * 1009 + context.round)
    head = (f"## Sampled failures ({len(sample)} of {len(rows)} with recall_in_context < 1, "
            "stratified by category and zero/partial recall)")
    return "\n".join([head, *(_failure(context, row, size) for row in sample)] if sample else
                     [head, "(none)"])


def stratified_sample(rows: list[dict[str, Any]], size: int, seed: int) -> list[dict[str, Any]]:
    """Up to ``size`` rows, round-robin over categories and, within a category, alternating zero
    and partial recall: every category is shown before any is shown twice. ``seed`` shuffles
    the order of categories, of the two kinds and of the rows within each kind."""
    rng = random.Random(seed)
    by_category: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for row in rows:
        kind = "zero" if row["recall_in_context"] == 0 else "partial"
        by_category.setdefault(row["category"], {}).setdefault(kind, []).append(row)
    queues = []
    for category in sorted(by_category):
        kinds = [by_category[category][kind] for kind in sorted(by_category[category])]
        for members in kinds:
            rng.shuffle(members)
        rng.shuffle(kinds)
        queues.append(_interleave(kinds))
    rng.shuffle(queues)
    return _interleave(queues)[:size]


def _interleave(lists: list[list[Any]]) -> list[Any]:
    """The first of each list, then the second of each, and so on."""
    longest = max((len(members) for members in lists), default=0)
    return [members[i] for i in range(longest) for members in lists if i < len(members)]


def _failure(context: DiagnosisContext, row: dict[str, Any], size: PromptSize) -> str:
    rank = row["evidence_rank"] if row["evidence_rank"] is not None else "not retrieved"
    retrieved = ", ".join(row["retrieved_ids"][:size.ids])
    if len(row["retrieved_ids"]) > size.ids:
        retrieved += f" (+{len(row['retrieved_ids']) - size.ids} more)"
    lines = [f"### {row['question_id']} (category {row['category']}, predicted type "
             f"{row['question_type']}, recall_in_context "
             f"{row['recall_in_context']:.2f}, first gold rank {rank})",
             f"retrieved (rank order): {retrieved}",
             "gold evidence:", *_units(context, row, row["evidence_ids"], size.chars),
             f"context ({len(row['context_ids'])} units in context order"
             f"{f', first {size.units} shown' if len(row['context_ids']) > size.units else ''}):",
             *_units(context, row, row["context_ids"][:size.units], size.chars),
             f"answer: {json.dumps(_clip(row['answer'], size.chars))}"]
    return "\n".join(lines)


def _units(context: DiagnosisContext, row: dict[str, Any], ids: list[str],
           chars: int) -> list[str]:
    if not ids:
        return ["- (none)"]
    if context.describe_units is None:
        return [f"- {unit_id}" for unit_id in ids]
    texts = context.describe_units(row["conversation_id"], list(ids))
    return [f"- {unit_id}: {_clip(text, chars)}" for unit_id, text in zip(ids, texts)]


def _current(config: SpaceConfig) -> str:
    lines = [f"- {d.name} = {json.dumps(getattr(config, d.name))}" for d in config.dimensions
             if getattr(config, d.name) != d.default]
    lines += [f"- {name} = {json.dumps(value)} for predicted type {category}"
              for category, fields in config.overrides.items() for name, value in fields.items()]
    return "\n".join(lines) or "(all defaults)"


def _history(context: DiagnosisContext, size: PromptSize) -> str:
    shown = context.history[-size.history:] if size.history else context.history
    head = f"## Attempt history (last {len(shown)} of {len(context.history)})"
    if not shown:
        return head + "\n(none yet)"
    lines = []
    for attempt in shown:
        edits = [Edit(**{**e, "value": _rounded(e["value"])}).label()
                 for e in json.loads(attempt.edit_json)]
        more = f" (+{len(edits) - size.edits} more)" if len(edits) > size.edits else ""
        edits = ", ".join(edits[:size.edits]) + more
        delta = "n/a" if attempt.delta is None else f"{attempt.delta:+.4f}"
        lines.append(f"- round {attempt.round}, {attempt.proposer}: {edits} -> delta {delta}, "
                     f"{attempt.decision}")
    return "\n".join([head, *lines])


def _instructions(context: DiagnosisContext, categories: list[str]) -> str:
    example = {"proposals": [{"edits": [{"field": "<field>", "value": "<value>",
                                         "category": None}],
                              "rationale": "<which failures this fixes and why>"}],
               "new_dimensions": [{"name": "<name>", "description": "<what it would control>",
                                   "rationale": "<which failures need it>"}]}
    return (f"## Your reply\nPropose at most {context.n_proposals} proposals. A proposal is 1 to "
            "3 edits tried together. An edit sets a field of the search space to an allowed "
            "value; \"category\" is null for a global edit, or one of "
            f"{', '.join(categories) or '(none)'} for a per-category field: a PREDICTED question "
            "type (the override applies to the questions the type predictor assigns to it, "
            "whatever their gold category). "
            + (f"context_budget (global and per category) must stay <= "
               f"{context.max_context_tokens} tokens. "
               if "context_budget" in context.space.dimensions_by_name else "")
            + "Do not repeat an attempt from the history. You may also name new dimensions the "
            "space lacks; they are recorded for a person, never run. Leave new_dimensions empty "
            f"unless a failure needs one.\nReply with JSON only, in this shape:\n"
            f"{json.dumps(example)}")


def _categories(context: DiagnosisContext) -> list[str]:
    rows = context.store.query(
        "SELECT DISTINCT question_type FROM question_results WHERE config_hash = ? AND "
        "benchmark_key = ? AND question_id IN (SELECT unnest(?::VARCHAR[])) "
        "AND question_type IS NOT NULL ORDER BY question_type",
        [context.incumbent.config_hash, context.benchmark_key, context.question_ids])
    return [r["question_type"] for r in rows]


def _rounded(value: Any) -> Any:
    return round(value, 3) if isinstance(value, float) else value


def _clip(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[:chars - 3] + "..."
