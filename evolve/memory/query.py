"""Query processing: keyword extraction, speaker swap and the entities a question names."""
from __future__ import annotations

import re
from dataclasses import dataclass

from evolve.memory.text import keywords, names_in


@dataclass(frozen=True)
class ProcessedQuery:
    text: str
    bm25_texts: tuple[str, ...]     # scored separately, best score kept per unit
    dense_texts: tuple[str, ...]
    speakers: tuple[str, ...]       # conversation speakers the question names (after swap)
    entities: tuple[str, ...]


def process_query(text: str, speakers: tuple[str, ...], *, use_keywords: bool,
                  speaker_swap: bool) -> ProcessedQuery:
    base = keywords(text) if use_keywords else text
    named = tuple(s for s in speakers if s and re.search(rf"\b{re.escape(s)}\b", text))
    bm25_texts, dense_texts = [base], [text]
    asked = list(named)
    if speaker_swap and len(speakers) == 2 and len(named) == 1:
        # A false premise often attributes the other speaker's event to this one.
        other = speakers[1] if named[0] == speakers[0] else speakers[0]
        swap = re.compile(rf"\b{re.escape(named[0])}\b")
        bm25_texts.append(swap.sub(other, base))
        dense_texts.append(swap.sub(other, text))
        asked.append(other)
    return ProcessedQuery(text=text, bm25_texts=tuple(bm25_texts), dense_texts=tuple(dense_texts),
                          speakers=tuple(asked), entities=tuple(names_in(text)))
