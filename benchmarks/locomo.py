"""LoCoMo adapter: locomo10.json into the shared data model (captions, dates, dirty evidence)."""
from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._registry import check_options, read_json, register, sha256_of
from benchmarks.errors import BenchmarkError, LoadWarnings
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn

#: Every `D<session>:<turn>` inside a dirty evidence string ("D8:6; D9:17", "D:11:26", "D30:05").
_EVIDENCE_ID = re.compile(r"D?:?(\d+):(\d+)")
_SESSION_KEY = re.compile(r"^session_(\d+)$")
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%I:%M %p on %B %d, %Y")


def parse_locomo_date(text: str) -> datetime | None:
    """LoCoMo session timestamps look like '1:56 pm on 8 May, 2023'."""
    cleaned = " ".join(text.replace("\u202f", " ").split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt)
        except ValueError:
            continue
    return None


def parse_evidence(raw: Any) -> list[str]:
    """Normalised unit ids in a dirty evidence list; unparseable entries yield nothing."""
    items = raw if isinstance(raw, list) else [raw]
    ids: list[str] = []
    for item in items:
        for session, turn in _EVIDENCE_ID.findall(str(item)):
            unit = f"D{int(session)}:{int(turn)}"
            if unit not in ids:
                ids.append(unit)
    return ids


def _unit_id(dia_id: str) -> str:
    found = parse_evidence(dia_id)
    return found[0] if found else dia_id


@register
class LoCoMoAdapter:
    """The official LoCoMo release (locomo10.json)."""

    name = "locomo"
    embedded = False
    options: dict[str, str] = {}

    def sniff(self, raw: Any) -> str | None:
        if (isinstance(raw, list) and raw and isinstance(raw[0], dict)
                and "qa" in raw[0] and "conversation" in raw[0]):
            return "locomo10"
        return None

    def load(self, path: Path | None, *, variant: str | None = None, **options: Any) -> Benchmark:
        check_options(self, options)
        assert path is not None
        raw = read_json(path, self.name)
        if self.sniff(raw) is None:
            raise BenchmarkError(path, "is not a LoCoMo file: expected a JSON list of "
                                 "conversations with 'conversation' and 'qa' fields.",
                                 fix=_other_benchmark_hint(raw))
        warnings = LoadWarnings()
        conversations: list[Conversation] = []
        questions: list[Question] = []
        for position, record in enumerate(raw):
            conversation, conv_questions = _load_sample(path, position, record, warnings)
            conversations.append(conversation)
            questions.extend(conv_questions)
        ids = [c.id for c in conversations]
        if len(set(ids)) != len(ids):
            raise BenchmarkError(path, "two conversations share a sample_id.",
                                 field="sample_id", fix="use the official file.")
        return Benchmark(name=self.name, variant=variant or "locomo10", source=str(path),
                         sha256=sha256_of(path), conversations=tuple(conversations),
                         questions=tuple(questions), warnings=warnings.counts)


def _other_benchmark_hint(raw: Any) -> str:
    from benchmarks._registry import detect

    found = detect(raw)
    if found:
        return f"this looks like a {found[0]} ({found[1]}) file: pass --benchmark {found[0]}."
    return "pass the official locomo10.json ('memevolve data fetch locomo')."


def _require(path: Path, record: str, obj: Any, field: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or field not in obj:
        raise BenchmarkError(path, "is missing a required field.", record=record, field=field,
                             fix="use the official file; it may have been edited or truncated.")
    value = obj[field]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkError(path, f"has a {type(value).__name__} where {names} is expected.",
                             record=record, field=field, fix="use the official file.")
    return value


def _load_sample(path: Path, position: int, record: Any,
                 warnings: LoadWarnings) -> tuple[Conversation, list[Question]]:
    label = f"#{position}"
    if not isinstance(record, dict):
        raise BenchmarkError(path, "is not a conversation object.", record=label,
                             fix="use the official file.")
    sample_id = str(_require(path, label, record, "sample_id", (str, int)))
    conv = _require(path, sample_id, record, "conversation", dict)
    speakers = (str(conv.get("speaker_a", "")), str(conv.get("speaker_b", "")))
    summaries = record.get("session_summary") or {}
    sessions: list[Session] = []
    numbers = sorted(int(m.group(1)) for key in conv if (m := _SESSION_KEY.match(key)))
    for number in numbers:
        key = f"session_{number}"
        turns_raw = _require(path, sample_id, conv, key, list)
        if not turns_raw:
            continue
        date_text = str(conv.get(f"{key}_date_time", ""))
        date = parse_locomo_date(date_text)
        if date is None:
            warnings.add("unparsed session date", f"{sample_id}/{key}")
        turns = []
        for t_pos, turn in enumerate(turns_raw):
            where = f"{sample_id}/{key}[{t_pos}]"
            dia_id = _require(path, where, turn, "dia_id", str)
            caption = turn.get("blip_caption")
            turns.append(Turn(id=_unit_id(dia_id), session_index=number, turn_index=t_pos + 1,
                              speaker=str(_require(path, where, turn, "speaker", str)),
                              text=str(_require(path, where, turn, "text", str)),
                              caption=str(caption) if caption else None))
        summary = summaries.get(f"{key}_summary") if isinstance(summaries, dict) else None
        sessions.append(Session(index=number, date=date, date_text=date_text,
                                turns=tuple(turns), summary=summary))
    conversation = Conversation(id=sample_id, speakers=speakers, sessions=tuple(sessions))
    known = conversation.turn_ids()
    if len(known) != sum(len(s.turns) for s in sessions):
        warnings.add("duplicate turn id", sample_id)
    qa = _require(path, sample_id, record, "qa", list)
    questions = [_load_question(path, sample_id, i, item, known, warnings)
                 for i, item in enumerate(qa)]
    return conversation, questions


def _load_question(path: Path, sample_id: str, index: int, item: Any, known: set[str],
                   warnings: LoadWarnings) -> Question:
    where = f"{sample_id}/qa[{index}]"
    text = _require(path, where, item, "question", str)
    category = _require(path, where, item, "category", int)
    if category not in (1, 2, 3, 4, 5):
        raise BenchmarkError(path, f"has category {category}; LoCoMo categories are 1-5.",
                             record=where, field="category", fix="use the official file.")
    adversarial = category == 5
    if adversarial:
        answers: tuple[str, ...] = ()
        wrong = item.get("adversarial_answer")
        adversarial_answer = None if wrong is None else str(wrong)
    else:
        answers = (str(_require(path, where, item, "answer", (str, int, float))),)
        adversarial_answer = None
    evidence_raw = item.get("evidence", [])
    parsed = parse_evidence(evidence_raw)
    resolved = tuple(u for u in parsed if u in known)
    unresolved = tuple(u for u in parsed if u not in known)
    unparsed = [str(e) for e in (evidence_raw if isinstance(evidence_raw, list) else [evidence_raw])
                if not _EVIDENCE_ID.search(str(e))]
    for bad in unresolved:
        warnings.add("evidence id names no turn", f"{where}:{bad}")
    for bad in unparsed:
        warnings.add("evidence entry without an id", f"{where}:{bad!r}")
    if not parsed:
        warnings.add("question without evidence", where)
    sessions = tuple(sorted({int(u[1:].split(":")[0]) for u in resolved}))
    return Question(id=f"{sample_id}:{index}", conversation_id=sample_id, text=text,
                    category=str(category), answers=answers, adversarial=adversarial,
                    adversarial_answer=adversarial_answer, evidence=resolved,
                    evidence_sessions=sessions,
                    unresolved_evidence=unresolved + tuple(unparsed))
