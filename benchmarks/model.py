"""The one data model every benchmark adapter loads into (conversations, sessions, turns, questions)."""
from __future__ import annotations

import sys
from collections.abc import Collection
from datetime import datetime
from functools import cached_property
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass

#: One set object per distinct set of explicitly given fields, shared by the frozen models
#: below (see _Lean).
_FIELD_SETS: dict[frozenset[str], set[str]] = {}


class _Lean(BaseModel):
    """A frozen model made by the hundred thousand (LongMemEval M: 250,000 sessions):
    pydantic gives each instance its own set of the fields it was given (728 bytes for five),
    so instances given the same fields share one. Frozen instances never change it;
    model_copy copies it before adding to it."""

    model_config = ConfigDict(frozen=True)

    def model_post_init(self, context: Any) -> None:
        given = self.__pydantic_fields_set__
        object.__setattr__(self, "__pydantic_fields_set__",
                           _FIELD_SETS.setdefault(frozenset(given), given))


@dataclass(frozen=True, slots=True)
class Turn:
    """One utterance; its ``id`` is the benchmark-native memory unit id (LoCoMo ``D1:3``).

    A validated, slotted dataclass rather than a model: LongMemEval M has 2.5 million turns,
    and a frozen model costs ~1 KB each beyond its text (its field dict and field set), this
    80 bytes. Copy one with ``dataclasses.replace``."""

    id: str
    session_index: int
    turn_index: int
    speaker: str
    text: str
    caption: str | None = Field(default=None, description="Image caption on photo turns.")

    def __post_init__(self) -> None:
        # Ids and speakers repeat across haystacks and turns (LongMemEval's 'S3:2', 'user'):
        # one string object each, not one per turn.
        object.__setattr__(self, "id", sys.intern(self.id))
        object.__setattr__(self, "speaker", sys.intern(self.speaker))

    @property
    def content(self) -> str:
        """The text a memory unit carries: the utterance plus its photo caption, if any."""
        if self.caption:
            return f"{self.text} [shares a photo of {self.caption}]"
        return self.text


class Session(_Lean):
    """A dated group of consecutive turns. Never carries a benchmark's label-leaking session id."""

    index: int
    date: datetime | None = None
    date_text: str = ""
    turns: tuple[Turn, ...]
    summary: str | None = None


class Conversation(BaseModel):
    """The memory an agent holds: sessions of turns between speakers."""

    model_config = ConfigDict(frozen=True)

    id: str
    speakers: tuple[str, ...]
    sessions: tuple[Session, ...]

    @property
    def turns(self) -> list[Turn]:
        return [turn for session in self.sessions for turn in session.turns]

    def turn_ids(self) -> set[str]:
        return {turn.id for session in self.sessions for turn in session.turns}


class Question(BaseModel):
    """A question about one conversation, with its gold answers and gold evidence unit ids."""

    model_config = ConfigDict(frozen=True)

    id: str
    conversation_id: str
    text: str
    category: str = Field(description="LoCoMo numeric id as text ('1'..'5'); LongMemEval question "
                          "type; MemBench question type; synthetic uses LoCoMo ids.")
    answers: tuple[str, ...] = ()
    adversarial: bool = Field(default=False, description="The right answer is that the "
                              "information is not in the memory (LoCoMo cat 5, LongMemEval _abs).")
    adversarial_answer: str | None = Field(default=None, description="LoCoMo cat 5: the WRONG "
                                           "answer the false premise invites.")
    evidence: tuple[str, ...] = Field(default=(), description="Gold turn-level unit ids.")
    evidence_sessions: tuple[int, ...] = Field(default=(), description="Gold session indices.")
    target_turns: tuple[str, ...] = Field(default=(), description="Official retrieval targets "
                                          "where a benchmark defines them apart from the "
                                          "evidence (LongMemEval: USER turns with has_answer).")
    unresolved_evidence: tuple[str, ...] = Field(default=(), description="Raw evidence ids that "
                                                 "name no turn of the conversation.")
    question_date: datetime | None = None
    choices: dict[str, str] | None = Field(default=None, description="MemBench multiple choice.")
    correct_choice: str | None = None


class Benchmark(BaseModel):
    """A loaded benchmark: its conversations, its questions and where they came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    variant: str = ""
    source: str = Field(description="Path of the file (or generator spec) it was loaded from.")
    sha256: str
    conversations: tuple[Conversation, ...]
    questions: tuple[Question, ...]
    warnings: dict[str, int] = Field(default_factory=dict, description="Counted problems in "
                                     "records that were kept (e.g. unresolved evidence ids).")

    @cached_property
    def conversation_by_id(self) -> dict[str, Conversation]:
        return {c.id: c for c in self.conversations}

    def without_conversations(self) -> Benchmark:
        """The same benchmark with its questions but no conversations: what a driver keeps once
        the shard actors hold the haystacks (counts() then counts no conversation)."""
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return Benchmark.model_construct(**{**fields, "conversations": ()})

    def keeping(self, conversation_ids: Collection[str]) -> Benchmark:
        """All its questions, but only these conversations: a shard actor's part, or (none
        kept) a driver's whose actors load their own."""
        wanted = set(conversation_ids)
        fields = {name: getattr(self, name) for name in type(self).model_fields}
        return Benchmark.model_construct(**{**fields, "conversations": tuple(
            c for c in self.conversations if c.id in wanted)})

    def conversation_ids(self) -> list[str]:
        """The conversations' ids in order; without conversations (a driver's part), those
        its questions name, in order of first mention."""
        if self.conversations:
            return [c.id for c in self.conversations]
        return list(dict.fromkeys(q.conversation_id for q in self.questions))

    @property
    def key(self) -> str:
        """Identity of the benchmark's content for caches and the run store."""
        return f"{self.name}:{self.variant}:{self.sha256[:16]}"

    def counts(self) -> dict[str, int]:
        return {
            "conversations": len(self.conversations),
            "sessions": sum(len(c.sessions) for c in self.conversations),
            "turns": sum(len(s.turns) for c in self.conversations for s in c.sessions),
            "questions": len(self.questions),
        }

    def category_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for q in self.questions:
            out[q.category] = out.get(q.category, 0) + 1
        return dict(sorted(out.items()))
