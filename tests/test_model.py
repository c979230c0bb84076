"""The data model's records made by the million (turns, sessions) share what repeats, and still
validate, compare, copy and serialise as before."""
from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime

import pytest
from pydantic import ValidationError

from benchmarks.model import Conversation, Session, Turn


def _turn(i: int, **extra) -> Turn:
    # Strings built at run time, as a loader builds them, not literals the compiler shares.
    return Turn(id="".join(["S1:", str(i)]), session_index=1, turn_index=i,
                speaker="".join(["us", "er"]), text=f"text {i}", **extra)


def _session(index: int, *turns: Turn, **extra) -> Session:
    return Session(index=index, date=datetime(2023, 5, 7), turns=turns, **extra)


def test_a_turn_is_validated_slotted_frozen_and_copied_with_replace():
    with pytest.raises(ValidationError):
        Turn(id="S1:1", session_index="first", turn_index=1, speaker="user", text="hi")
    turn = _turn(1)
    assert not hasattr(turn, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        turn.text = "changed"  # type: ignore[misc]
    photo = dataclasses.replace(turn, caption="a cat")
    assert photo.content == "text 1 [shares a photo of a cat]" and turn.content == "text 1"


def test_ids_and_speakers_are_one_string_object_each():
    first, again = _turn(1), _turn(1)
    assert first.id is again.id and first.speaker is again.speaker
    assert first == again and hash(first) == hash(again)


def test_sessions_given_the_same_fields_share_one_field_set_but_keep_their_own_meaning():
    plain, other, summarised = _session(1, _turn(1)), _session(2), _session(3, summary="s")
    assert plain.__pydantic_fields_set__ is other.__pydantic_fields_set__
    assert "summary" not in plain.model_dump(exclude_unset=True)
    assert summarised.model_dump(exclude_unset=True)["summary"] == "s"
    copied = plain.model_copy(update={"summary": "new"})
    assert copied.model_dump(exclude_unset=True)["summary"] == "new"
    assert "summary" not in other.model_dump(exclude_unset=True)


def test_conversations_round_trip_through_json_and_pickle():
    conversation = Conversation(id="c", speakers=("user", "assistant"),
                                sessions=(_session(1, _turn(1), _turn(2)),))
    back = Conversation.model_validate_json(conversation.model_dump_json())
    assert back == conversation and back.model_dump() == conversation.model_dump()
    assert back.sessions[0].turns[0].id is conversation.sessions[0].turns[0].id
    assert back.model_dump()["sessions"][0]["turns"][0] == {
        "id": "S1:1", "session_index": 1, "turn_index": 1, "speaker": "user", "text": "text 1",
        "caption": None}
    # What Ray sends an actor: shared objects stay shared within the payload.
    twin = conversation.model_copy(update={"id": "d"})
    one, two = pickle.loads(pickle.dumps((conversation, twin)))
    assert one == conversation and one.model_dump() == conversation.model_dump()
    assert one.sessions[0].turns[0].id is two.sessions[0].turns[0].id
