"""The LLM judge: LongMemEval-style yes/no verdict on whether a response answers a question."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.llm import LLMCall, LLMClient

_ANSWERABLE = (
    "I will give you a question, the correct answer and a response from a model. Answer yes if "
    "the response contains the correct answer, or is equivalent to it, or contains all the "
    "intermediate steps needed to reach it. Answer no if the response contains only part of the "
    "information the answer requires, or something else.\n\n"
    "Question: {question}\n\nCorrect answer: {gold}\n\nModel response: {response}\n\n"
    "Is the model response correct? Answer yes or no only.")
_UNANSWERABLE = (
    "I will give you a question that cannot be answered from the conversation, an explanation, "
    "and a response from a model. Answer yes if the response correctly says the information is "
    "not available (for example that it was not mentioned, or that other information is given "
    "but not the one asked for). Answer no if the response answers the question anyway.\n\n"
    "Question: {question}\n\nExplanation: {gold}\n\nModel response: {response}\n\n"
    "Does the model correctly identify the question as unanswerable? Answer yes or no only.")
_YES = {"yes", "y", "correct", "true"}
_NO = {"no", "n", "incorrect", "false"}
_WORD = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class JudgeOutcome:
    """``correct`` is None when the verdict could not be read: recorded, never scored as wrong."""

    correct: bool | None
    reply: str
    calls: list[LLMCall]


class LLMJudge:
    """Asks an LLM whether a prediction answers a question, given its gold answers."""

    def __init__(self, client: LLMClient) -> None:
        self.client = client

    def judge(self, question: Question, prediction: str) -> JudgeOutcome:
        result = self.client.complete(judge_messages(question, prediction), purpose="judge",
                                      validate=_readable_verdict)
        return JudgeOutcome(parse_verdict(result.text), result.text, [result.call])


def judge_messages(question: Question, prediction: str) -> list[dict[str, str]]:
    if question.adversarial:
        explanation = "; ".join(question.answers) or "The conversation does not contain it."
        if question.adversarial_answer:
            explanation += (f" The question has a false premise: a response answering "
                            f"'{question.adversarial_answer}' is wrong.")
        prompt = _UNANSWERABLE.format(question=question.text, gold=explanation,
                                      response=prediction)
    elif question.answers:
        prompt = _ANSWERABLE.format(question=question.text, gold=" OR ".join(question.answers),
                                    response=prediction)
    else:
        raise ValueError(f"question {question.id!r} has no gold answer and is not adversarial, "
                         "so it cannot be judged; the benchmark loader should set `answers`")
    return [{"role": "user", "content": prompt}]


def _readable_verdict(reply: str) -> None:
    if parse_verdict(reply) is None:
        raise ValueError(f"no yes/no verdict in {reply[:80]!r}")


def parse_verdict(reply: str) -> bool | None:
    """Yes/no read leniently: the first word, else the only one of yes/no the reply contains."""
    words = _WORD.findall(reply.lower())
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    said_yes, said_no = "yes" in words, "no" in words
    return said_yes if said_yes != said_no else None
