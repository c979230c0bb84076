"""Text utilities of the memory system: token counting, BM25 tokenisation, keywords, dates."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache

from nltk.stem import PorterStemmer

_TOKEN = re.compile(r"\w+|[^\w\s]")
_WORD = re.compile(r"\w+")
_WORD_OR_PUNCT = re.compile(r"\w+|[^\w\s]+")
_STEMMER = PorterStemmer()

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves s t don ll m re ve d y
""".split())
QUESTION_WORDS = frozenset("""what when where who whom whose which why how did does do is are was
were has have had can could would should will kind type sort""".split())


# On ASCII text (str.isascii() is O(1)) str.translate and str.split find what _WORD and _TOKEN
# find, about twice as fast, which counts at LongMemEval M's 2.5 million turns. The tables are
# derived from the patterns themselves, so they cannot disagree on a character.
_ASCII = [chr(code) for code in range(128)]
_ASCII_WORD = {c for c in _ASCII if _WORD.fullmatch(c)}
_ASCII_SPACE = {c for c in _ASCII if re.fullmatch(r"\s", c)}
#: Every ASCII character that is not a word character becomes a space: split() then gives the
#: runs of word characters.
_WORDS_ONLY = str.maketrans({c: " " for c in _ASCII if c not in _ASCII_WORD})
#: Word characters and spaces go: what is left are _TOKEN's one-character tokens.
_MARKS_ONLY = str.maketrans({c: None for c in _ASCII_WORD | _ASCII_SPACE})


def count_tokens(text: str) -> int:
    """Context size in tokens, approximated as words plus punctuation marks (a BPE tokenizer gives
    about 1.2 times this on English chat): cheap, deterministic and offline."""
    if text.isascii():
        return len(text.translate(_WORDS_ONLY).split()) + len(text.translate(_MARKS_ONLY))
    return len(_TOKEN.findall(text))


def word_runs(text: str) -> list[str]:
    """The runs of word characters (``\\w+``) of a text, in order."""
    if text.isascii():
        return text.translate(_WORDS_ONLY).split()
    return _WORD.findall(text)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str) -> list[str]:
    """The sentences of a text (split after . ! ? and at line breaks), empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    # NLTK lowercases by default, which would silently defeat bm25_lowercase=false.
    return _STEMMER.stem(word, to_lowercase=False)


def bm25_tokens(text: str, *, lowercase: bool, strip_punctuation: bool, stopwords: bool,
                stemming: bool) -> list[str]:
    """BM25 tokenisation; each flag is a search-space dimension."""
    if lowercase:
        text = text.lower()
    tokens = word_runs(text) if strip_punctuation else _WORD_OR_PUNCT.findall(text)
    if stopwords:
        tokens = [t for t in tokens if t.lower() not in STOPWORDS]
    if stemming:
        tokens = [stem(t) for t in tokens]
    return tokens


def names_in(text: str) -> list[str]:
    """Capitalised words that are not sentence-initial function words: people, places, things."""
    out = []
    for match in re.finditer(r"\b[A-Z][a-zA-Z'-]+\b", text):
        word = match.group(0).rstrip("'s") if match.group(0).endswith("'s") else match.group(0)
        if word.lower() not in STOPWORDS and word.lower() not in QUESTION_WORDS:
            out.append(word)
    return out


def keywords(question: str) -> str:
    """The question without wh-words, auxiliaries and stopwords; names repeated to weigh more."""
    words = [w for w in _WORD.findall(question)
             if w.lower() not in STOPWORDS and w.lower() not in QUESTION_WORDS]
    names = names_in(question)
    return " ".join(words + names)


_MONTHS = {m: i for i, m in enumerate(
    "january february march april may june july august september october november december".split(),
    start=1)}
# Capitalised only: "may" is a verb far more often than a month in questions.
_MONTH_RE = re.compile(r"\b(" + "|".join(m.capitalize() for m in _MONTHS) + r")\b(?:\s+(\d{4}))?")
_YEAR_RE = re.compile(r"\b(19\d{2}|20\d{2})\b")
RELATIVE_TIME = re.compile(
    r"\b(yesterday|today|tonight|last (?:week|weekend|month|year|night|friday|saturday|sunday|"
    r"monday|tuesday|wednesday|thursday)|next (?:week|month|year)|(?:\w+ )?(?:days?|weeks?|"
    r"months?|years?) ago|this (?:week|weekend|month|year|morning)|recently|the other day)\b",
    re.IGNORECASE)
TEMPORAL_QUESTION = re.compile(r"^\s*(when|what (?:date|day|time|year|month)|how long|in which "
                               r"(?:year|month))\b", re.IGNORECASE)


def temporal_target(question: str) -> datetime | None:
    """An explicit month/year the question names ("in May 2023"), as a datetime, if any."""
    month = _MONTH_RE.search(question)
    year = _YEAR_RE.search(question)
    if month and (month.group(2) or year):
        return datetime(int(month.group(2) or year.group(1)), _MONTHS[month.group(1).lower()], 15)
    if year:
        return datetime(int(year.group(1)), 7, 1)
    return None


def is_temporal_question(question: str) -> bool:
    return bool(TEMPORAL_QUESTION.search(question))


def format_date(date: datetime) -> str:
    """LoCoMo's gold date style: '7 May 2023'."""
    return f"{date.day} {date:%B %Y}"


_NUMBERS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
            "a couple of": 2, "couple of": 2, "few": 3}
_AGO = re.compile(r"\b(\d+|a couple of|couple of|a|one|two|three|four|five|six|seven|few) "
                  r"(day|week|month|year)s? ago\b", re.IGNORECASE)


def resolve_relative(text: str, session_date: datetime) -> str:
    """The date a turn's relative time words point to, in LoCoMo's gold style."""
    ago = _AGO.search(text)
    if ago:
        count = ago.group(1).lower()
        n = int(count) if count.isdigit() else _NUMBERS[count]
        unit = ago.group(2).lower()
        if unit == "day":
            return format_date(session_date - timedelta(days=n))
        if unit == "week":
            return f"{n} week{'s' * (n > 1)} before {format_date(session_date)}"
        if unit == "month":
            return f"{n} month{'s' * (n > 1)} before {session_date:%B %Y}"
        return str(session_date.year - n)
    match = RELATIVE_TIME.search(text)
    if not match:
        return format_date(session_date)
    phrase = match.group(1).lower()
    if phrase == "yesterday":
        return format_date(session_date - timedelta(days=1))
    if phrase.startswith("last week"):
        return f"the {phrase.split()[1]} before {format_date(session_date)}"
    if phrase == "last month":
        previous = session_date.replace(day=1) - timedelta(days=1)
        return f"{previous:%B %Y}"
    if phrase == "last year":
        return str(session_date.year - 1)
    if phrase.startswith("last "):
        return f"the {phrase.split()[1]} before {format_date(session_date)}"
    return format_date(session_date)
