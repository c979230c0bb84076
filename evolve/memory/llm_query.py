"""LLM query operators (active when an LLM is configured, answer_model): the question rewritten
as a search query, decomposed into sub-questions, or answered hypothetically (HyDE) before
retrieval. The prompts see the question and its date only, never a label. Replies are cached
(evolve.llm's response cache), and every call is priced in the question's cost columns."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search_space.dimension import dimension

if TYPE_CHECKING:
    from benchmarks.model import Question
    from evolve.llm import LLMClient

#: ``llm_query`` values.
LLM_QUERY_MODES = ("off", "rewrite", "decompose", "hyde")
#: Sub-questions a decomposition keeps (a reply may list more).
MAX_SUB_QUESTIONS = 3

DIMENSION = dimension(
    "llm_query", "choice", "off", "LLM query operator before retrieval: 'rewrite' searches with "
    "the question rewritten as a search query as well, 'decompose' ranks the LLM's "
    f"sub-questions (at most {MAX_SUB_QUESTIONS}) apart and fuses them by RRF (rrf_k) as "
    "multi_query does, 'hyde' searches dense retrieval with a hypothetical answer turn as "
    "well; 'off' = none.", choices=LLM_QUERY_MODES, group="query", scope="per_category",
    needs_llm=True)

_SYSTEM = ("You help search the memory of a long conversation between people. You never answer "
           "from your own knowledge; you only prepare the search.")
_ASKS = {
    "rewrite": "Rewrite the question as one search query for that conversation: keep every name, "
               "date and object it mentions, add likely synonyms, drop the question words. Reply "
               "with the query only, on one line.",
    "decompose": "Split the question into the simpler questions whose answers it needs, one per "
                 f"line, at most {MAX_SUB_QUESTIONS}. A simple question is its own only line. "
                 "Reply with the questions only.",
    "hyde": "Write the message from the conversation that would answer the question, as one "
            "of the people would have written it, in one or two sentences. Invent plausible "
            "details. Reply with the message only.",
}
_LIST_MARK = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)]|q\d*[:.])\s*", re.IGNORECASE)
_LABEL = re.compile(r"^\s*(?:search query|query|message|answer)\s*:\s*", re.IGNORECASE)


@dataclass(frozen=True)
class QueryTexts:
    """What an operator adds: texts searched beside the question, or sub-questions."""

    extra: tuple[str, ...] = ()
    sub_questions: tuple[str, ...] = ()
    calls: tuple[dict, ...] = ()


def messages(question: "Question", mode: str) -> list[dict[str, str]]:
    asked = (f" It is asked on {question.question_date:%d %B %Y}."
             if question.question_date else "")
    return [{"role": "system", "content": _SYSTEM},
            {"role": "user", "content": f"Question: {question.text}{asked}\n\n{_ASKS[mode]}"}]


def parse(reply: str, mode: str, question: str) -> tuple[str, ...]:
    """The reply's usable lines: list marks and labels stripped, quotes removed, lines of fewer
    than two words and copies of the question dropped; one line unless decomposing."""
    lines = []
    for raw in reply.splitlines():
        line = _LABEL.sub("", _LIST_MARK.sub("", raw)).strip().strip('"\'').strip()
        if len(line.split()) >= 2 and line.lower() != question.lower() and line not in lines:
            lines.append(line)
    if mode == "decompose":
        return tuple(lines[:MAX_SUB_QUESTIONS]) if len(lines) > 1 else ()
    if mode == "hyde":
        return (" ".join(lines),) if lines else ()
    return tuple(lines[:1])


def _usable(mode: str, question: str):
    def validate(reply: str) -> None:
        if not parse(reply, mode, question) and mode != "decompose":
            raise ValueError(f"no {mode} text in the reply")
    return validate


def query_texts(client: "LLMClient", question: "Question", mode: str) -> QueryTexts:
    """Ask the LLM for ``mode``'s texts; a failed or unusable reply leaves the question alone
    (its call is still recorded and priced)."""
    from evolve.llm import LLMError

    try:
        result = client.complete(messages(question, mode), purpose="query",
                                 validate=_usable(mode, question.text))
    except LLMError as exc:
        return QueryTexts(calls=(exc.call.as_row(),) if exc.call is not None else ())
    texts = parse(result.text, mode, question.text) if result.call.error is None else ()
    calls = (result.call.as_row(),)
    if mode == "decompose":
        return QueryTexts(sub_questions=texts, calls=calls)
    return QueryTexts(extra=texts, calls=calls)
