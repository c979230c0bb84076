"""MemBench adapter: MemData/{FirstAgent,ThirdAgent}/<qtype>.json into the shared data model."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks._registry import check_options, read_json, register, sha256_of
from benchmarks.errors import BenchmarkError, LoadWarnings
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn

VARIANTS = ("FirstAgent", "ThirdAgent")
#: The question types of the official release, one file each (FirstAgent has the last three too).
QTYPES = ("simple", "conditional", "comparative", "aggregative", "post_processing",
          "knowledge_update", "noisy", "highlevel", "highlevel_rec", "lowlevel_rec",
          "RecMultiSession")
_TIME = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?)?")
_FIX = "use the official MemBench file; it may have been edited or truncated."


def parse_membench_time(text: str) -> datetime | None:
    """MemBench times look like "'2024-10-01 08:00' Tuesday"; the weekday is redundant."""
    found = _TIME.search(text)
    if found is None:
        return None
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in found.groups())
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None


def third_agent_unit_id(mid: int | str) -> str:
    """Unit id of a ThirdAgent message: 'm<mid>'."""
    return f"m{mid}"


def first_agent_unit_id(session: int, sid: int | str) -> str:
    """Unit id of a FirstAgent step: 'S<session position, 0-based>:<sid>'."""
    return f"S{session}:{sid}"


def membench_files(path: Path, variant: str | None = None) -> list[Path]:
    """The <qtype>.json files under ``path``: one file, MemData/<variant>/, or MemData/."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BenchmarkError(path, "no such file or directory.",
                             fix="pass a MemBench <qtype>.json file, MemData/<variant>/ or "
                                 "MemData/ with --data.")
    if path.name in VARIANTS:
        folders = [path]
    else:
        present = [v for v in VARIANTS if (path / v).is_dir()]
        if variant is not None and present and variant not in present:
            raise BenchmarkError(path, f"has no {variant} folder (found {', '.join(present)}).",
                                 field="variant", fix=f"pass --variant {present[0]} or another "
                                                      "MemData folder.")
        folders = [path / v for v in present if variant in (None, v)] or [path]
    files = sorted(f for folder in folders for f in folder.glob("*.json") if f.is_file())
    if not files:
        raise BenchmarkError(path, "holds no MemBench <qtype>.json files.",
                             fix="pass MemData/, MemData/FirstAgent, MemData/ThirdAgent or one "
                                 f"<qtype>.json file (qtypes: {', '.join(QTYPES)}).")
    return files


def schema_variant(raw: Any) -> str | None:
    """FirstAgent or ThirdAgent from the first non-empty message_list, else None."""
    if not isinstance(raw, dict):
        return None
    for trajectories in raw.values():
        for trajectory in trajectories if isinstance(trajectories, list) else []:
            messages = trajectory.get("message_list") if isinstance(trajectory, dict) else None
            if isinstance(messages, list) and messages:
                if isinstance(messages[0], list):
                    return "FirstAgent"
                if isinstance(messages[0], dict):
                    return "ThirdAgent"
                return None
    return None


@register
class MemBenchAdapter:
    """MemBench (ACL 2025): multiple-choice memory questions over agent trajectories.

    Memory unit ids are MemBench's own step ids, so ``target_step_id`` maps onto them exactly:
    ThirdAgent message ``mid`` 7 is unit ``m7``; FirstAgent step ``sid`` 3 of the session at
    position 1 (0-based) of ``message_list`` is unit ``S1:3``, which the raw ``[turn, session]``
    pair ``[3, 1]`` names. One trajectory is one conversation, with id
    ``<variant>/<qtype>/<topic>/<tid>``; FirstAgent sessions stay sessions, ThirdAgent messages
    are grouped into one session per calendar day. The model has no per-turn time or place, and
    MemBench questions ask about both, so a turn's text ends with them.
    """

    name = "membench"
    embedded = False
    options: dict[str, str] = {}

    def sniff(self, raw: Any) -> str | None:
        if not isinstance(raw, dict):
            return None
        first = next((t for ts in raw.values() if isinstance(ts, list) for t in ts), None)
        if not (isinstance(first, dict) and "message_list" in first and "QA" in first):
            return None
        return schema_variant(raw) or "unknown"

    def load(self, path: Path | None, *, variant: str | None = None, **options: Any) -> Benchmark:
        check_options(self, options)
        assert path is not None
        if variant is not None and variant not in VARIANTS:
            raise BenchmarkError(path, f"unknown MemBench variant '{variant}'.", field="variant",
                                 fix=f"use one of {', '.join(VARIANTS)}.")
        files = membench_files(Path(path), variant)
        warnings = LoadWarnings()
        conversations: list[Conversation] = []
        questions: list[Question] = []
        variants: set[str] = set()
        for file in files:
            file_variant, file_conversations, file_questions = self._load_file(file, variant,
                                                                               warnings)
            variants.add(file_variant)
            conversations.extend(file_conversations)
            questions.extend(file_questions)
        if Path(path).is_file():
            digest = sha256_of(files[0])
        else:
            digest = hashlib.sha256("\n".join(sorted(sha256_of(f) for f in files))
                                    .encode()).hexdigest()
        return Benchmark(name=self.name, variant=variant or "+".join(sorted(variants)),
                         source=str(path), sha256=digest, conversations=tuple(conversations),
                         questions=tuple(questions), warnings=warnings.counts)

    def _load_file(self, path: Path, variant: str | None,
                   warnings: LoadWarnings) -> tuple[str, list[Conversation], list[Question]]:
        raw = read_json(path, self.name)
        if self.sniff(raw) is None:
            shape = "an object without trajectories" if isinstance(raw, dict) else \
                f"a JSON {type(raw).__name__}"
            raise BenchmarkError(path, f"is {shape}, not a MemBench question-type file (an "
                                 "object mapping each topic to a list of trajectories with "
                                 "'tid', 'message_list' and 'QA').", fix=_other_benchmark_hint(raw))
        file_variant = _file_variant(path, raw, variant)
        qtype = path.stem
        conversations: list[Conversation] = []
        questions: list[Question] = []
        seen: set[str] = set()
        for topic, trajectories in raw.items():
            if not isinstance(trajectories, list):
                raise BenchmarkError(path, f"has a {type(trajectories).__name__} where a list of "
                                     "trajectories is expected.", record=str(topic), fix=_FIX)
            for position, trajectory in enumerate(trajectories):
                conversation, conv_questions = _load_trajectory(
                    path, file_variant, qtype, str(topic), position, trajectory, warnings)
                if conversation.id in seen:
                    raise BenchmarkError(path, "two trajectories of one topic share a tid.",
                                         record=conversation.id, field="tid", fix=_FIX)
                seen.add(conversation.id)
                conversations.append(conversation)
                questions.extend(conv_questions)
        return file_variant, conversations, questions


def _other_benchmark_hint(raw: Any) -> str:
    from benchmarks._registry import detect

    found = detect(raw)
    if found and found[0] != "membench":
        return f"this looks like a {found[0]} ({found[1]}) file: pass --benchmark {found[0]}."
    return "pass a file from MemBench's MemData/FirstAgent or MemData/ThirdAgent folder."


def _file_variant(path: Path, raw: dict, requested: str | None) -> str:
    """The schema decides; the folder name and --variant, where given, must agree with it."""
    found = schema_variant(raw)
    folder = path.parent.name if path.parent.name in VARIANTS else None
    for claimed, source in ((folder, f"its folder {folder}/"), (requested, "--variant")):
        if claimed is not None and found is not None and claimed != found:
            raise BenchmarkError(path, f"has the {found} schema, but {source} says {claimed}.",
                                 field="message_list",
                                 fix=f"put the file under MemData/{found}/ or pass --variant "
                                     f"{found}.")
    if folder is not None and requested is not None and folder != requested:
        raise BenchmarkError(path, f"is in a {folder}/ folder, but --variant says {requested}.",
                             field="variant", fix=f"pass --variant {folder}.")
    variant = found or folder or requested
    if variant is None:
        raise BenchmarkError(path, "has only empty message lists, so its variant cannot be told "
                             "from the data.", field="message_list",
                             fix="pass --variant FirstAgent or --variant ThirdAgent.")
    return variant


def _field(path: Path, record: str, obj: dict, name: str, kind: type | tuple[type, ...],
           required: bool = True) -> Any:
    if name not in obj:
        if not required:
            return None
        raise BenchmarkError(path, "is missing a required field.", record=record, field=name,
                             fix=_FIX)
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BenchmarkError(path, f"has a {type(value).__name__} where {names} is expected.",
                             record=record, field=name, fix=_FIX)
    return value


def _step_suffix(time_text: str | None, place: str | None) -> str:
    parts = []
    if time_text:
        parts.append(f"time: {time_text}")
    if place:
        parts.append(f"place: {place}")
    return f" [{'; '.join(parts)}]" if parts else ""


def _clean_time(text: str | None) -> str | None:
    return " ".join(text.replace("'", " ").split()) if text else None


def _load_trajectory(path: Path, variant: str, qtype: str, topic: str, position: int,
                     trajectory: Any, warnings: LoadWarnings
                     ) -> tuple[Conversation, list[Question]]:
    label = f"{topic}/#{position}"
    if not isinstance(trajectory, dict):
        raise BenchmarkError(path, f"has a {type(trajectory).__name__} where a trajectory "
                             "object is expected.", record=label, fix=_FIX)
    tid = _field(path, label, trajectory, "tid", (int, str))
    record = f"{topic}/{tid}"
    messages = _field(path, record, trajectory, "message_list", list)
    conversation_id = f"{variant}/{qtype}/{topic}/{tid}"
    if variant == "ThirdAgent":
        sessions = _third_agent_sessions(path, record, messages, warnings)
        speakers: tuple[str, ...] = ("user",)
    else:
        sessions = _first_agent_sessions(path, record, messages, warnings)
        speakers = ("user", "assistant")
    conversation = Conversation(id=conversation_id, speakers=speakers, sessions=tuple(sessions))
    session_of = {turn.id: session.index for session in sessions for turn in session.turns}
    qa = _field(path, record, trajectory, "QA", (dict, list))
    items = qa if isinstance(qa, list) else [qa]
    questions: list[Question] = []
    for item in items:
        question = _load_question(path, record, conversation_id, variant, qtype, item,
                                  session_of, warnings)
        if any(q.id == question.id for q in questions):
            raise BenchmarkError(path, "two questions of one trajectory share a qid.",
                                 record=question.id, field="qid", fix=_FIX)
        questions.append(question)
    return conversation, questions


def _step_time(path: Path, record: str, step: dict, warnings: LoadWarnings
               ) -> tuple[str | None, datetime | None]:
    text = _clean_time(_field(path, record, step, "time", str, required=False))
    moment = parse_membench_time(text) if text else None
    if text and moment is None:
        warnings.add("unparsed time", f"{record}: {text!r}")
    return text, moment


def _third_agent_sessions(path: Path, record: str, messages: list,
                          warnings: LoadWarnings) -> list[Session]:
    days: list[tuple[datetime | None, str, list[Turn]]] = []
    seen: set[str] = set()
    for position, message in enumerate(messages):
        where = f"{record}/message_list[{position}]"
        if not isinstance(message, dict):
            raise BenchmarkError(path, f"has a {type(message).__name__} where a message object "
                                 "is expected.", record=where, field="message_list", fix=_FIX)
        mid = _field(path, where, message, "mid", (int, str))
        text = _field(path, where, message, "message", str)
        place = _field(path, where, message, "place", str, required=False)
        time_text, moment = _step_time(path, where, message, warnings)
        uid = third_agent_unit_id(mid)
        if uid in seen:
            raise BenchmarkError(path, f"has mid {mid} twice in one trajectory.", record=where,
                                 field="mid", fix=_FIX)
        seen.add(uid)
        if str(mid) != str(position):
            warnings.add("mid differs from its position", where)
        # A new session starts on each new calendar day; undated messages join the current one.
        if not days or (moment is not None and days[-1][0] is not None
                        and moment.date() != days[-1][0].date()):
            days.append((moment, time_text or "", []))
        elif days[-1][0] is None and moment is not None:
            days[-1] = (moment, time_text or "", days[-1][2])
        index = len(days) - 1
        days[-1][2].append(Turn(id=uid, session_index=index, turn_index=len(days[-1][2]),
                                speaker="user", text=text + _step_suffix(time_text, place)))
    return [Session(index=i, date=date, date_text=date_text, turns=tuple(turns))
            for i, (date, date_text, turns) in enumerate(days)]


def _first_agent_sessions(path: Path, record: str, messages: list,
                          warnings: LoadWarnings) -> list[Session]:
    sessions: list[Session] = []
    for index, steps in enumerate(messages):
        where = f"{record}/message_list[{index}]"
        if not isinstance(steps, list):
            raise BenchmarkError(path, f"has a {type(steps).__name__} where a session (a list of "
                                 "steps) is expected.", record=where, field="message_list",
                                 fix=_FIX)
        turns: list[Turn] = []
        date: datetime | None = None
        date_text = ""
        for position, step in enumerate(steps):
            step_where = f"{where}[{position}]"
            if not isinstance(step, dict):
                raise BenchmarkError(path, f"has a {type(step).__name__} where a step object is "
                                     "expected.", record=step_where, field="message_list",
                                     fix=_FIX)
            sid = _field(path, step_where, step, "sid", (int, str))
            user = _field(path, step_where, step, "user_message", str)
            assistant = _field(path, step_where, step, "assistant_message", str)
            place = _field(path, step_where, step, "place", str, required=False)
            time_text, moment = _step_time(path, step_where, step, warnings)
            if date is None and moment is not None:
                date, date_text = moment, time_text or ""
            uid = first_agent_unit_id(index, sid)
            if any(t.id == uid for t in turns):
                raise BenchmarkError(path, f"has sid {sid} twice in one session.",
                                     record=step_where, field="sid", fix=_FIX)
            if str(sid) != str(position):
                warnings.add("sid differs from its position in the session", step_where)
            text = f"User: {user}\nAssistant: {assistant}" + _step_suffix(time_text, place)
            turns.append(Turn(id=uid, session_index=index, turn_index=position, speaker="user",
                              text=text))
        sessions.append(Session(index=index, date=date, date_text=date_text, turns=tuple(turns)))
    return sessions


def _target_ids(variant: str, raw: Any) -> list[str]:
    """Unit ids named by target_step_id; entries of the wrong shape come back as their repr."""
    entries = raw if isinstance(raw, list) else [raw]
    if variant == "FirstAgent" and len(entries) == 2 and all(_is_index(e) for e in entries):
        # A single [turn, session] pair written without the outer list.
        entries = [entries]
    ids: list[str] = []
    for entry in entries:
        if variant == "ThirdAgent" and _is_index(entry):
            uid = third_agent_unit_id(int(entry))
        elif (variant == "FirstAgent" and isinstance(entry, list) and len(entry) == 2
              and all(_is_index(e) for e in entry)):
            turn, session = (int(e) for e in entry)
            uid = first_agent_unit_id(session, turn)
        else:
            uid = repr(entry)
        if uid not in ids:
            ids.append(uid)
    return ids


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit())


def _load_question(path: Path, record: str, conversation_id: str, variant: str, qtype: str,
                   item: Any, session_of: dict[str, int], warnings: LoadWarnings) -> Question:
    if not isinstance(item, dict):
        raise BenchmarkError(path, f"has a {type(item).__name__} where a QA object is expected.",
                             record=record, field="QA", fix=_FIX)
    qid = _field(path, record, item, "qid", (int, str))
    where = f"{record}/{qid}"
    text = _field(path, where, item, "question", str)
    answer = _field(path, where, item, "answer", (str, int, float))
    choices_raw = _field(path, where, item, "choices", dict, required=False)
    choices = None
    if choices_raw is not None:
        for letter, choice in choices_raw.items():
            if isinstance(choice, bool) or not isinstance(choice, (str, int, float)):
                raise BenchmarkError(path, f"choice {letter} is a {type(choice).__name__}, not "
                                     "text.", record=where, field="choices", fix=_FIX)
        choices = {str(k): str(v) for k, v in choices_raw.items()}
    correct = _field(path, where, item, "ground_truth", str, required=False)
    if correct is not None and (choices is None or correct not in choices):
        offered = ", ".join(choices) if choices else "none"
        raise BenchmarkError(path, f"ground_truth '{correct}' is not one of the choices "
                             f"({offered}).", record=where, field="ground_truth", fix=_FIX)
    if choices is None:
        warnings.add("question without choices", where)
    targets = _field(path, where, item, "target_step_id", (list, int, str))
    parsed = _target_ids(variant, targets)
    evidence = tuple(uid for uid in parsed if uid in session_of)
    unresolved = tuple(uid for uid in parsed if uid not in session_of)
    for uid in unresolved:
        warnings.add("target step names no message", f"{where}: {uid}")
    if not parsed:
        warnings.add("question without evidence", where)
    time_text = _clean_time(_field(path, where, item, "time", str, required=False))
    question_date = parse_membench_time(time_text) if time_text else None
    if time_text and question_date is None:
        warnings.add("unparsed time", f"{where}: {time_text!r}")
    return Question(id=f"{conversation_id}/{qid}", conversation_id=conversation_id, text=text,
                    category=qtype, answers=(str(answer),),
                    evidence=evidence,
                    evidence_sessions=tuple(sorted({session_of[uid] for uid in evidence})),
                    unresolved_evidence=unresolved, question_date=question_date,
                    choices=choices, correct_choice=correct)
