"""Memory units built from a conversation: turns, windows of neighbouring turns, session summaries,
whole sessions (for session-level scores) and passages cut from long turns."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cached_property, lru_cache

import numpy as np

from benchmarks.model import Conversation
from evolve.memory.text import count_tokens, format_date, sentences

#: Units made of several turns, whose dense vector is the mean of their turns' vectors.
COMPOSED_PREFIXES = ("win:", "session:")
#: The speaker of a user's own turns (LongMemEval's role names); 'user' roles keep only these.
USER_ROLE = "user"


@dataclass(frozen=True, slots=True)
class MemoryUnit:
    """One retrievable piece of memory; ``turn_ids`` are the turns whose evidence it holds.
    Slotted: there is one per turn (2.5 million in LongMemEval M), and a dict each would
    double its size."""

    id: str
    session_index: int
    position: int                  # chronological position of its (first) turn
    speaker: str
    date: datetime | None
    text: str
    turn_ids: tuple[str, ...]

    def rendered(self, with_date: bool) -> str:
        line = f"{self.speaker}: {self.text}" if self.speaker else self.text
        if with_date and self.date is not None:
            return f"[{format_date(self.date)}] {line}"
        return line

    def token_counts(self) -> tuple[int, int]:
        """count_tokens of ``rendered(False)`` and of ``rendered(True)``, with one pass over the
        text instead of two over longer strings (the units stage of LongMemEval M counts 2.5
        million turns): no token spans the ': ' after the speaker or the '] ' after the date
        (a token is a run of word characters or one other non-space character), so each
        rendering's count is its parts' counts added."""
        line = count_tokens(self.text) + (_speaker_tokens(self.speaker) if self.speaker else 0)
        return line, line + (_date_tokens(self.date.date()) if self.date is not None else 0)


@lru_cache(maxsize=4096)
def _speaker_tokens(speaker: str) -> int:
    return count_tokens(f"{speaker}:")


@lru_cache(maxsize=65536)
def _date_tokens(date: date) -> int:
    return count_tokens(f"[{format_date(date)}]")


@dataclass(frozen=True)
class UnitSet:
    """The units of one conversation for one unit setting, with their token counts."""

    units: tuple[MemoryUnit, ...]
    tokens: tuple[int, ...]
    tokens_dated: tuple[int, ...]
    index_of: dict[str, int]
    #: Units by chronological turn position, for neighbour expansion (turn units only).
    turn_units: tuple[MemoryUnit, ...]

    # Read by every question's ranking: built once per unit set, not once per question.
    @cached_property
    def positions(self) -> np.ndarray:
        """Each unit's ``position`` (what orders equal scores in every ranking)."""
        return _frozen(np.array([u.position for u in self.units], dtype=np.int64))

    @cached_property
    def session_indexes(self) -> np.ndarray:
        """Each unit's ``session_index``."""
        return _frozen(np.array([u.session_index for u in self.units], dtype=np.int64))


def build_units(conversation: Conversation, kind: str, window_size: int, *, roles: str = "all",
                passage_tokens: int = 0) -> UnitSet:
    """The units of one kind ('turn', 'window', 'turn+summary' or 'session'), over all turns or,
    with ``roles='user'``, the user's turns only (a conversation without a 'user' speaker, such
    as LoCoMo's two people, keeps all). ``passage_tokens`` > 0 cuts every turn longer than that
    into passages of whole sentences, each credited to its turn."""
    units, turns = _unit_list(conversation, kind, window_size, roles, passage_tokens)
    tokens, tokens_dated = _token_counts(units)
    return UnitSet(units=tuple(units), tokens=tokens, tokens_dated=tokens_dated,
                   index_of={u.id: i for i, u in enumerate(units)},
                   turn_units=tuple(turns))


def extend_units(old: UnitSet, conversation: Conversation, kind: str, window_size: int, *,
                 roles: str = "all", passage_tokens: int = 0) -> tuple[UnitSet, int]:
    """The units (as ``build_units`` makes them) of a conversation that grew from the one
    ``old`` was built on, and how many leading units are unchanged: their token counts are
    kept, only the rest are counted."""
    units, turns = _unit_list(conversation, kind, window_size, roles, passage_tokens)
    keep = 0
    for before, after in zip(old.units, units):
        if before != after:
            break
        keep += 1
    tokens, tokens_dated = _token_counts(units[keep:])
    return UnitSet(units=tuple(units), tokens=old.tokens[:keep] + tokens,
                   tokens_dated=old.tokens_dated[:keep] + tokens_dated,
                   index_of={u.id: i for i, u in enumerate(units)},
                   turn_units=tuple(turns)), keep


def _token_counts(units: list[MemoryUnit]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Each unit's token count undated and dated (UnitSet.tokens and tokens_dated)."""
    counts = [u.token_counts() for u in units]
    return tuple(c[0] for c in counts), tuple(c[1] for c in counts)


def _unit_list(conversation: Conversation, kind: str, window_size: int, roles: str,
               passage_tokens: int) -> tuple[list[MemoryUnit], list[MemoryUnit]]:
    turns: list[MemoryUnit] = []
    position = 0
    user_only = roles == "user" and USER_ROLE in conversation.speakers
    for session in conversation.sessions:
        for turn in session.turns:
            if user_only and turn.speaker != USER_ROLE:
                continue
            turns.append(MemoryUnit(turn.id, session.index, position, turn.speaker, session.date,
                                    turn.content, (turn.id,)))
            position += 1
    if kind == "turn":
        units = _passages(turns, passage_tokens) if passage_tokens else list(turns)
    elif kind == "window":
        units = _windows(turns, window_size)
    elif kind == "turn+summary":
        units = list(turns) + [
            MemoryUnit(f"summary:{s.index}", s.index, _first_position(turns, s.index), "",
                       s.date, s.summary, ())
            for s in conversation.sessions if s.summary]
    elif kind == "session":
        units = _sessions(turns)
    else:
        raise ValueError(f"unknown unit kind {kind!r}")
    return units, turns


def unit_text(conversation: Conversation, unit_id: str, window_size: int = 1) -> str:
    """The undated text of one unit: a turn ('D1:3'), the window around a turn ('win:D1:3',
    ``window_size`` turns each side) or a session summary ('summary:3')."""
    for session in conversation.sessions:
        if unit_id == f"summary:{session.index}" and session.summary:
            return session.summary
        # Windows never cross a session, so the session's turns alone rebuild one.
        turns = [MemoryUnit(t.id, session.index, i, t.speaker, session.date, t.content, (t.id,))
                 for i, t in enumerate(session.turns)]
        for i, turn in enumerate(turns):
            if unit_id == turn.id:
                return turn.rendered(False)
            if unit_id == f"win:{turn.id}":
                return _windows(turns, window_size)[i].rendered(False)
    raise ValueError(f"conversation {conversation.id} has no memory unit '{unit_id}'")


def _sessions(turns: list[MemoryUnit]) -> list[MemoryUnit]:
    by_session: dict[int, list[MemoryUnit]] = {}
    for turn in turns:
        by_session.setdefault(turn.session_index, []).append(turn)
    return [MemoryUnit(f"session:{index}", index, members[0].position, "", members[0].date,
                       " / ".join(f"{t.speaker}: {t.text}" for t in members),
                       tuple(t.id for t in members))
            for index, members in by_session.items()]


def _passages(turns: list[MemoryUnit], max_tokens: int) -> list[MemoryUnit]:
    """Each turn, or, when longer than ``max_tokens``, its passages: consecutive whole sentences
    up to ``max_tokens`` each (a longer sentence is a passage of its own)."""
    out: list[MemoryUnit] = []
    for turn in turns:
        if count_tokens(turn.text) <= max_tokens:
            out.append(turn)
            continue
        chunks: list[list[str]] = [[]]
        size = 0
        for sentence in sentences(turn.text):
            cost = count_tokens(sentence)
            if chunks[-1] and size + cost > max_tokens:
                chunks.append([])
                size = 0
            chunks[-1].append(sentence)
            size += cost
        out.extend(MemoryUnit(f"psg:{turn.id}:{i}", turn.session_index, turn.position,
                              turn.speaker, turn.date, " ".join(chunk), turn.turn_ids)
                   for i, chunk in enumerate(chunks))
    return out


def _first_position(turns: list[MemoryUnit], session_index: int) -> int:
    return next((t.position for t in turns if t.session_index == session_index), 0)


def _windows(turns: list[MemoryUnit], size: int) -> list[MemoryUnit]:
    """A window per turn: the turn and ``size`` neighbours each side, within its session."""
    out = []
    for i, centre in enumerate(turns):
        lo, hi = i, i
        while lo > 0 and i - lo < size and turns[lo - 1].session_index == centre.session_index:
            lo -= 1
        while (hi < len(turns) - 1 and hi - i < size
               and turns[hi + 1].session_index == centre.session_index):
            hi += 1
        members = turns[lo:hi + 1]
        text = " / ".join(f"{t.speaker}: {t.text}" for t in members)
        out.append(MemoryUnit(f"win:{centre.id}", centre.session_index, centre.position, "",
                              centre.date, text, tuple(t.id for t in members)))
    return out


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values
