"""The memevolve adapter of tinyrank: `TfidfPipeline` implements `evolve.MemoryPipeline`, so
`memevolve run --system byo_pipeline:TfidfPipeline` tunes its knobs (PYTHONPATH=examples)."""
from __future__ import annotations

from typing import Sequence

from byo_pipeline.tinyrank import TfidfIndex, tokens
from evolve import Dimension, Resources, Retrieval, Unit

#: How a conversation is cut into documents: single turns, a turn with the next one, or
#: whole sessions.
CHUNKINGS = ("turn", "pair", "session")


class TfidfPipeline:
    """Chunks each conversation, ranks the chunks with tinyrank, and packs the best top_k into
    a context of at most context_budget tokens (words)."""

    #: Part of every stored outcome's key: bump it when a change alters what is retrieved.
    version = "1"
    dimensions = (
        Dimension("top_k", "int", 1, "Chunks kept in the context.", low=1, high=20,
                  group="selection"),
        # Named like the built-in knob, so that --max-context-tokens caps it too.
        Dimension("context_budget", "int", 200, "Tokens (words) the context may hold; chunks "
                  "are packed in rank order until the next one does not fit.", low=20,
                  high=4000, log=True, group="context"),
        Dimension("idf_power", "float", 0.0, "How much rare words count (0: term frequency "
                  "only, 1: TF-IDF, 2: rare words dominate).", low=0.0, high=2.0, group="ranking"),
        Dimension("sublinear_tf", "bool", False, "Dampen repeated words (1 + log tf).",
                  group="ranking"),
        Dimension("stemming", "bool", False, "Strip common suffixes, so that 'wines' matches "
                  "'wine'.", group="ranking"),
        Dimension("chunking", "choice", "pair", "What a chunk is: one turn, a turn and the next "
                  "one, or a whole session.", choices=CHUNKINGS, group="units"),
    )

    def __init__(self, conversations: Sequence, resources: Resources) -> None:
        self.conversations = {c.id: c for c in conversations}
        # (conversation and the index's knobs) -> (chunks, index): kept between
        # configs, as a Ray actor keeps its shard warm.
        self._indexes: dict[tuple, tuple[list[Unit], TfidfIndex]] = {}

    def retrieve(self, config, questions) -> list[Retrieval]:
        out = []
        for question in questions:
            chunks, index = self._index(question.conversation_id, config)
            ranked = [chunks[i] for i, _ in index.search(question.text)]
            packed, used = [], 0
            for unit in ranked[:config.top_k]:
                cost = len(tokens(unit.text))
                if used + cost > config.context_budget:
                    break
                packed.append(unit)
                used += cost
            out.append(Retrieval(question_id=question.id, ranked=ranked, packed=packed,
                                 selected=ranked[:config.top_k], context_tokens=used,
                                 context_text="\n".join(u.text for u in packed)))
        return out

    @staticmethod
    def describe_units(conversation, unit_ids, config) -> list[str]:
        by_id = {u.id: u.text for u in chunk(conversation, config.chunking)}
        return [by_id.get(unit_id, unit_id) for unit_id in unit_ids]

    def _index(self, conversation_id: str, config) -> tuple[list[Unit], TfidfIndex]:
        key = (conversation_id, config.chunking, config.idf_power, config.sublinear_tf,
               config.stemming)
        if key not in self._indexes:
            chunks = chunk(self.conversations[conversation_id], config.chunking)
            self._indexes[key] = (chunks, TfidfIndex(
                [u.text for u in chunks], idf_power=config.idf_power,
                sublinear=config.sublinear_tf, stem=config.stemming))
        return self._indexes[key]


def chunk(conversation, chunking: str) -> list[Unit]:
    """The conversation's chunks; each names the turns it holds (recall is measured on them)."""
    out = []
    for session in conversation.sessions:
        lines = [(t.id, f"{t.speaker}: {t.content}") for t in session.turns]
        if chunking == "session":
            out.append(Unit(f"session:{session.index}", tuple(i for i, _ in lines),
                            session.index, "\n".join(text for _, text in lines)))
            continue
        for position, (turn_id, text) in enumerate(lines):
            if chunking == "turn":
                out.append(Unit(turn_id, (turn_id,), session.index, text))
            else:
                pair = lines[position:position + 2]
                out.append(Unit(f"pair:{turn_id}", tuple(i for i, _ in pair), session.index,
                                "\n".join(t for _, t in pair)))
    return out
