"""The extractive answerer: no LLM; a date, a span or 'not mentioned' straight from the context."""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from benchmarks.model import Question
from evolve.memory.text import (QUESTION_WORDS, STOPWORDS, is_temporal_question, resolve_relative,
                                stem)
from evolve.memory.units import MemoryUnit

NOT_MENTIONED = "Not mentioned in the conversation"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[A-Za-z0-9']+")


@dataclass(frozen=True)
class ExtractiveAnswer:
    text: str
    abstained: bool
    confidence: float


@lru_cache(maxsize=65536)
def content_stems(text: str) -> frozenset[str]:
    # Cached: each of a question's best units is weighed several times, by every config.
    return frozenset(stem(w.lower()) for w in _WORD.findall(text)
                     if w.lower() not in STOPWORDS and w.lower() not in QUESTION_WORDS)


def support(question: Question, unit: MemoryUnit, asked_speakers: tuple[str, ...]) -> float:
    """How well a unit supports the question: share of its content words present, halved when
    the question names a speaker and the unit is someone else's."""
    wanted = content_stems(question.text) - {s.lower() for s in asked_speakers}
    if not wanted:
        return 0.0
    share = len(wanted & content_stems(unit.text)) / len(wanted)
    if asked_speakers and unit.speaker and unit.speaker not in asked_speakers:
        share *= 0.5
    return share


def extractive_answer(question: Question, ranked_context: list[MemoryUnit],
                      asked_speakers: tuple[str, ...], *, abstain_threshold: float,
                      dates_in_context: bool) -> ExtractiveAnswer:
    if not ranked_context:
        return ExtractiveAnswer(NOT_MENTIONED, True, 0.0)
    best = max(ranked_context[:3], key=lambda u: support(question, u, asked_speakers))
    confidence = support(question, best, asked_speakers)
    if confidence < abstain_threshold:
        return ExtractiveAnswer(NOT_MENTIONED, True, confidence)
    if is_temporal_question(question.text) and dates_in_context and best.date is not None:
        return ExtractiveAnswer(resolve_relative(best.text, best.date), False, confidence)
    return ExtractiveAnswer(_best_span(question.text, best.text), False, confidence)


def _best_span(question: str, text: str) -> str:
    """The sentence sharing most content with the question, minus the words the question has."""
    wanted = content_stems(question)
    sentences = [s for s in _SENTENCE.split(text) if s.strip()] or [text]
    sentence = max(sentences, key=lambda s: len(wanted & content_stems(s)))
    asked = {stem(w.lower()) for w in _WORD.findall(question)}
    kept = [w for w in _WORD.findall(sentence)
            if stem(w.lower()) not in asked and w.lower() not in STOPWORDS]
    return " ".join(kept) if kept else sentence.strip()
