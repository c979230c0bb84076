"""The data model's records made by the million (turns, sessions) share what repeats, and still
behave as the pydantic models they are."""
from __future__ import annotations

import pickle
from datetime import datetime

from benchmarks.model import Conversation, Session, Turn


def _turn(i: int, **extra) -> Turn:
    # Strings built at run time, as a loader builds them, not literals the compiler shares.
    return Turn(id="".join(["S1:", str(i)]), session_index=1, turn_index=i,
                speaker="".join(["us", "er"]), text=f"text {i}", **extra)


def test_turns_given_the_same_fields_share_one_field_set_but_keep_their_own_meaning():
    plain, other, photo = _turn(1), _turn(2), _turn(3, caption="a dog")
    assert plain.__pydantic_fields_set__ is other.__pydantic_fields_set__
    assert "caption" not in plain.model_dump(exclude_unset=True)
    assert photo.model_dump(exclude_unset=True)["caption"] == "a dog"
    copied = plain.model_copy(update={"caption": "a cat"})
    assert copied.model_dump(exclude_unset=True)["caption"] == "a cat"
    assert "caption" not in other.model_dump(exclude_unset=True)
    assert copied.content == "text 1 [shares a photo of a cat]"


def test_ids_and_speakers_are_one_string_object_each():
    first, again = _turn(1), _turn(1)
    assert first.id is again.id and first.speaker is again.speaker
    assert first == again


def test_conversations_round_trip_through_pickle_and_json():
    session = Session(index=1, date=datetime(2023, 5, 7), turns=(_turn(1), _turn(2)))
    conversation = Conversation(id="c", speakers=("user", "assistant"), sessions=(session,))
    back = Conversation.model_validate_json(conversation.model_dump_json())
    assert back == conversation and back.model_dump() == conversation.model_dump()
    assert back.sessions[0].turns[0].id is conversation.sessions[0].turns[0].id
    # What Ray sends an actor: shared objects stay shared within the payload.
    twin = conversation.model_copy(update={"id": "d"})
    one, two = pickle.loads(pickle.dumps((conversation, twin)))
    assert one == conversation and one.model_dump() == conversation.model_dump()
    first, second = one.sessions[0].turns
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert first.id is two.sessions[0].turns[0].id
