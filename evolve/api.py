"""The tuned memory as a library: an agent adds conversations to a `Memory` and searches it, with
exactly the retrieval the evaluation measured (`MemorySystem.context`)."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from benchmarks.errors import MemevolveError
from benchmarks.model import Conversation, Question, Session, Turn
from evolve.embeddings import DEFAULT_BACKEND
from evolve.memory.system import EmbedderSpec, LLMSpec, MemorySystem, RetrievedContext
from search_space.config import RetrievalConfig, load_config

#: The one file a saved memory is: config, embedder and LLM settings, every conversation.
MEMORY_FILE = "memory.json"
FORMAT_VERSION = 1

TurnLike = Turn | tuple[str, str] | Mapping[str, Any]


class Memory:
    """Conversations an agent remembers, searched with a tuned retrieval config.

    ``add`` appends turns or sessions to a named conversation (indexes are updated in place, and
    embeddings come from the shared on-disk cache); ``search`` returns the packed context the
    evaluation would give the answerer for the same question. A memory with a ``path`` saves
    itself after every ``add``; ``Memory.open(path)`` reopens it, and any number of processes
    may open and search it while one process adds (each save replaces the file atomically).
    One Memory object may be searched from many threads at once.
    """

    def __init__(self, config: RetrievalConfig, *, embedder: EmbedderSpec | None = None,
                 llm: LLMSpec | None = None, path: str | Path | None = None) -> None:
        self.config = config
        self.embedder = embedder or EmbedderSpec()
        self.llm = llm or LLMSpec()
        self.path = Path(path) if path is not None else None
        # A config's learned parts (its question-type predictor) travel inside it.
        self._system = MemorySystem([], [], self.embedder, self.llm, artefacts=config.artefacts)
        self._conversations: dict[str, Conversation] = {}
        # The memory system's caches are not thread-safe: one search or add at a time.
        self._lock = threading.RLock()

    # Construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: str | Path | RetrievalConfig, *,
                    embedder_backend: str = DEFAULT_BACKEND,
                    embedder_model: str | None = None,
                    embedder_options: dict[str, Any] | None = None,
                    answer_model: str | None = None, api_base: str | None = None,
                    path: str | Path | None = None) -> "Memory":
        """A memory from an exported config file (`memevolve export`) or a RetrievalConfig.

        The embedder must be the one the config was tuned with (by default the evaluation's,
        all-MiniLM-L6-v2); ``answer_model`` (any litellm model) is needed only by ``answer``
        under a config with answerer=llm."""
        loaded = config if isinstance(config, RetrievalConfig) else load_config(config)
        llm = LLMSpec()
        model = answer_model or loaded.answer_model
        if model:
            llm = LLMSpec(answer={"model": model, **({"api_base": api_base} if api_base else {})})
        spec = EmbedderSpec(embedder_backend, embedder_model, dict(embedder_options or {}))
        memory = cls(loaded, embedder=spec, llm=llm, path=path)
        if memory.path is not None:
            memory.save()
        return memory

    @classmethod
    def open(cls, path: str | Path) -> "Memory":
        """Reopen a memory saved to the folder ``path``."""
        file = Path(path) / MEMORY_FILE
        if not file.exists():
            raise MemevolveError(f"{file}: no saved memory there. Fix: create one with "
                                 "Memory.from_config(config, path=...) first.")
        try:
            data = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise MemevolveError(f"{file}: cannot read the saved memory ({exc}). Fix: restore "
                                 "the file or create the memory again.") from None
        if data.get("format") != FORMAT_VERSION:
            raise MemevolveError(f"{file}: saved memory format {data.get('format')!r}, this "
                                 f"memevolve reads format {FORMAT_VERSION}. Fix: create the "
                                 "memory again with this version.")
        embedder = EmbedderSpec(**data["embedder"])
        config = RetrievalConfig.model_validate({**data["config"],
                                                 "artefacts": data.get("artefacts") or {}})
        memory = cls(config, embedder=embedder,
                     llm=LLMSpec(**data["llm"]), path=path)
        for raw in data["conversations"]:
            memory._put(Conversation.model_validate(raw))
        return memory

    # Writing -------------------------------------------------------------------------------
    def add(self, conversation: str, turns: Iterable[TurnLike], *,
            date: datetime | str | None = None, session: int | None = None) -> list[str]:
        """Append turns to a conversation (created if new) and return their unit ids.

        ``turns`` are `Turn`s, ``(speaker, text)`` pairs or mappings with ``speaker`` and
        ``text`` (and optionally ``caption``, ``id``). Without ``session`` they form a new
        session dated ``date``; with the number of the conversation's last session they extend
        it; a higher number starts that session. Memory is chronological: earlier sessions
        cannot grow."""
        with self._lock:
            known = self._conversations.get(conversation)
            sessions = list(known.sessions) if known else []
            last = sessions[-1].index if sessions else 0
            index = last + 1 if session is None else session
            if index < last or index < 1:
                raise MemevolveError(f"conversation '{conversation}': session {index} is before "
                                     f"its last session {last}. Fix: add to session {last} or "
                                     "later (memory is chronological).")
            when = _parse_date(date)
            if index == last and sessions:
                current = sessions.pop()
                if when is not None and current.date is not None and when != current.date:
                    raise MemevolveError(f"conversation '{conversation}': session {index} is "
                                         f"dated {current.date:%Y-%m-%d}, not {when:%Y-%m-%d}. "
                                         "Fix: leave date out, or start a new session.")
            else:
                current = Session(index=index, date=when, turns=())
            new_turns = [_turn(t, index, len(current.turns) + i + 1, conversation)
                         for i, t in enumerate(turns)]
            if not new_turns:
                raise MemevolveError(f"conversation '{conversation}': no turns given. Fix: pass "
                                     "at least one (speaker, text) turn.")
            sessions.append(current.model_copy(update={"turns": current.turns + tuple(new_turns)}))
            taken = {t.id for s in sessions[:-1] for t in s.turns} | \
                {t.id for t in current.turns}
            clash = [t.id for t in new_turns if t.id in taken]
            if clash:
                raise MemevolveError(f"conversation '{conversation}': turn id {clash[0]} is "
                                     "already taken. Fix: give new turns new ids, or none.")
            speakers = list(known.speakers) if known else []
            for turn in new_turns:
                if turn.speaker and turn.speaker not in speakers:
                    speakers.append(turn.speaker)
            self._put(Conversation(id=conversation, speakers=tuple(speakers),
                                   sessions=tuple(sessions)))
            if self.path is not None:
                self.save()
            return [t.id for t in new_turns]

    def add_conversation(self, conversation: Conversation) -> None:
        """Add a whole conversation (e.g. a benchmark's), or a longer version of a known one."""
        with self._lock:
            self._put(conversation)
            if self.path is not None:
                self.save()

    def save(self, path: str | Path | None = None) -> Path:
        """Write the memory to the folder ``path`` (default: its own) in one atomic step."""
        folder = Path(path) if path is not None else self.path
        if folder is None:
            raise MemevolveError("this memory has no folder to save to. Fix: pass save(path) or "
                                 "create it with Memory.from_config(..., path=...).")
        with self._lock:
            body = json.dumps({
                "format": FORMAT_VERSION,
                "config": json.loads(self.config.canonical_json()),
                "artefacts": self.config.artefacts,
                "embedder": {"backend": self.embedder.backend, "model": self.embedder.model,
                             "options": self.embedder.options},
                "llm": {"answer": self.llm.answer, "judge": self.llm.judge},
                "conversations": [c.model_dump(mode="json")
                                  for c in self._conversations.values()],
            })
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Readers in other processes see the old file or the new one, never half of one.
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".memory-", suffix=".tmp")
            with os.fdopen(fd, "w") as out:
                out.write(body)
            os.replace(tmp, folder / MEMORY_FILE)
        except OSError as exc:
            raise MemevolveError(f"{folder}: cannot save the memory ({exc}). Fix: pass a "
                                 "writable folder.") from None
        return folder / MEMORY_FILE

    # Reading -------------------------------------------------------------------------------
    @property
    def conversations(self) -> list[str]:
        return list(self._conversations)

    def conversation(self, name: str) -> Conversation:
        try:
            return self._conversations[name]
        except KeyError:
            raise MemevolveError(f"no conversation '{name}' in this memory. Fix: use one of "
                                 f"{', '.join(self._conversations) or '(none yet: add turns)'}."
                                 ) from None

    def search(self, question: str, date: datetime | str | None = None, *,
               conversation: str | None = None) -> RetrievedContext:
        """The context (units, text, token count) for ``question`` (asked on ``date``) from one conversation (may
        be left out when the memory holds only one)."""
        with self._lock:
            asked = self._question(question, date, conversation)
            return self._system.context(asked, self.config)

    def answer(self, question: str, date: datetime | str | None = None, *,
               conversation: str | None = None) -> str:
        """The config's answerer (extractive, or the LLM for answerer=llm) on the context
        ``search`` returns."""
        with self._lock:
            asked = self._question(question, date, conversation)
            context = self._system.context(asked, self.config)
            text, _, invalid, _ = self._system.answer(asked, self.config, context)
        if invalid:
            raise MemevolveError(f"{invalid}. Fix: check the answering model's settings.")
        return text

    # Internals -----------------------------------------------------------------------------
    def _put(self, conversation: Conversation) -> None:
        self._conversations[conversation.id] = conversation
        self._system.add_conversation(conversation)

    def _question(self, text: str, date: datetime | str | None,
                  conversation: str | None) -> Question:
        if conversation is None:
            if len(self._conversations) != 1:
                raise MemevolveError(f"this memory holds {len(self._conversations)} "
                                     "conversations. Fix: pass conversation=NAME.")
            conversation = next(iter(self._conversations))
        self.conversation(conversation)
        when = _parse_date(date)
        # The id keys the query cache: the same question asked again is processed once.
        digest = hashlib.sha256(f"{text}\0{when}".encode()).hexdigest()[:16]
        # No gold category: the config's question-type predictor reads the text, as in the
        # evaluation.
        return Question(id=f"search:{digest}", conversation_id=conversation, text=text,
                        category="", question_date=when)


def _parse_date(value: datetime | str | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise MemevolveError(f"date '{value}' is not an ISO date. Fix: pass a datetime or "
                             "'YYYY-MM-DD[THH:MM]'.") from None


def _turn(value: TurnLike, session: int, position: int, conversation: str) -> Turn:
    if isinstance(value, Turn):
        return replace(value, session_index=session, turn_index=position)
    if isinstance(value, Mapping):
        missing = [k for k in ("speaker", "text") if k not in value]
        if missing:
            raise MemevolveError(f"conversation '{conversation}': a turn lacks "
                                 f"{', '.join(missing)}. Fix: give every turn a speaker and a "
                                 "text.")
        return Turn(id=str(value.get("id") or f"D{session}:{position}"), session_index=session,
                    turn_index=position, speaker=str(value["speaker"]), text=str(value["text"]),
                    caption=value.get("caption"))
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        speaker, text = value
        return Turn(id=f"D{session}:{position}", session_index=session, turn_index=position,
                    speaker=str(speaker), text=str(text))
    raise MemevolveError(f"conversation '{conversation}': {value!r} is not a turn. Fix: pass "
                         "(speaker, text) pairs, mappings with speaker and text, or Turns.")
