"""Offline benchmark scores: LoCoMo answer F1, evidence recall, LongMemEval and MemBench metrics."""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from nltk.stem import PorterStemmer

if TYPE_CHECKING:
    from benchmarks.model import Question

LOCOMO_MULTI_HOP = "1"
LOCOMO_TEMPORAL = "2"
LOCOMO_OPEN_DOMAIN = "3"
LOCOMO_SINGLE_HOP = "4"
LOCOMO_ADVERSARIAL = "5"

LONGMEMEVAL_KS: tuple[int, ...] = (5, 10, 50)

# The official scorer removes commas before the rest of the punctuation; deleting both in one
# translate pass gives the same string, since a comma is punctuation too.
_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the|and)\b")
_NOT_IN_MEMORY_PHRASES = ("not mentioned", "no information available")
_PORTER = PorterStemmer()


# --- LoCoMo answer scoring (snap-research/locomo task_eval/evaluation.py) ------------------------

def normalize_answer(text: str) -> str:
    """LoCoMo normalisation: drop commas, lowercase, drop punctuation and a/an/the/and words."""
    text = text.replace(",", "").lower().translate(_PUNCTUATION_TABLE)
    return " ".join(_ARTICLES.sub(" ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """Token F1 of Porter-stemmed normalised tokens, repeats counted (official ``f1_score``)."""
    prediction_tokens = _stemmed_tokens(prediction)
    gold_tokens = _stemmed_tokens(gold)
    overlap = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def multi_hop_f1(prediction: str, gold: str) -> float:
    """Official ``f1`` on comma lists: mean over gold items of the best F1 of any predicted item."""
    predicted_items = [item.strip() for item in prediction.split(",")]
    gold_items = [item.strip() for item in gold.split(",")]
    return sum(max(token_f1(p, g) for p in predicted_items) for g in gold_items) / len(gold_items)


def says_not_mentioned(prediction: str) -> bool:
    """True when an answer declares the information absent, in the official category-5 wording."""
    lowered = prediction.lower()
    return any(phrase in lowered for phrase in _NOT_IN_MEMORY_PHRASES)


def locomo_answer_score(prediction: str, question: Question) -> float:
    """Score one answer by the official LoCoMo rule for the question's category.

    Adversarial questions (LoCoMo category 5, LongMemEval ``_abs``) score 1.0 only when the
    answer says the information is not there, whatever their category text. Categories that are
    not LoCoMo ids (LongMemEval or MemBench question types) get token F1 against the best of the
    gold answers.
    """
    if question.adversarial or question.category == LOCOMO_ADVERSARIAL:
        return 1.0 if says_not_mentioned(prediction) else 0.0
    if not question.answers:
        raise ValueError(f"question {question.id!r} has no gold answer and is not adversarial, "
                         "so it cannot be scored; the benchmark loader should set `answers`")
    if question.category == LOCOMO_MULTI_HOP:
        return max(multi_hop_f1(prediction, gold) for gold in question.answers)
    if question.category == LOCOMO_OPEN_DOMAIN:
        # Category-3 gold is often "answer; rationale": only the answer part is scored.
        return max(token_f1(prediction, gold.split(";")[0].strip()) for gold in question.answers)
    return max(token_f1(prediction, gold) for gold in question.answers)


# --- Evidence recall (every benchmark) -----------------------------------------------------------

def evidence_recall_at_k(retrieved_ids: Sequence[Hashable], gold: Collection[Hashable],
                         k: int) -> float | None:
    """Share of the distinct gold units found in the top ``k``; None when there is no gold."""
    _check_k(k)
    gold_set = set(gold)
    if not gold_set:
        return None
    return len(gold_set.intersection(retrieved_ids[:k])) / len(gold_set)


def evidence_recall_within_budget(retrieved_ids: Sequence[Hashable], token_counts: Sequence[int],
                                  gold: Collection[Hashable], budget: int) -> float | None:
    """Share of the distinct gold units in the rank-order prefix that fits in ``budget`` tokens.

    The prefix ends before the first unit that would overflow the budget, even if a later,
    shorter unit would fit: an answering LLM given this context sees the ranking's head only.
    """
    if len(retrieved_ids) != len(token_counts):
        raise ValueError(f"{len(retrieved_ids)} retrieved ids but {len(token_counts)} token "
                         "counts; pass one token count per retrieved unit")
    gold_set = set(gold)
    if not gold_set:
        return None
    used = 0
    fitting = 0
    for count in token_counts:
        used += count
        if used > budget:
            break
        fitting += 1
    return len(gold_set.intersection(retrieved_ids[:fitting])) / len(gold_set)


def session_recall_at_k(retrieved_session_indices: Sequence[int], gold_sessions: Collection[int],
                        k: int) -> float | None:
    """Share of gold sessions among the first ``k`` distinct sessions in rank order (None: no gold).

    Turn rankings name a session once per retrieved turn; de-duplicating first makes ``k``
    count sessions, as the official LongMemEval turn-to-session evaluation does.
    """
    _check_k(k)
    gold_set = set(gold_sessions)
    if not gold_set:
        return None
    return len(gold_set.intersection(_first_distinct(retrieved_session_indices, k))) / len(gold_set)


# --- LongMemEval retrieval metrics (xiaowu0162/LongMemEval src/retrieval/eval_utils.py) ----------

def recall_any_at_k(ranked_ids: Sequence[Hashable], gold_ids: Collection[Hashable],
                    k: int) -> float | None:
    """1.0 if any gold id is in the top ``k``, else 0.0; None when there is no gold."""
    _check_k(k)
    if not gold_ids:
        return None
    return _recall_any(set(ranked_ids[:k]), gold_ids)


def recall_all_at_k(ranked_ids: Sequence[Hashable], gold_ids: Collection[Hashable],
                    k: int) -> float | None:
    """1.0 if every gold id is in the top ``k``, else 0.0; None when there is no gold."""
    _check_k(k)
    if not gold_ids:
        return None
    return _recall_all(set(ranked_ids[:k]), gold_ids)


def ndcg_at_k(ranked_ids: Sequence[Hashable], gold_ids: Collection[Hashable], k: int,
              corpus_ids: Collection[Hashable] | None = None) -> float:
    """LongMemEval's nDCG@k with binary relevance; 0.0 when no gold unit can be retrieved.

    The official DCG leaves both rank 1 and rank 2 undiscounted (``rel[0] + sum(rel[1:k] /
    log2(arange(2, k + 1)))``), unlike the textbook ``log2(rank + 1)``; it is kept so numbers
    compare with published ones. The ideal DCG ranks ``min(#gold, k)`` relevant units first;
    with ``corpus_ids`` only gold units present in the corpus count, as officially. A gold id
    ranked twice counts once, at its better rank.
    """
    _check_k(k)
    gold_set = set(gold_ids)
    if corpus_ids is not None:
        gold_set.intersection_update(corpus_ids)
    ideal = _dcg_of_ranks(range(min(len(gold_set), k)))
    if ideal == 0.0:
        return 0.0
    found: set[Hashable] = set()
    relevant_ranks = []
    for rank, unit_id in enumerate(ranked_ids[:k]):
        if unit_id in gold_set and unit_id not in found:
            found.add(unit_id)
            relevant_ranks.append(rank)
    return _dcg_of_ranks(relevant_ranks) / ideal


def longmemeval_retrieval_metrics(ranked_turn_ids: Sequence[str], gold_turn_ids: Collection[str],
                                  ranked_session_indices: Sequence[int],
                                  gold_sessions: Collection[int],
                                  ks: Sequence[int] = LONGMEMEVAL_KS) -> dict[str, float]:
    """Official recall_any, recall_all and nDCG at each k, at session and turn level.

    Keys read ``{level}_{metric}@{k}``, e.g. ``session_recall_any@5``, ``turn_ndcg@10``. The
    session ranking is de-duplicated in rank order first, so a turn-level ranking mapped to its
    sessions can be passed as is. A level with no gold is left out (its metrics are undefined,
    not zero). Abstention (``_abs``) questions belong out of the averages: see
    :func:`aggregate_longmemeval`.
    """
    distinct_sessions = _first_distinct(ranked_session_indices, max(ks, default=0))
    metrics: dict[str, float] = {}
    for level, ranked, gold in (("session", distinct_sessions, gold_sessions),
                                ("turn", ranked_turn_ids, gold_turn_ids)):
        if not gold:
            continue
        for k in ks:
            _check_k(k)
            top = set(ranked[:k])
            metrics[f"{level}_recall_any@{k}"] = _recall_any(top, gold)
            metrics[f"{level}_recall_all@{k}"] = _recall_all(top, gold)
            metrics[f"{level}_ndcg@{k}"] = ndcg_at_k(ranked, gold, k)
    return metrics


def aggregate_longmemeval(rows: Iterable[tuple[Question, Mapping[str, float]]]
                          ) -> dict[str, tuple[float, int]]:
    """Mean and question count of each retrieval metric, without adversarial (``_abs``) questions.

    The official evaluation excludes abstention questions: their gold sessions hold no answer,
    so retrieving them is not success. A metric a question lacks (a level without gold) is
    averaged over the questions that have it.
    """
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for question, metrics in rows:
        if question.adversarial:
            continue
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + value
            counts[name] = counts.get(name, 0) + 1
    return {name: (totals[name] / counts[name], counts[name]) for name in sorted(totals)}


#: The k of the official metrics a result row stores.
LONGMEMEVAL_STORED_KS: tuple[int, ...] = (5, 10)


def longmemeval_official_turn_metrics(ranked_turn_ids: Sequence[str],
                                      corpus_turn_ids: Sequence[str],
                                      target_turn_ids: Collection[str],
                                      session_of: Mapping[str, int],
                                      answer_sessions: Collection[int],
                                      ks: Sequence[int] = LONGMEMEVAL_STORED_KS,
                                      ) -> dict[str, float]:
    """The official turn-granularity retrieval metrics of one question, as
    ``run_retrieval.py`` computes them (``evaluate_retrieval`` and
    ``evaluate_retrieval_turn2session`` of ``eval_utils.py``).

    The corpus is the user turns (``corpus_turn_ids``, file order); a gold turn is a user turn
    with ``has_answer`` (``target_turn_ids``). Officially a turn id is ``<session>_<turn>``,
    where a non-gold turn of an answer session is renamed ``noans_...``: a session is recalled
    only through a gold turn, and ``answer_X`` and ``noans_X`` count as different sessions when
    k is widened until it covers k distinct sessions. nDCG counts every turn of the widened
    prefix. The ranking is completed with unranked corpus turns in corpus order, as the
    official retriever ranks the whole corpus. Keys ``{level}_{metric}@{k}``; empty when the
    question has no gold turn (officially those questions are skipped: 419 of 500 on oracle).
    """
    targets = set(target_turn_ids)
    if not targets:
        return {}
    answer = set(answer_sessions)

    def official_id(turn: str) -> str:
        prefix = "answer" if turn in targets else "noans" if session_of[turn] in answer else "s"
        return f"{prefix}{session_of[turn]}_{turn}"

    corpus = [official_id(t) for t in corpus_turn_ids]
    position = {t: i for i, t in enumerate(corpus_turn_ids)}
    rankings = [position[t] for t in dict.fromkeys(ranked_turn_ids) if t in position]
    seen = set(rankings)
    rankings += [i for i in range(len(corpus)) if i not in seen]
    correct = sorted({c for c in corpus if "answer" in c})
    out: dict[str, float] = {}
    sessions = [c.rsplit("_", 1)[0] for c in corpus]
    correct_sessions = sorted({c.rsplit("_", 1)[0] for c in correct})
    for k in ks:
        _check_k(k)
        for name, value in zip(("recall_any", "recall_all", "ndcg"),
                               _official_evaluate(rankings, correct, corpus, k)):
            out[f"turn_{name}@{k}"] = value
        effective = k
        while effective <= len(sessions) and \
                len({sessions[i] for i in rankings[:effective]}) < k:
            effective += 1
        for name, value in zip(("recall_any", "recall_all", "ndcg"),
                               _official_evaluate(rankings, correct_sessions, sessions, effective)):
            out[f"session_{name}@{k}"] = value
    return out


def _official_evaluate(rankings: Sequence[int], correct: Sequence[str], corpus: Sequence[str],
                       k: int) -> tuple[float, float, float]:
    recalled = {corpus[i] for i in rankings[:k]}
    relevances = [1.0 if c in correct else 0.0 for c in corpus]
    ideal = _official_dcg(sorted(relevances, reverse=True), k)
    actual = _official_dcg([relevances[i] for i in rankings[:k]], k)
    return (float(any(c in recalled for c in correct)), float(all(c in recalled for c in correct)),
            actual / ideal if ideal else 0.0)


def _official_dcg(relevances: Sequence[float], k: int) -> float:
    top = list(relevances)[:k]
    return sum(r if i == 0 else r / math.log2(i + 1) for i, r in enumerate(top))


def turn_recall_at_k(ranked_turn_ids: Sequence[str], gold: Collection[str], k: int) -> float | None:
    """Share of the gold turns among the first ``k`` distinct turns of a ranking of units
    expanded to their turns: comparable across unit kinds (a 3-turn window is 3 turns)."""
    return evidence_recall_at_k(_first_distinct(ranked_turn_ids, k), gold, k)


# --- MemBench ------------------------------------------------------------------------------------

def membench_accuracy(chosen_letter: str | None, question: Question) -> float:
    """1.0 when the chosen letter is the gold one (case, spaces ignored); no choice scores 0.0."""
    if question.correct_choice is None:
        raise ValueError(f"question {question.id!r} has no correct_choice, so it is not a MemBench "
                         "multiple-choice question; score it with locomo_answer_score instead")
    if chosen_letter is None:
        return 0.0
    return 1.0 if chosen_letter.strip().upper() == question.correct_choice.strip().upper() else 0.0


def membench_step_recall(retrieved_ids: Sequence[str], question: Question) -> float | None:
    """Official MemBench recall: share of target steps among all retrieved ones (None: no gold)."""
    return evidence_recall_at_k(retrieved_ids, question.evidence, len(retrieved_ids))


# --- Aggregation ---------------------------------------------------------------------------------

def mean_by_category(rows: Iterable[tuple[str, float | None]]) -> dict[str, tuple[float, int]]:
    """Mean and count of the scores of each category; None (an undefined metric) is skipped."""
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for category, score in rows:
        if score is None:
            continue
        totals[category] = totals.get(category, 0.0) + score
        counts[category] = counts.get(category, 0) + 1
    return {category: (totals[category] / counts[category], counts[category])
            for category in sorted(totals)}


# --- Helpers -------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def _stem(word: str) -> str:
    return _PORTER.stem(word)


def _stemmed_tokens(text: str) -> list[str]:
    return [_stem(word) for word in normalize_answer(text).split()]


def _recall_any(top: set[Hashable], gold_ids: Collection[Hashable]) -> float:
    return 1.0 if any(gold in top for gold in gold_ids) else 0.0


def _recall_all(top: set[Hashable], gold_ids: Collection[Hashable]) -> float:
    return 1.0 if all(gold in top for gold in gold_ids) else 0.0


def _dcg_of_ranks(relevant_ranks: Iterable[int]) -> float:
    # Official discount: rank 0 and rank 1 (0-based) both weigh 1, rank r >= 1 weighs 1/log2(r + 1).
    return sum(1.0 if rank == 0 else 1.0 / math.log2(rank + 1) for rank in relevant_ranks)


def _first_distinct(items: Iterable[Hashable], k: int) -> list[Hashable]:
    seen: set[Hashable] = set()
    distinct: list[Hashable] = []
    for item in items:
        if len(distinct) >= k:
            break
        if item not in seen:
            seen.add(item)
            distinct.append(item)
    return distinct


def _check_k(k: int) -> None:
    if k < 0:
        raise ValueError(f"k must be zero or more, got {k}")
