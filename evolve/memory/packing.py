"""Packing ranked units into the token budget: as units (each paid in full), or as spans of turns
(a turn that several windows or expansions share is paid once), optionally grouped by session
under one date header each."""
from __future__ import annotations

from dataclasses import dataclass

from evolve.memory.text import count_tokens, format_date
from evolve.memory.units import MemoryUnit, UnitSet

#: Passages carry their turn's id but only part of its text: never widened to the whole turn.
PASSAGE_PREFIX = "psg:"


@dataclass(frozen=True)
class PackedContext:
    """What was paid for, in rank order (recall and the answerer read it), and the context."""

    packed: list[MemoryUnit]
    context_units: list[MemoryUnit]
    text: str
    tokens: int


def session_header(unit: MemoryUnit) -> str:
    return f"[{format_date(unit.date)}]" if unit.date is not None \
        else f"[session {unit.session_index}]"


def pack(candidates: list[MemoryUnit], budget: int, with_dates: bool,
         token_of: dict[str, int]) -> tuple[list[MemoryUnit], int]:
    """The longest prefix, in rank order, that fits the token budget."""
    used = 0
    packed: list[MemoryUnit] = []
    for unit in candidates:
        cost = token_of[unit.id]
        if used + cost > budget:
            break
        packed.append(unit)
        used += cost
    return packed, used


def pack_context(candidates: list[MemoryUnit], units: UnitSet, *, budget: int, spans: bool,
                 session_headers: bool, include_dates: bool, chronological: bool,
                 token_of: dict[str, int]) -> PackedContext:
    """The longest rank-order prefix of ``candidates`` that fits ``budget``, rendered.

    ``token_of`` holds each unit's and turn's cost as rendered (dated when dates are shown per
    line). With ``spans``, a multi-turn unit contributes only its turns not yet packed; with
    ``session_headers``, every session's first packed piece also pays for its date header and
    lines carry no date of their own."""
    dated_lines = include_dates and not session_headers
    if not spans and not session_headers:
        packed, used = pack(candidates, budget, include_dates, token_of)
        shown = sorted(packed, key=lambda u: (u.position, u.id)) if chronological else packed
        return PackedContext(packed, shown, "\n".join(u.rendered(dated_lines) for u in shown),
                             used)
    turn_of = {t.id: t for t in units.turn_units}
    paid: set[str] = set()
    headed: set[int] = set()
    packed, rank_of = [], {}
    used = 0
    for rank, candidate in enumerate(candidates):
        pieces = _pieces(candidate, turn_of, paid) if spans else [candidate]
        if not pieces:
            continue
        new_sessions = {p.session_index: p for p in pieces if p.session_index not in headed} \
            if session_headers else {}
        cost = sum(token_of[p.id] for p in pieces) + \
            sum(count_tokens(session_header(p)) for p in new_sessions.values())
        if used + cost > budget:
            break
        used += cost
        headed.update(new_sessions)
        for piece in pieces:
            paid.update(piece.turn_ids)
            rank_of.setdefault(piece.id, rank)
            packed.append(piece)
    shown = _arranged(packed, rank_of, session_headers, chronological)
    return PackedContext(packed, shown, _render(shown, session_headers, dated_lines), used)


def _pieces(candidate: MemoryUnit, turn_of: dict[str, MemoryUnit],
            paid: set[str]) -> list[MemoryUnit]:
    """The parts of a candidate not paid for yet: its new turns, or the whole unit when it is a
    passage or a summary (no turn of its own is widened or split)."""
    if candidate.id.startswith(PASSAGE_PREFIX) or not candidate.turn_ids:
        return [] if paid & set(candidate.turn_ids) else [candidate]
    return [turn_of[t] for t in candidate.turn_ids if t not in paid and t in turn_of]


def _arranged(packed: list[MemoryUnit], rank_of: dict[str, int], by_session: bool,
              chronological: bool) -> list[MemoryUnit]:
    """Runs of consecutive turns of one session form a span, read in order; spans (or, grouped
    by session, sessions) follow their best rank, or their position when chronological."""
    by_position = sorted(packed, key=lambda u: (u.position, u.id))
    if chronological:
        return by_position
    group_rank: dict[object, int] = {}
    keys: list[object] = []
    span, previous = 0, None
    for unit in by_position:
        if previous is not None and not by_session and (
                unit.session_index != previous.session_index
                or unit.position - previous.position > 1):
            span += 1
        key = unit.session_index if by_session else span
        keys.append(key)
        group_rank[key] = min(group_rank.get(key, rank_of[unit.id]), rank_of[unit.id])
        previous = unit
    order = sorted(range(len(by_position)), key=lambda i: (group_rank[keys[i]], i))
    return [by_position[i] for i in order]


def _render(shown: list[MemoryUnit], session_headers: bool, dated_lines: bool) -> str:
    lines: list[str] = []
    current = None
    for unit in shown:
        if session_headers and unit.session_index != current:
            lines.append(session_header(unit))
            current = unit.session_index
        lines.append(unit.rendered(dated_lines))
    return "\n".join(lines)
