"""The memory system's parts on their own: units, text helpers, fusion, MMR, expansion, packing."""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from benchmarks.model import Conversation, Session, Turn
from evolve.memory.packing import pack
from evolve.memory.system import expand_neighbours, fuse, fusion_weights, mmr_select
from evolve.memory.text import (
    bm25_tokens,
    count_tokens,
    format_date,
    is_temporal_question,
    keywords,
    names_in,
    resolve_relative,
    temporal_target,
)
from evolve.memory.units import build_units
from search_space.config import RetrievalConfig

MAY_7 = datetime(2023, 5, 7)


def _session(index: int, date: datetime | None, *lines: str, summary: str | None = None,
             ) -> Session:
    turns = tuple(Turn(id=f"D{index}:{i}", session_index=index, turn_index=i,
                       speaker=line.split(": ", 1)[0], text=line.split(": ", 1)[1])
                  for i, line in enumerate(lines, start=1))
    return Session(index=index, date=date, turns=turns, summary=summary)


CONVERSATION = Conversation(id="c1", speakers=("Alice", "Bob"), sessions=(
    _session(1, MAY_7, "Alice: I moved to Lisbon.", "Bob: How is the flat?",
             "Alice: Small but bright.", summary="Alice moved to Lisbon."),
    _session(2, datetime(2023, 6, 12), "Bob: I started the violin.", "Alice: Nice!",
             "Bob: My teacher is strict.")))


# --- units ---------------------------------------------------------------------------------------

def test_turn_units_are_the_turns_in_order():
    units = build_units(CONVERSATION, "turn", 1)
    assert [u.id for u in units.units] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2", "D2:3"]
    assert [u.position for u in units.units] == list(range(6))


def test_a_window_holds_its_neighbours_and_stays_inside_its_session():
    units = build_units(CONVERSATION, "window", 2).units
    window = {u.id: u for u in units}
    assert window["win:D1:3"].turn_ids == ("D1:1", "D1:2", "D1:3")
    assert window["win:D2:1"].turn_ids == ("D2:1", "D2:2", "D2:3")


def test_a_window_joins_its_turns_with_their_speakers():
    window = build_units(CONVERSATION, "window", 1).units[0]
    assert window.text == "Alice: I moved to Lisbon. / Bob: How is the flat?"


def test_summary_units_exist_only_for_sessions_with_a_summary():
    units = build_units(CONVERSATION, "turn+summary", 1)
    summaries = [u for u in units.units if u.id.startswith("summary:")]
    assert [(u.id, u.text, u.turn_ids, u.position) for u in summaries] == \
        [("summary:1", "Alice moved to Lisbon.", (), 0)]
    assert len(units.units) == 7


def test_unknown_unit_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown unit kind 'paragraph'"):
        build_units(CONVERSATION, "paragraph", 1)


def test_dated_rendering_prefixes_the_session_date():
    unit = build_units(CONVERSATION, "turn", 1).units[0]
    assert unit.rendered(True) == "[7 May 2023] Alice: I moved to Lisbon."
    assert unit.rendered(False) == "Alice: I moved to Lisbon."


def test_token_counts_are_kept_per_unit_with_and_without_dates():
    units = build_units(CONVERSATION, "turn", 1)
    assert units.tokens[0] == count_tokens("Alice: I moved to Lisbon.")
    assert units.tokens_dated[0] == count_tokens("[7 May 2023] Alice: I moved to Lisbon.")


@pytest.mark.parametrize("kind,window", [("turn", 1), ("window", 1), ("window", 3),
                                         ("turn+summary", 1), ("session", 1)])
def test_token_counts_equal_counting_each_rendering(locomo, longmemeval, kind, window):
    """The counts are added from parts; they must be exactly those of the rendered strings
    (photo captions, summaries, speakerless windows, every date of both real files)."""
    for conversation in (*locomo.conversations[:3], *longmemeval.conversations[:40],
                         CONVERSATION):
        units = build_units(conversation, kind, window)
        assert units.tokens == tuple(count_tokens(u.rendered(False)) for u in units.units)
        assert units.tokens_dated == tuple(count_tokens(u.rendered(True)) for u in units.units)


def test_passage_token_counts_equal_counting_each_rendering(longmemeval):
    for conversation in longmemeval.conversations[:20]:
        units = build_units(conversation, "turn", 1, passage_tokens=40)
        assert any(u.id.startswith("psg:") for u in units.units)
        assert units.tokens == tuple(count_tokens(u.rendered(False)) for u in units.units)
        assert units.tokens_dated == tuple(count_tokens(u.rendered(True)) for u in units.units)


# --- text helpers --------------------------------------------------------------------------------

def test_count_tokens_counts_words_and_punctuation_marks():
    assert count_tokens("Hello, world!") == 4


def _tokens(text: str, **flags: bool) -> list[str]:
    settings = {"lowercase": True, "strip_punctuation": True, "stopwords": False,
                "stemming": False, **flags}
    return bm25_tokens(text, **settings)


def test_bm25_tokens_lowercase_by_flag():
    assert _tokens("Nice day") == ["nice", "day"]
    assert _tokens("Nice day", lowercase=False) == ["Nice", "day"]


def test_bm25_tokens_keep_punctuation_runs_by_flag():
    assert _tokens("C++ rocks!") == ["c", "rocks"]
    assert _tokens("C++ rocks!", strip_punctuation=False) == ["c", "++", "rocks", "!"]


def test_bm25_tokens_drop_stopwords_by_flag():
    assert _tokens("The cat is here", stopwords=True) == ["cat"]


def test_bm25_tokens_stem_by_flag():
    assert _tokens("running runs", stemming=True) == ["run", "run"]


def test_stemming_keeps_case_when_lowercasing_is_off():
    assert _tokens("Running Nice", lowercase=False, stemming=True) == ["Run", "Nice"]


def test_keywords_drop_question_words_and_repeat_names():
    assert keywords("What did Alice paint at the lake?") == "Alice paint lake Alice"


def test_names_are_capitalised_non_function_words():
    assert names_in("When did Alice meet Bob's sister in Paris?") == ["Alice", "Bob", "Paris"]


def test_temporal_target_reads_a_month_and_year():
    assert temporal_target("Who went to a concert in May 2023?") == datetime(2023, 5, 15)


def test_temporal_target_reads_a_year_alone():
    assert temporal_target("What happened in 2022?") == datetime(2022, 7, 1)


def test_temporal_target_is_none_without_a_year():
    assert temporal_target("What did Alice do in May?") is None


def test_temporal_questions_are_recognised():
    assert is_temporal_question("When did Alice move?")
    assert not is_temporal_question("Where did Alice move?")


def test_format_date_uses_locomo_gold_style():
    assert format_date(MAY_7) == "7 May 2023"


def test_resolve_relative_yesterday_is_the_day_before():
    assert resolve_relative("I ran a marathon yesterday.", MAY_7) == "6 May 2023"


def test_resolve_relative_last_week_is_relative_to_the_session():
    assert resolve_relative("I moved last week.", MAY_7) == "the week before 7 May 2023"


def test_resolve_relative_without_time_words_is_the_session_date():
    assert resolve_relative("I moved to Lisbon.", MAY_7) == "7 May 2023"


# --- fusion --------------------------------------------------------------------------------------

BM25 = np.array([0.0, 5.0, 10.0])
DENSE = np.array([1.0, 0.5, 0.0])


def test_a_single_retriever_keeps_its_raw_scores():
    np.testing.assert_array_equal(fuse({"bm25": BM25}, RetrievalConfig()), BM25)


def test_weighted_fusion_sums_min_max_normalised_scores():
    config = RetrievalConfig(bm25_weight=0.75, dense_weight=0.25)
    np.testing.assert_allclose(fuse({"bm25": BM25, "dense": DENSE}, config), [0.25, 0.5, 0.75])


def test_weighted_fusion_gives_a_constant_retriever_no_say():
    config = RetrievalConfig(bm25_weight=1.0, structured_weight=1.0)
    fused = fuse({"bm25": BM25, "structured": np.full(3, 0.5)}, config)
    np.testing.assert_allclose(fused, [0.0, 0.5, 1.0])


def test_rrf_sums_weighted_reciprocal_ranks_with_k():
    config = RetrievalConfig(fusion="rrf", rrf_k=10, dense_weight=0.5)
    fused = fuse({"bm25": BM25, "dense": DENSE}, config)
    # bm25 ranks 3, 2, 1; dense ranks 1, 2, 3.
    np.testing.assert_allclose(fused, [0.5 / 13 + 0.5 / 11, 0.5 / 12 + 0.5 / 12,
                                       0.5 / 11 + 0.5 / 13])


def test_rrf_ignores_score_magnitudes():
    config = RetrievalConfig(fusion="rrf")
    squashed = fuse({"bm25": BM25 / 100, "dense": DENSE}, config)
    np.testing.assert_allclose(squashed, fuse({"bm25": BM25, "dense": DENSE}, config))


def test_each_retriever_is_fused_with_its_own_weight():
    config = RetrievalConfig(bm25_weight=0.7, dense_weight=0.3, structured_weight=0.2)
    assert fusion_weights(["bm25", "dense", "structured"], config) == \
        {"bm25": 0.7, "dense": 0.3, "structured": 0.2}
    assert fusion_weights(["dense", "structured"], config) == {"dense": 0.3, "structured": 0.2}


# --- MMR -----------------------------------------------------------------------------------------

ORDER = np.array([0, 1, 2, 3])
FUSED = np.array([1.0, 0.95, 0.6, 0.1])
# Units 0 and 1 are near-duplicates; 2 and 3 point elsewhere.
VECTORS = np.array([[1.0, 0.0, 0.0], [0.995, 0.0998, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_mmr_with_lambda_one_is_the_plain_ranking():
    assert mmr_select(ORDER, FUSED, VECTORS, top_k=2, lam=1.0) == [0, 1]


def test_mmr_with_a_lower_lambda_skips_the_near_duplicate():
    assert mmr_select(ORDER, FUSED, VECTORS, top_k=2, lam=0.5) == [0, 2]


def test_mmr_without_vectors_is_the_plain_ranking():
    assert mmr_select(ORDER, FUSED, None, top_k=3, lam=0.2) == [0, 1, 2]


def test_mmr_never_picks_a_unit_twice():
    chosen = mmr_select(ORDER, FUSED, VECTORS, top_k=4, lam=0.0)
    assert sorted(chosen) == [0, 1, 2, 3]


# --- neighbour expansion and packing --------------------------------------------------------------

def _unit(units, unit_id):
    return units.units[units.index_of[unit_id]]


def test_expansion_adds_neighbours_from_the_same_session_only():
    units = build_units(CONVERSATION, "turn", 1)
    expanded = expand_neighbours([_unit(units, "D1:3")], units, 1)
    assert [u.id for u in expanded] == ["D1:3", "D1:2"]


def test_expansion_adds_no_unit_twice():
    units = build_units(CONVERSATION, "turn", 1)
    expanded = expand_neighbours([_unit(units, "D1:1"), _unit(units, "D1:2")], units, 1)
    assert [u.id for u in expanded] == ["D1:1", "D1:2", "D1:3"]


def test_no_expansion_keeps_the_selection():
    units = build_units(CONVERSATION, "turn", 1)
    selected = [_unit(units, "D2:2")]
    assert expand_neighbours(selected, units, 0) == selected


def test_pack_fills_the_budget_exactly_at_the_boundary():
    units = build_units(CONVERSATION, "turn", 1)
    token_of = {u.id: 10 for u in units.units}
    packed, used = pack(list(units.units[:3]), 20, False, token_of)
    assert ([u.id for u in packed], used) == (["D1:1", "D1:2"], 20)


def test_pack_keeps_the_longest_prefix_that_fits():
    units = build_units(CONVERSATION, "turn", 1)
    token_of = {"D1:1": 5, "D1:2": 10, "D1:3": 2}
    packed, used = pack(list(units.units[:3]), 14, False, token_of)
    assert ([u.id for u in packed], used) == (["D1:1"], 5)


def test_pack_with_too_small_a_budget_packs_nothing():
    units = build_units(CONVERSATION, "turn", 1)
    assert pack(list(units.units[:1]), 3, False, {"D1:1": 4}) == ([], 0)


def test_ascii_fast_paths_find_what_the_patterns_find(locomo, longmemeval):
    """count_tokens and word_runs take str.translate on ASCII text; they must agree with the
    regexes on every text, control characters and the real files' texts included."""
    import random
    import re

    from evolve.memory.text import word_runs

    rng = random.Random(7)
    alphabet = [chr(code) for code in range(128)] + ["é", "ß", "—", "日", "\u00a0", "\u2003"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
             for _ in range(3000)]
    texts += [t.content for c in (*locomo.conversations[:2], *longmemeval.conversations[:50])
              for t in c.turns]
    assert any(not t.isascii() for t in texts) and any(t.isascii() for t in texts)
    for text in texts:
        assert count_tokens(text) == len(re.findall(r"\w+|[^\w\s]", text)), repr(text)
        assert word_runs(text) == re.findall(r"\w+", text), repr(text)
