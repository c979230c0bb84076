"""LongMemEval adapter (oracle, S and M share a schema): each question with its own haystack."""
from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._registry import (check_options, iter_json_list, peek_json, register,
                                  sha256_of)
from benchmarks.errors import BenchmarkError, LoadWarnings
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn

VARIANTS = ("oracle", "s", "m")


def parse_longmemeval_date(text: str) -> datetime | None:
    """LongMemEval dates look like '2023/05/30 (Tue) 23:40'."""
    try:
        day, _, clock = text.partition(" (")
        return datetime.strptime(f"{day} {clock.split(') ')[-1]}", "%Y/%m/%d %H:%M")
    except (ValueError, AttributeError):
        return None


def unit_id(session_index: int, turn_index: int) -> str:
    """Memory unit id of a LongMemEval turn: 'S<session>:<turn>', both 1-based, in file order."""
    return f"S{session_index}:{turn_index}"


def infer_variant(path: Path, sizes: list[int]) -> str:
    """From the file name when it says, else from the haystack sizes, in sessions per question
    (oracle ~2, S ~48, M ~500)."""
    stem = path.stem.lower()
    for variant in VARIANTS:
        if stem.endswith(f"_{variant}") or f"_{variant}_" in stem:
            return variant
    mean = sum(sizes) / max(len(sizes), 1)
    return "oracle" if mean < 10 else "s" if mean < 150 else "m"


@register
class LongMemEvalAdapter:
    """LongMemEval (ICLR 2025): 500 questions; session ids are labels and never reach retrieval."""

    name = "longmemeval"
    embedded = False
    loads_part = True
    options: dict[str, str] = {}

    def sniff(self, raw: Any) -> str | None:
        if (isinstance(raw, list) and raw and isinstance(raw[0], dict)
                and "question_id" in raw[0] and "haystack_sessions" in raw[0]):
            return "unknown"
        return None

    def load(self, path: Path | None, *, variant: str | None = None,
             keep: Collection[str] | None = None, **options: Any) -> Benchmark:
        check_options(self, options)
        assert path is not None
        if variant is not None and variant not in VARIANTS:
            raise BenchmarkError(path, f"unknown LongMemEval variant '{variant}'.",
                                 field="variant", fix=f"use one of {', '.join(VARIANTS)}.")
        warnings = LoadWarnings()
        conversations: list[Conversation] = []
        questions: list[Question] = []
        sizes: list[int] = []
        seen: set[str] = set()
        # One text object per distinct turn text: filler sessions recur across haystacks (M:
        # ~500 sessions per question from one pool), and a parser makes a new string each time.
        texts: dict[str, str] = {}
        # Streamed record by record: the M file is several GB.
        for position, record in enumerate(iter_json_list(path, self.name)):
            if position == 0 and self.sniff([record]) is None:
                from benchmarks.locomo import _other_benchmark_hint

                raise BenchmarkError(path, "is not a LongMemEval file: expected a JSON list of "
                                     "questions with 'question_id' and 'haystack_sessions'.",
                                     fix=_other_benchmark_hint(peek_json(path, self.name)))
            kept = keep is None or (isinstance(record, dict)
                                    and str(record.get("question_id")) in keep)
            # A haystack not kept is parsed (its question needs it) and dropped, its texts
            # with it: they go to a dict of their own, not the shared one.
            conversation, question = _load_question(path, position, record, warnings,
                                                    texts if kept else {})
            if question.id in seen:
                raise BenchmarkError(path, "two records share a question_id.",
                                     record=question.id, field="question_id",
                                     fix="use the official file.")
            seen.add(question.id)
            sizes.append(len(conversation.sessions))
            if kept:
                conversations.append(conversation)
            questions.append(question)
        if not questions:
            raise BenchmarkError(path, "is not a LongMemEval file: expected a JSON list of "
                                 "questions with 'question_id' and 'haystack_sessions'.",
                                 fix="pass the official longmemeval_*.json file.")
        variant = variant or infer_variant(path, sizes)
        return Benchmark(name=self.name, variant=variant, source=str(path), sha256=sha256_of(path),
                         conversations=tuple(conversations), questions=tuple(questions),
                         warnings=warnings.counts)


def _field(path: Path, record: str, obj: dict, name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in obj:
        raise BenchmarkError(path, "is missing a required field.", record=record, field=name,
                             fix="use the official file; it may have been edited or truncated.")
    value = obj[name]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkError(path, f"has a {type(value).__name__} where {names} is expected.",
                             record=record, field=name, fix="use the official file.")
    return value


def _load_question(path: Path, position: int, record: Any, warnings: LoadWarnings,
                   texts: dict[str, str]) -> tuple[Conversation, Question]:
    if not isinstance(record, dict):
        raise BenchmarkError(path, "is not a question object.", record=f"#{position}",
                             fix="use the official file.")
    qid = str(_field(path, f"#{position}", record, "question_id", str))
    sessions_raw = _field(path, qid, record, "haystack_sessions", list)
    session_ids = _field(path, qid, record, "haystack_session_ids", list)
    dates = _field(path, qid, record, "haystack_dates", list)
    gold_ids = set(_field(path, qid, record, "answer_session_ids", list))
    if not len(sessions_raw) == len(session_ids) == len(dates):
        raise BenchmarkError(path, f"haystack_sessions ({len(sessions_raw)}), haystack_session_ids "
                             f"({len(session_ids)}) and haystack_dates ({len(dates)}) must be "
                             "parallel lists.", record=qid, field="haystack_sessions",
                             fix="use the official file.")
    sessions: list[Session] = []
    gold_turns: list[str] = []
    target_turns: list[str] = []
    gold_sessions: list[int] = []
    for s_pos, (turns_raw, session_id, date_text) in enumerate(zip(sessions_raw, session_ids,
                                                                    dates)):
        index = s_pos + 1
        if not isinstance(turns_raw, list):
            raise BenchmarkError(path, "has a session that is not a list of turns.", record=qid,
                                 field=f"haystack_sessions[{s_pos}]", fix="use the official file.")
        date = parse_longmemeval_date(str(date_text))
        if date is None:
            warnings.add("unparsed session date", f"{qid}[{s_pos}]")
        turns = []
        for t_pos, turn in enumerate(turns_raw):
            where = f"haystack_sessions[{s_pos}][{t_pos}]"
            if not isinstance(turn, dict) or "content" not in turn or "role" not in turn:
                raise BenchmarkError(path, "has a turn without 'role' and 'content'.", record=qid,
                                     field=where, fix="use the official file.")
            uid = unit_id(index, t_pos + 1)
            # A missing has_answer means false (most S turns lack it).
            if turn.get("has_answer") is True:
                gold_turns.append(uid)
                if str(turn["role"]) == "user":
                    target_turns.append(uid)
            turns.append(Turn(id=uid, session_index=index, turn_index=t_pos + 1,
                              speaker=str(turn["role"]),
                              text=texts.setdefault(text := str(turn["content"]), text)))
        if session_id in gold_ids:
            gold_sessions.append(index)
        sessions.append(Session(index=index, date=date, date_text=str(date_text),
                                turns=tuple(turns)))
    adversarial = qid.endswith("_abs")
    if not gold_sessions and not adversarial:
        warnings.add("question without gold session", qid)
    answer = _field(path, qid, record, "answer", (str, int, float))
    question_date = parse_longmemeval_date(str(record.get("question_date", "")))
    question = Question(id=qid, conversation_id=qid,
                        text=str(_field(path, qid, record, "question", str)),
                        category=str(_field(path, qid, record, "question_type", str)),
                        answers=(str(answer),), adversarial=adversarial,
                        evidence=tuple(gold_turns), evidence_sessions=tuple(gold_sessions),
                        target_turns=tuple(target_turns),
                        question_date=question_date)
    return Conversation(id=qid, speakers=("user", "assistant"), sessions=tuple(sessions)), question
