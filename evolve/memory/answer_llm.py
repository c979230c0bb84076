"""The LLM answerer: a reply from retrieved memory in one of the tunable answer styles."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evolve.memory.answer import NOT_MENTIONED

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.llm import LLMCall, LLMClient

ANSWER_STYLES: dict[str, str] = {
    "short": "Reply with a short phrase only, using exact words from the memory whenever "
             "possible. No explanation.",
    "sentence": "Reply with one sentence.",
    "reasoned": "Think briefly, step by step, about what the memory says. Then write the final "
                "answer as a short phrase on its own last line, starting with 'Answer:'.",
}

_SYSTEM = ("You answer questions about a long conversation between people, using only the "
           "memory excerpts you are given. When the question asks when, answer with a date "
           "worked out from the dates in the memory.")
# The official LoCoMo instruction for unanswerable questions; its scorer credits this wording.
_UNANSWERABLE = f'If the memory does not contain the answer, reply exactly "{NOT_MENTIONED}".'
_UNANSWERABLE_REASONED = (f"If the memory does not contain the answer, the last line must be "
                          f'exactly "Answer: {NOT_MENTIONED}".')
# Markdown bold around the label is common: "**Answer:** Paris".
_ANSWER_LINE = re.compile(r"^[\s*]*answer[\s*]*:[\s*]*(.*?)[\s*]*$",
                          re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class AnswerOutcome:
    text: str
    calls: list[LLMCall]


class LLMAnswerer:
    """Answers a question from its packed context; the prompt sees no label (gold, adversarial)."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def answer(self, question: Question, context: str, style: str) -> AnswerOutcome:
        messages = answer_messages(question, context, style)
        result = self.client.complete(messages, purpose="answer", validate=_has_text)
        text = final_answer(result.text) if style == "reasoned" else result.text.strip()
        return AnswerOutcome(text, [result.call])


def _has_text(reply: str) -> None:
    if not reply.strip():
        raise ValueError("the reply is empty")


def answer_messages(question: Question, context: str, style: str) -> list[dict[str, str]]:
    """The chat prompt: memory, question (and its date), the style's instruction."""
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; expected one of {sorted(ANSWER_STYLES)}")
    asked = (f"\nThe question is asked on {question.question_date:%d %B %Y}."
             if question.question_date else "")
    unanswerable = _UNANSWERABLE_REASONED if style == "reasoned" else _UNANSWERABLE
    user = (f"Memory:\n{context.strip() or '(empty)'}\n{asked}\n"
            f"Question: {question.text}\n\n{ANSWER_STYLES[style]} {unanswerable}")
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def final_answer(reply: str) -> str:
    """The text after the last 'Answer:' line; the last non-empty line when the model wrote none."""
    marked = _ANSWER_LINE.findall(reply)
    if marked:
        return marked[-1].strip()
    lines = [line.strip() for line in reply.splitlines() if line.strip()]
    return lines[-1] if lines else ""
