"""Every dimension of the search space changes what the memory system retrieves, packs or answers.

Each proof evaluates one hand-made question under two configs that differ in that dimension only
(plus the settings that make it matter) and checks the difference in the outcome row. A dimension
added to ``DIMENSIONS`` without a proof here fails ``test_dimension_changes_behaviour``.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from benchmarks.errors import MemevolveError
from benchmarks.model import Conversation, Question, Session, Turn
from evolve.memory import rerank
from evolve.memory.answer import NOT_MENTIONED
from evolve.memory.answer_llm import answer_messages
from evolve.memory.system import EmbedderSpec, MemorySystem
from evolve.question_types import train_body as train_question_types
from search_space.artefacts import artefact_hash
from search_space.config import (ORACLE_GOLD_CATEGORIES, RetrievalConfig, SpaceConfig,
                                 config_class)
from search_space.dimensions import DIMENSIONS, DIMENSIONS_BY_NAME

# --- hand-made conversations, each built to make a few dimensions visible ------------------------

FILLER = ("Alice: The garden needs water.", "Bob: I bought new curtains.",
          "Alice: I cooked pasta for dinner.", "Bob: Traffic was slow downtown.")


def _session(index: int, date: str | None, *lines: str, summary: str | None = None) -> Session:
    turns = []
    for position, line in enumerate(lines, start=1):
        speaker, text = line.split(": ", 1)
        turns.append(Turn(id=f"D{index}:{position}", session_index=index, turn_index=position,
                          speaker=speaker, text=text))
    return Session(index=index, date=datetime.fromisoformat(date) if date else None,
                   turns=tuple(turns), summary=summary)


def _conversation(cid: str, *sessions: Session,
                  speakers: tuple[str, ...] = ("Alice", "Bob")) -> Conversation:
    return Conversation(id=cid, speakers=speakers, sessions=sessions)


CONVERSATIONS = (
    _conversation("stemming", _session(
        1, None, "Alice: I cooked pasta for dinner.", "Bob: My brother runs five miles daily.",
        "Alice: The garden needs water.", "Bob: I bought new curtains.")),
    _conversation("case", _session(
        1, None, "Alice: That sounds nice, really nice.",
        "Bob: Nice was sunny when I stayed there in June.", *FILLER)),
    _conversation("punctuation", _session(
        1, None, "Alice: Learning C was hard.", "Bob: C++ is my favourite.", *FILLER)),
    _conversation("stopwords", _session(
        1, None, "Bob: Does she have a car? I do not think she has a car.",
        "Carol: My cat is lovely.", "Bob: I bought new curtains.",
        "Carol: Traffic was slow downtown."), speakers=("Bob", "Carol")),
    _conversation("saturation", _session(
        1, None, "Alice: Dog, dog, dog and another dog.", "Bob: We found the beach for our dog.",
        "Alice: The beach was crowded.", "Bob: Sand from the beach got everywhere.",
        "Alice: I cooked pasta for dinner.", "Bob: I bought new curtains.",
        "Alice: The garden needs water.", "Bob: Traffic was slow downtown.")),
    _conversation("length", _session(
        1, None, "Alice: We walked for hours along a windy coast road past fields and farms "
                 "until we finally saw a lighthouse.", "Bob: A lighthouse.", *FILLER)),
    _conversation("keywords", _session(
        1, None, "Bob: What did you do? What did you do all day?", "Carol: The lake was frozen.",
        "Bob: I bought new curtains.", "Carol: Traffic was slow downtown."),
        speakers=("Bob", "Carol")),
    _conversation("swap", _session(
        1, None, "Alice: I kept my old guitar in the attic.",
        "Bob: I kept my old guitar in the garage.", "Alice: The garden needs water.",
        "Alice: I cooked pasta for dinner.", "Alice: Traffic was slow downtown.",
        "Bob: I bought new curtains.")),
    _conversation("dated",
                  _session(1, "2023-01-10", "Alice: I went to a concert.",
                           "Bob: The garden needs water."),
                  _session(2, "2023-05-20", "Alice: I went to a concert.",
                           "Bob: I bought new curtains.")),
    # Bob's turn trails Alice's slightly on BM25 but leads the structured ranking (Bob is asked
    # about); Alice's turn is fourth there, after Bob's three turns.
    _conversation("fusion", _session(
        1, None, "Bob: The kayak trip was fun but tiring.",
        "Alice: Bob loved the kayak trip, the kayak was blue.", "Bob: I bought new curtains.",
        "Bob: Traffic was slow downtown.", "Alice: The garden needs water.",
        "Alice: I cooked pasta for dinner.")),
    _conversation("semantic", _session(
        1, None, "Bob: Alice does have a pet peeve about loud music.",
        "Alice: My dog Rex sleeps on my bed every night.", *FILLER)),
    _conversation("duplicates", _session(
        1, None, "Alice: I adopted a puppy named Rex yesterday.",
        "Alice: I adopted a puppy named Rex last week.",
        "Alice: I adopted a kitten named Luna too.", "Bob: I bought new curtains.",
        "Alice: I cooked pasta for dinner.", "Bob: My sister called.")),
    _conversation("trip",
                  _session(1, "2023-05-07", "Alice: I moved to Lisbon.",
                           "Bob: How is the new flat?",
                           "Alice: The flat is small but bright, near a tram stop.",
                           "Bob: I started learning the violin."),
                  _session(2, "2023-06-12", "Bob: My violin teacher is strict.",
                           "Alice: I went hiking in the mountains.",
                           "Bob: Did you see any wildlife?",
                           "Alice: We saw two eagles near the summit.",
                           summary="Alice and Bob talked about violin lessons and a hiking trip.")),
    _conversation("roles", _session(
        1, None, "user: I adopted a cat and named her Miso.",
        "assistant: I would name my cat Miso, or name my cat Mochi. What did you name yours?",
        "user: My garden needs water.", "assistant: Water the garden in the morning."),
        speakers=("user", "assistant")),
    _conversation("passages", _session(
        1, None, "Alice: We spent the morning at the market buying bread, cheese, olives and "
                 "a large bunch of flowers for the table. Then we walked along the river for an "
                 "hour, watched the boats go by and talked about the summer holidays, the new "
                 "neighbours and the weather. The violin recital is on Friday evening. After "
                 "lunch we visited my aunt, her husband and their three noisy dogs, who chased "
                 "the cat around the garden until it hid under the old wooden shed at the back. We "
                 "drove home late.",
        *FILLER)),
    # The bike chain turn of session 1 leads on its own; session 2 as a whole is about repairs.
    _conversation("sessions",
                  _session(1, "2023-03-01", "Alice: My bike chain is rusty.",
                           "Bob: I bought new curtains.", "Alice: The garden needs water.",
                           "Bob: Traffic was slow downtown."),
                  _session(2, "2023-04-01", "Bob: The bike shop fixed it.",
                           "Alice: The chain came off again.",
                           "Bob: We got it fixed at the shop.",
                           "Alice: The shop fixed the bike fast."),
                  _session(3, "2023-05-01", *FILLER)),
    # The hike turn names the Alps twice and Tom once; the turns about them share no query word.
    _conversation("feedback", _session(
        1, None, "Alice: I went hiking with Tom near the Alps; the Alps were lovely.",
        "Bob: I bought new curtains.", "Alice: The garden needs water.",
        "Bob: Traffic was slow downtown.", "Bob: Tom brought sandwiches.",
        "Bob: The Alps had snow.")),
    _conversation("recency",
                  _session(1, "2023-01-10", "Alice: My favourite colour is blue.", *FILLER),
                  _session(2, "2023-05-20", "Alice: My favourite colour is green these days.",
                           *FILLER)),
    # Bob's teacher is named in one turn and her home in another, four turns later.
    _conversation("hops", _session(
        1, None, "Bob: My violin teacher is Marta.", *FILLER, "Alice: Marta lives in Porto.")),
    # The hobby's name, not a person's, links the question to the turn about its class.
    _conversation("hop_terms", _session(
        1, None, "Alice: My new hobby is pottery.", *FILLER,
        "Bob: The pottery class meets on Mondays.")),
    # The curry turns match two words of the question each, the trip turn one.
    _conversation("clauses", _session(
        1, None, "Alice: I cook curry often.", "Alice: I cook curry for Tom.",
        "Bob: I travel to Oslo by train.", *FILLER)),
    # Marta's turns name her three times each; Rex's turns name him once.
    _conversation("entities", _session(
        1, None, "Alice: Marta swam, Marta ran, Marta rested.",
        "Alice: Marta sang, Marta danced, Marta slept.", "Bob: Rex barked.",
        "Bob: Rex chewed my slippers.", *FILLER)),
    _conversation("long", _session(1, None, *(
        f"{speaker}: On day {day} of the road trip we drove through small towns, stopped for "
        f"coffee, took photos of old churches and talked about music until the sun went down "
        f"over the hills."
        for day, speaker in zip(range(1, 7), ("Alice", "Bob") * 3)))),
)


def _question(qid: str, conversation: str, text: str, *, category: str = "1",
              evidence: tuple[str, ...] = ()) -> Question:
    return Question(id=qid, conversation_id=conversation, text=text, category=category,
                    evidence=evidence)


#: The reranker learns from these that the turn with a time word answers a 'when' question,
#: while BM25 prefers the decoys that repeat the thing asked about.
LTR_THINGS = ("kite", "piano", "canoe", "lantern", "bicycle", "teapot", "ladder", "tent",
              "violin", "scooter", "camera", "blender", "hammock", "telescope", "kayak",
              "drone", "guitar", "sofa", "heater", "printer", "compass", "mirror", "wagon",
              "clock", "radio", "easel", "tractor", "harp", "fountain", "sled")


def _ltr_conversation(cid: str, thing: str, before: int, after: int) -> Conversation:
    decoys = [f"Alice: The {thing} is old, the {thing} is {colour}."
              for colour in ("blue", "red", "green", "grey", "white", "black", "pink", "brown",
                             "gold", "tan", "teal", "navy")[:before + after]]
    return _conversation(cid, _session(1, "2023-05-08", *FILLER[:2], *decoys[:before],
                                       f"Alice: I fixed the {thing} yesterday.",
                                       *decoys[before:], *FILLER[2:]))


# The decoys' number and place vary, so that no rank or position tells the evidence apart.
LTR_TRAINING = tuple(_ltr_conversation(f"ltr-{thing}", thing, i % 4, 1 + (i // 4) % 3)
                     for i, thing in enumerate(LTR_THINGS))
#: Held out from training: its evidence ranks below ten decoys in the fused order.
LTR_PROBE = _ltr_conversation("ltr-trumpet", "trumpet", 12, 0)
CONVERSATIONS = CONVERSATIONS + LTR_TRAINING + (LTR_PROBE,)


def _ltr_question(conversation: Conversation) -> Question:
    thing = conversation.id.split("-", 1)[1]
    evidence = next(t.id for t in conversation.sessions[0].turns if "yesterday" in t.text)
    return _question(conversation.id, conversation.id, f"When did Alice fix the {thing}?",
                     evidence=(evidence,))


QUESTIONS = (
    *(_ltr_question(c) for c in (*LTR_TRAINING, LTR_PROBE)),
    _question("stemming", "stemming", "Who enjoys running?"),
    _question("case", "case", "Who visited Nice?"),
    _question("punctuation", "punctuation", "Who codes in C++ at work?"),
    _question("stopwords", "stopwords", "Does Alice have a cat?"),
    _question("saturation", "saturation", "Is there a dog beach?"),
    _question("length", "length", "Which lighthouse?"),
    _question("keywords", "keywords", "What did Alice do at the lake?"),
    _question("swap", "swap", "Why did Alice sell her old guitar?"),
    _question("dated", "dated", "Who went to a concert in May 2023?"),
    _question("fusion", "fusion", "How did Bob find the kayak trip?"),
    _question("semantic", "semantic", "What pet does Alice have?"),
    _question("duplicates", "duplicates", "Which puppy did Alice adopt?"),
    _question("flat", "trip", "What is near the tram stop?", evidence=("D1:3", "D1:4")),
    _question("flat_far", "trip", "What is near the tram stop?", evidence=("D1:1",)),
    _question("flat_adversarial", "trip", "What is near the tram stop?", category="5"),
    _question("summary", "trip", "Who talked about violin lessons?"),
    _question("eagles", "trip", "Did you see any eagles near the summit on the hike?"),
    _question("moved", "trip", "When did Alice move to Lisbon?"),
    _question("summit", "trip", "What did Alice see near the summit?"),
    _question("road_trip", "long", "What did we do on the road trip?"),
    _question("miso", "roles", "What did I name my cat?"),
    _question("colour", "recency", "What is Alice's favourite colour?"),
    _question("hike_alps", "feedback", "Where did Alice go hiking?", evidence=("D1:6",)),
    _question("hike_tom", "feedback", "Where did Alice go hiking?", evidence=("D1:5",)),
    _question("recital", "passages", "When is the violin recital?", evidence=("D1:1",)),
    _question("chain", "sessions", "How did the bike chain get fixed?", evidence=("D2:2",)),
    _question("teacher", "hops", "Where does Bob's violin teacher live?", evidence=("D1:6",)),
    _question("hobby", "hop_terms", "When does Alice's new hobby meet?", evidence=("D1:6",)),
    _question("cook_travel", "clauses", "What curry did Alice cook and where did Bob travel?",
              evidence=("D1:1", "D1:3")),
    _question("marta_rex", "entities", "What did Marta and Rex do?", evidence=("D1:1", "D1:3")),
)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemorySystem]:
    """One memory system for the module, so MiniLM loads once; its vectors go to a temp cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMEVOLVE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield MemorySystem(CONVERSATIONS, QUESTIONS)


def _row(system: MemorySystem, question_id: str, **values: Any) -> dict[str, Any]:
    """The outcome row of one question under the default config with ``values`` changed."""
    (row,), _ = system.evaluate(RetrievalConfig().with_values(values), [question_id])
    return row


def _top(system: MemorySystem, question_id: str, **values: Any) -> str:
    return _row(system, question_id, **values)["retrieved_ids"][0]


# --- one proof per dimension ---------------------------------------------------------------------

Proof = Callable[..., None]
PROOFS: dict[str, Proof] = {}
#: Fixtures a proof takes after the system (by name).
PROOF_FIXTURES: dict[str, tuple[str, ...]] = {}


def proves(name: str, *fixtures: str) -> Callable[[Proof], Proof]:
    """Register a function as the proof that dimension ``name`` changes behaviour; it is
    called with the system and then the named fixtures."""

    def register(proof: Proof) -> Proof:
        PROOFS[name] = proof
        PROOF_FIXTURES[name] = fixtures
        return proof

    return register


@proves("unit")
def _window_units_cover_the_neighbours_of_the_matching_turn(system: MemorySystem) -> None:
    turn = _row(system, "flat", top_k=1)
    window = _row(system, "flat", top_k=1, unit="window")
    assert turn["retrieved_ids"][0] == "D1:3" and turn["recall_at_k"] == 0.5
    assert window["retrieved_ids"][0].startswith("win:") and window["recall_at_k"] == 1.0


@proves("window_size")
def _wider_windows_reach_evidence_two_turns_away(system: MemorySystem) -> None:
    assert _row(system, "flat_far", top_k=1, unit="window")["recall_at_k"] == 0.0
    assert _row(system, "flat_far", top_k=1, unit="window", window_size=2)["recall_at_k"] == 1.0


@proves("retrievers")
def _dense_retrieval_finds_the_paraphrase_bm25_misses(system: MemorySystem) -> None:
    assert _top(system, "semantic") == "D1:1"
    assert _top(system, "semantic", retrievers="dense") == "D1:2"


@proves("bm25_lowercase")
def _case_sensitive_bm25_tells_the_city_from_the_adjective(system: MemorySystem) -> None:
    assert _top(system, "case") == "D1:1"
    assert _top(system, "case", bm25_lowercase=False) == "D1:2"


@proves("bm25_strip_punctuation")
def _kept_punctuation_tells_cpp_from_c(system: MemorySystem) -> None:
    assert _top(system, "punctuation") == "D1:1"
    assert _top(system, "punctuation", bm25_strip_punctuation=False) == "D1:2"


@proves("bm25_stopwords")
def _dropping_stopwords_leaves_the_content_word_to_match(system: MemorySystem) -> None:
    assert _top(system, "stopwords") == "D1:1"
    assert _top(system, "stopwords", bm25_stopwords=True) == "D1:2"


@proves("bm25_stemming")
def _stemming_matches_running_with_runs(system: MemorySystem) -> None:
    assert _top(system, "stemming") == "D1:1"
    assert _top(system, "stemming", bm25_stemming=True) == "D1:2"


@proves("bm25_k1")
def _high_k1_rewards_a_repeated_term(system: MemorySystem) -> None:
    assert _top(system, "saturation", bm25_k1=0.3) == "D1:2"
    assert _top(system, "saturation", bm25_k1=3.0) == "D1:1"


@proves("bm25_b")
def _length_normalisation_prefers_the_short_turn(system: MemorySystem) -> None:
    assert _top(system, "length", bm25_b=0.0) == "D1:1"
    assert _top(system, "length", bm25_b=0.75) == "D1:2"


@proves("query_keywords")
def _keyword_queries_ignore_wh_words_and_auxiliaries(system: MemorySystem) -> None:
    assert _top(system, "keywords") == "D1:1"
    assert _top(system, "keywords", query_keywords=True) == "D1:2"


@proves("speaker_swap")
def _speaker_swap_retrieves_the_other_speakers_turn(system: MemorySystem) -> None:
    assert _top(system, "swap") == "D1:1"
    assert _top(system, "swap", speaker_swap=True) == "D1:2"


@proves("temporal_cues")
def _temporal_cues_favour_the_turn_dated_near_the_asked_month(system: MemorySystem) -> None:
    hybrid = {"retrievers": "bm25+structured", "structured_weight": 1.0}
    assert _top(system, "dated", **hybrid) == "D1:1"
    assert _top(system, "dated", **hybrid, temporal_cues=True) == "D2:1"


@proves("fusion")
def _rank_fusion_ignores_how_close_the_bm25_scores_are(system: MemorySystem) -> None:
    hybrid = {"retrievers": "bm25+structured", "bm25_weight": 1.0}
    assert _top(system, "fusion", **hybrid) == "D1:1"
    assert _top(system, "fusion", **hybrid, fusion="rrf") == "D1:2"


@proves("rrf_k")
def _small_rrf_k_lets_the_top_bm25_rank_dominate(system: MemorySystem) -> None:
    rrf = {"retrievers": "bm25+structured", "fusion": "rrf", "bm25_weight": 1.0,
           "structured_weight": 0.45}
    assert _top(system, "fusion", **rrf, rrf_k=1) == "D1:2"
    assert _top(system, "fusion", **rrf, rrf_k=60) == "D1:1"


@proves("dense_weight")
def _dense_weight_moves_the_ranking_from_bm25_to_dense(system: MemorySystem) -> None:
    hybrid = {"retrievers": "bm25+dense", "bm25_weight": 0.05}
    assert _top(system, "semantic", **hybrid, dense_weight=0.0) == "D1:1"
    assert _top(system, "semantic", **hybrid, dense_weight=1.0) == "D1:2"


@proves("bm25_weight")
def _bm25_weight_moves_the_ranking_from_dense_to_bm25(system: MemorySystem) -> None:
    hybrid = {"retrievers": "bm25+dense", "dense_weight": 0.5}
    assert _top(system, "semantic", **hybrid, bm25_weight=0.0) == "D1:2"
    assert _top(system, "semantic", **hybrid, bm25_weight=1.0) == "D1:1"


@proves("structured_weight")
def _structured_weight_favours_the_asked_speakers_turn(system: MemorySystem) -> None:
    hybrid = {"retrievers": "bm25+structured"}
    assert _top(system, "fusion", **hybrid, structured_weight=0.0) == "D1:2"
    assert _top(system, "fusion", **hybrid, structured_weight=1.0) == "D1:1"


@proves("top_k")
def _top_k_sets_how_many_units_reach_the_context(system: MemorySystem) -> None:
    assert len(_row(system, "flat", top_k=1)["context_ids"]) == 1
    assert len(_row(system, "flat", top_k=3)["context_ids"]) == 3


@proves("mmr_lambda")
def _lower_mmr_lambda_skips_the_near_duplicate(system: MemorySystem) -> None:
    relevance = _row(system, "duplicates", top_k=2)["context_ids"]
    diverse = _row(system, "duplicates", top_k=2, mmr_lambda=0.3)["context_ids"]
    assert relevance == ["D1:1", "D1:2"]
    assert diverse[0] == "D1:1" and "D1:2" not in diverse


@proves("neighbor_expansion")
def _neighbour_expansion_adds_the_surrounding_turns(system: MemorySystem) -> None:
    assert _row(system, "flat", top_k=1)["context_ids"] == ["D1:3"]
    assert _row(system, "flat", top_k=1, neighbor_expansion=1)["context_ids"] == \
        ["D1:3", "D1:2", "D1:4"]


@proves("context_budget")
def _a_smaller_budget_packs_fewer_units(system: MemorySystem) -> None:
    roomy = _row(system, "road_trip", context_budget=1000)
    tight = _row(system, "road_trip", context_budget=100)
    assert len(roomy["context_ids"]) == 5
    assert 0 < len(tight["context_ids"]) < 5 and tight["context_tokens"] <= 100


@proves("packing_order")
def _chronological_packing_orders_the_context_by_position(system: MemorySystem) -> None:
    by_rank = _row(system, "eagles", top_k=3)["context_ids"]
    by_date = _row(system, "eagles", top_k=3, packing_order="chronological")["context_ids"]
    assert by_rank != by_date and set(by_rank) == set(by_date)
    assert by_date == sorted(by_date, key=lambda unit_id: tuple(map(int, unit_id[1:].split(":"))))


@proves("include_dates")
def _dated_context_lets_the_extractive_answerer_give_the_date(system: MemorySystem) -> None:
    assert _row(system, "moved", top_k=1)["answer"] != "7 May 2023"
    assert _row(system, "moved", top_k=1, include_dates=True)["answer"] == "7 May 2023"


@proves("answerer")
def _llm_answerer_without_a_model_fails_clearly(system: MemorySystem) -> None:
    assert _row(system, "moved")["answer"]
    with pytest.raises(MemevolveError, match="answerer=llm but no answering model"):
        _row(system, "moved", answerer="llm")


@proves("answer_style")
def _each_answer_style_asks_the_llm_differently(system: MemorySystem) -> None:
    question = system.questions["moved"]
    prompts = {style: answer_messages(question, "Alice: I moved to Lisbon.", style)[-1]["content"]
               for style in DIMENSIONS_BY_NAME["answer_style"].choices}
    assert len(set(prompts.values())) == len(prompts)
    assert "Answer:" in prompts["reasoned"] and "Answer:" not in prompts["short"]


@proves("abstain_threshold")
def _a_high_abstain_threshold_says_not_mentioned(system: MemorySystem) -> None:
    assert _row(system, "summit")["answer"] != NOT_MENTIONED
    abstaining = _row(system, "summit", abstain_threshold=0.9)
    assert abstaining["answer"] == NOT_MENTIONED and abstaining["abstained"]


@proves("index_roles")
def _user_roles_index_only_the_users_own_turns(system: MemorySystem) -> None:
    assert _top(system, "miso") == "D1:2"
    user_only = _row(system, "miso", index_roles="user")["retrieved_ids"]
    assert user_only[0] == "D1:1" and not {"D1:2", "D1:4"} & set(user_only)


@proves("passage_tokens")
def _passages_fit_a_tight_budget_and_are_credited_to_their_turn(system: MemorySystem) -> None:
    tight = {"context_budget": 100, "top_k": 1}
    assert _row(system, "recital", **tight)["recall_in_context"] == 0.0
    cut = _row(system, "recital", **tight, passage_tokens=20)
    assert cut["context_ids"][0].startswith("psg:D1:1:") and cut["recall_in_context"] == 1.0


@proves("session_weight")
def _the_session_score_lifts_the_turn_of_the_matching_session(system: MemorySystem) -> None:
    alone = _row(system, "chain")
    mixed = _row(system, "chain", session_weight=0.5)
    assert alone["retrieved_ids"][0] == "D1:1"
    assert mixed["retrieved_ids"][0].startswith("D2:")
    assert mixed["evidence_rank"] < alone["evidence_rank"]


@proves("session_top")
def _two_stage_retrieval_ranks_the_best_sessions_units_first(system: MemorySystem) -> None:
    assert _row(system, "chain")["retrieved_ids"][:2] == ["D1:1", "D2:1"]
    two_stage = _row(system, "chain", session_top=1)["retrieved_ids"]
    assert all(u.startswith("D2:") for u in two_stage[:4]) and two_stage[4] == "D1:1"


@proves("span_packing")
def _span_packing_pays_for_a_shared_turn_once(system: MemorySystem) -> None:
    windows = {"unit": "window", "top_k": 2}
    units = _row(system, "flat", **windows)
    spans = _row(system, "flat", **windows, span_packing=True)
    assert units["context_ids"] == ["win:D1:4", "win:D1:2"]
    assert spans["context_ids"] == ["D1:1", "D1:2", "D1:3", "D1:4"]
    assert spans["recall_in_context"] == units["recall_in_context"] == 1.0
    assert spans["context_tokens"] < units["context_tokens"]
    # Passages of one long turn rank apart; the turn is credited (and paid for) once.
    passages = {"passage_tokens": 20, "top_k": 6, "context_budget": 100}
    each = _row(system, "recital", **passages)["context_ids"]
    once = _row(system, "recital", **passages, span_packing=True)
    assert sum(u.startswith("psg:D1:1:") for u in each) == 3
    assert sum(u.startswith("psg:D1:1:") for u in once["context_ids"]) == 1
    assert once["recall_in_context"] == 1.0


@proves("session_headers")
def _session_headers_pay_for_a_date_once_per_session(system: MemorySystem) -> None:
    lines = _row(system, "eagles", top_k=4, include_dates=True)
    headed = _row(system, "eagles", top_k=4, include_dates=True, session_headers=True)
    assert set(lines["context_ids"]) == set(headed["context_ids"])
    assert headed["context_tokens"] < lines["context_tokens"]
    assert _row(system, "moved", top_k=1, session_headers=True)["answer"] == "7 May 2023"


@proves("prf_units")
def _feedback_from_the_best_unit_finds_the_turn_sharing_its_terms(system: MemorySystem) -> None:
    assert _row(system, "hike_alps")["evidence_rank"] == 6
    assert _row(system, "hike_alps", prf_units=1)["evidence_rank"] == 4


@proves("prf_terms")
def _more_expansion_terms_reach_the_turn_with_the_second_term(system: MemorySystem) -> None:
    one_term = _row(system, "hike_tom", prf_units=1, prf_terms=1)["evidence_rank"]
    assert _row(system, "hike_tom", prf_units=1, prf_terms=10)["evidence_rank"] < one_term


@proves("prf_weight")
def _a_zero_feedback_weight_keeps_the_first_ranking(system: MemorySystem) -> None:
    assert _row(system, "hike_alps", prf_units=1, prf_weight=0.0)["evidence_rank"] == 6
    assert _row(system, "hike_alps", prf_units=1, prf_weight=0.5)["evidence_rank"] == 4


@proves("multi_query")
def _sub_queries_give_each_part_of_the_question_a_top_slot(system: MemorySystem) -> None:
    # The whole question fills both slots with the part that matches more of its words.
    assert _row(system, "cook_travel", top_k=2)["recall_in_context"] == 0.5
    assert _row(system, "cook_travel", top_k=2, multi_query="clauses")["recall_in_context"] == 1.0
    assert _row(system, "marta_rex", top_k=2)["recall_in_context"] == 0.5
    assert _row(system, "marta_rex", top_k=2, multi_query="entities")["recall_in_context"] == 1.0
    # Each mode makes only its own sub-queries: one clause, or one entity, splits nothing.
    assert _row(system, "marta_rex", top_k=2, multi_query="clauses")["recall_in_context"] == 0.5
    assert _row(system, "cook_travel", top_k=2, multi_query="both")["recall_in_context"] == 1.0


@proves("hop2_units")
def _a_second_hop_from_the_first_hit_reaches_the_turn_it_names(system: MemorySystem) -> None:
    assert _row(system, "teacher")["evidence_rank"] == 6
    assert _row(system, "teacher", hop2_units=1)["evidence_rank"] == 2


@proves("hop2_terms")
def _hop_terms_carry_what_the_first_hit_is_about_into_the_second_query(
        system: MemorySystem) -> None:
    assert _row(system, "hobby", hop2_units=1, hop2_terms=0)["evidence_rank"] == 6
    assert _row(system, "hobby", hop2_units=1, hop2_terms=3)["evidence_rank"] < 6


@proves("hop2_weight")
def _a_zero_hop_weight_keeps_the_first_ranking(system: MemorySystem) -> None:
    assert _row(system, "teacher", hop2_units=1, hop2_weight=0.0)["evidence_rank"] == 6
    assert _row(system, "teacher", hop2_units=1, hop2_weight=0.5)["evidence_rank"] == 2


@proves("recency_weight")
def _the_recency_prior_prefers_the_later_of_two_equal_turns(system: MemorySystem) -> None:
    assert _top(system, "colour") == "D1:1"
    assert _top(system, "colour", recency_weight=0.2) == "D2:1"


@proves("date_window_days")
def _the_date_window_ranks_turns_far_from_the_asked_month_last(system: MemorySystem) -> None:
    assert _top(system, "dated") == "D1:1"
    windowed = _row(system, "dated", date_window_days=30)["retrieved_ids"]
    assert windowed[:2] == ["D2:1", "D2:2"]


def _space_listing(**models: str) -> type[SpaceConfig]:
    """The built-in space as it is when the user lists ``models`` (dimension -> model)."""
    return config_class(tuple(replace(d, choices=(*d.choices, models[d.name]))
                              if d.name in models else d for d in DIMENSIONS))


def _listed_row(system: MemorySystem, question_id: str, **values: Any) -> dict[str, Any]:
    """The outcome row of one question, the models in ``values`` listed by the user."""
    listed = {k: v for k, v in values.items() if k in ("embedding_model", "cross_encoder")}
    (row,), _ = system.evaluate(_space_listing(**listed)(**values), [question_id])
    return row


@proves("embedding_model", "shipped_models")
def _a_listed_embedding_model_ranks_with_its_own_vectors(system: MemorySystem,
                                                         models: dict[str, str]) -> None:
    from sentence_transformers import SentenceTransformer

    listed = models["embedding"]
    question = system.questions["semantic"]
    units = system.memories["semantic"].units(RetrievalConfig())
    # Its ranking is the cosine of its own vectors (CLS pooling), not the default model's.
    model = SentenceTransformer(listed, device="cpu")
    vectors = model.encode([u.rendered(False) for u in units.units], normalize_embeddings=True)
    query = model.encode([question.text], normalize_embeddings=True)[0]
    expected = [units.units[i].id for i in np.argsort(-(vectors @ query), kind="stable")]
    default = _listed_row(system, "semantic", retrievers="dense", top_k=6)["retrieved_ids"]
    row = _listed_row(system, "semantic", retrievers="dense", top_k=6, embedding_model=listed)
    assert row["retrieved_ids"] == expected[:len(row["retrieved_ids"])]
    assert row["retrieved_ids"] != default


def _fused_and_reranked(system: MemorySystem, question_id: str, model: str,
                        **values: Any) -> tuple[list[str], list[str], list[str]]:
    """(fused order, order with the cross-encoder, the pool in the order of its own scores)."""
    from sentence_transformers import CrossEncoder

    base = dict(retrievers="bm25+dense", top_k=8, **values)
    fused = _listed_row(system, question_id, **base)["retrieved_ids"]
    reranked = _listed_row(system, question_id, cross_encoder=model, **base)["retrieved_ids"]
    pool = fused[:values.get("cross_encoder_depth", 20)]
    question = system.questions[question_id]
    memory = system.memories[question.conversation_id]
    text = {u.id: u.rendered(False) for u in memory.units(RetrievalConfig()).units}
    scores = CrossEncoder(model, device="cpu").predict([(question.text, text[i]) for i in pool])
    return fused, reranked, [pool[i] for i in np.argsort(-scores, kind="stable")]


@proves("cross_encoder", "shipped_models")
def _the_cross_encoder_orders_the_best_candidates_by_its_score(system: MemorySystem,
                                                               models: dict[str, str]) -> None:
    fused, reranked, by_model = _fused_and_reranked(system, "semantic", models["cross-encoder"])
    assert reranked == by_model[:len(reranked)]
    assert reranked != fused


@proves("cross_encoder_depth", "shipped_models")
def _only_the_first_candidates_are_rescored(system: MemorySystem,
                                            models: dict[str, str]) -> None:
    fused, reranked, by_model = _fused_and_reranked(system, "semantic", models["cross-encoder"],
                                                    cross_encoder_depth=3)
    assert reranked[:3] == by_model and reranked[3:] == fused[3:]


@proves("cross_encoder_weight", "shipped_models")
def _a_zero_cross_encoder_weight_keeps_the_fused_order(system: MemorySystem,
                                                       models: dict[str, str]) -> None:
    fused, kept, _ = _fused_and_reranked(system, "semantic", models["cross-encoder"],
                                         cross_encoder_weight=0.0)
    assert kept == fused
    _, reranked, _ = _fused_and_reranked(system, "semantic", models["cross-encoder"],
                                         cross_encoder_weight=1.0)
    assert reranked != fused


@proves("llm_query")
def _llm_query_texts_are_searched_and_sub_questions_fused(system: MemorySystem) -> None:
    import evolve.memory.system as system_module
    from evolve.memory.llm_query import QueryTexts

    with pytest.raises(MemevolveError, match="llm_query=rewrite but no answering model"):
        _row(system, "semantic", llm_query="rewrite")
    # What the LLM's texts do to retrieval (the LLM itself: tests/test_llm_local.py).
    replies = {"rewrite": QueryTexts(extra=("my dog Rex sleeps on my bed",)),
               "decompose": QueryTexts(sub_questions=("What curry did Alice cook?",
                                                      "Where did Bob travel?"))}
    client = type("Answerer", (), {"client": None})()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(system_module, "query_texts", lambda _, question, mode: replies[mode])
        patch.setattr(MemorySystem, "_llm_answerer", lambda self, *reason: client)
        assert _top(system, "semantic") == "D1:1"
        assert _top(system, "semantic", llm_query="rewrite") == "D1:2"
        assert _row(system, "cook_travel", top_k=2)["recall_in_context"] == 0.5
        assert _row(system, "cook_travel", top_k=2,
                    llm_query="decompose")["recall_in_context"] == 1.0
def _ltr_row(system: MemorySystem, question_id: str, **values: Any) -> dict[str, Any]:
    """The outcome row under a config that reranks with a model trained, as evaluation trains
    it, on the LTR_TRAINING questions (the dev questions of the config's predictor)."""
    training = [q for q in QUESTIONS if q.conversation_id.startswith("ltr-")
                and q.conversation_id != LTR_PROBE.id]
    predictor = train_question_types(training)
    config = RetrievalConfig(question_types=artefact_hash(predictor)).with_values(
        {"reranker": "ltr", **values})
    system.add_artefacts({artefact_hash(predictor): predictor})
    ids = [q.id for q in training]
    groups = rerank.collect_training_rows(system, config.canonical_json(), ids)
    body = rerank.train_body(groups, key=rerank.model_key(config, EmbedderSpec()),
                             fields_key=rerank.model_key(config, None),
                             trained_on=config.question_types, question_ids=ids)
    system.add_artefacts({artefact_hash(body): body})
    (row,), _ = system.evaluate(config, [question_id])
    return row


@proves("reranker")
def _the_learned_reranker_lifts_the_dated_turn_over_the_decoys(system: MemorySystem) -> None:
    assert _row(system, LTR_PROBE.id, top_k=3)["recall_in_context"] == 0.0
    reranked = _ltr_row(system, LTR_PROBE.id, top_k=3, rerank_depth=20)
    assert reranked["retrieved_ids"][0] == "D1:15" and reranked["recall_in_context"] == 1.0


@proves("rerank_depth")
def _only_candidates_within_the_depth_are_reranked(system: MemorySystem) -> None:
    assert _row(system, LTR_PROBE.id)["evidence_rank"] == 13
    # The evidence is 13th in the fused order: a depth of 10 never shows it to the model.
    assert _ltr_row(system, LTR_PROBE.id, top_k=3, rerank_depth=10)["recall_in_context"] == 0.0
    assert _ltr_row(system, LTR_PROBE.id, top_k=3, rerank_depth=13)["recall_in_context"] == 1.0


def test_every_dimension_has_a_behaviour_proof() -> None:
    assert set(PROOFS) == set(DIMENSIONS_BY_NAME)


@pytest.mark.parametrize("name", sorted(DIMENSIONS_BY_NAME))
def test_dimension_changes_behaviour(name: str, system: MemorySystem,
                                    request: pytest.FixtureRequest) -> None:
    if name not in PROOFS:
        pytest.fail(f"dimension '{name}' has no proof in tests/test_dimensions.py that changing "
                    "it changes behaviour")
    PROOFS[name](system, *(request.getfixturevalue(f) for f in PROOF_FIXTURES[name]))


# --- related behaviour of single dimensions -----------------------------------------------------

def test_turn_plus_summary_units_retrieve_the_session_summary(system: MemorySystem) -> None:
    assert not any(u.startswith("summary:") for u in _row(system, "summary")["retrieved_ids"])
    assert _top(system, "summary", unit="turn+summary") == "summary:2"


def test_include_dates_adds_the_date_tokens_to_the_context(system: MemorySystem) -> None:
    plain = _row(system, "flat", top_k=2)
    dated = _row(system, "flat", top_k=2, include_dates=True)
    assert plain["context_ids"] == dated["context_ids"]
    assert dated["context_tokens"] > plain["context_tokens"]


def test_lowercase_still_matters_when_stemming(system: MemorySystem) -> None:
    assert _top(system, "case", bm25_stemming=True) == "D1:1"
    assert _top(system, "case", bm25_stemming=True, bm25_lowercase=False) == "D1:2"


def test_type_override_changes_only_that_type(system: MemorySystem) -> None:
    # Routed on the gold categories, so the test fixes which question gets which type; the
    # predictor itself is tested in test_question_types.py.
    config = RetrievalConfig().with_values({"top_k": 1}, category="5").model_copy(
        update={"question_types": ORACLE_GOLD_CATEGORIES})
    system.oracle_gold_categories = True
    try:
        rows, _ = system.evaluate(config, ["flat", "flat_adversarial"])
    finally:
        system.oracle_gold_categories = False
    by_id = {row["question_id"]: row for row in rows}
    assert len(by_id["flat_adversarial"]["context_ids"]) == 1
    assert len(by_id["flat"]["context_ids"]) == 5


def test_a_relative_cue_counts_back_from_the_question_date() -> None:
    from evolve.memory.time_prior import cue_date

    asked = datetime(2023, 5, 30)
    assert cue_date("What did I buy three weeks ago?", asked) == datetime(2023, 5, 9)
    assert cue_date("Where did I eat last month?", asked) == datetime(2023, 4, 30)
    assert cue_date("Where did I eat last month?", None) is None
    assert cue_date("What happened in May 2023?", None) == datetime(2023, 5, 15)
