"""The LongMemEval-shaped mode of the synthetic benchmark (``shape=longmemeval``).

Like LongMemEval S and M: one haystack per question, user/assistant chat sessions of long turns
(user ~100 words, assistant ~250), a few evidence sessions hidden among filler sessions that
are shared across haystacks, the six LongMemEval question types plus abstention (``_abs``), and
gold evidence in user and in assistant turns. Filler sessions are drawn from one pool, so a
text recurs across haystacks about as often as in the real S file (there 189k of 246k turn
texts are distinct). Everything derives from the seed; turn texts are sentences drawn from
seeded per-topic banks, so generating S takes seconds.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection
from datetime import datetime, timedelta
from benchmarks.longmemeval import unit_id
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn
from benchmarks.synthetic import (ACTIVITIES, BANDS, BOOKS, CITIES, DISHES, HOBBIES, INSTRUMENTS,
                                  JOBS, NATURE_SPOTS, OBJECTS, RELATIONS)

#: Part of the sha256: bump it whenever the same parameters start producing different data.
GENERATOR_VERSION = 1
DEFAULTS: dict[str, int] = {"seed": 0, "questions": 500, "sessions": 50, "turns": 10}
LIMITS: dict[str, int] = {"questions": 100_000, "sessions": 1_000, "turns": 100}
#: Filler sessions are drawn uniformly from a pool of this many per filler slot; with
#: replacement, that leaves about 74% of the drawn sessions distinct (the real S: ~77%).
POOL_FACTOR = 1.6
#: LongMemEval's question-type mix (500 questions: 70/56/30/133/133/78).
TYPE_SHARES: dict[str, float] = {
    "single-session-user": 0.14, "single-session-assistant": 0.112,
    "single-session-preference": 0.06, "multi-session": 0.266,
    "temporal-reasoning": 0.266, "knowledge-update": 0.156}
#: Share of the question types that have an abstention form here that are asked as one.
ABSTENTION_SHARE = 0.1
USER_WORDS = (100, 30)
ASSISTANT_WORDS = (250, 60)

_TOPICS: dict[str, tuple[str, ...]] = {
    "cooking": ("sourdough starter", "cast iron pan", "spice rack", "slow cooker", "risotto",
                "marinade", "pressure cooker", "meal prep", "knife skills", "braised short ribs",
                "vegetable stock", "pastry dough", "fermentation", "grocery budget"),
    "travel": ("train pass", "travel insurance", "carry-on bag", "jet lag", "hostel",
               "itinerary", "layover", "visa application", "walking tour", "rental car",
               "packing list", "local currency", "night market", "ferry schedule"),
    "fitness": ("interval training", "resistance bands", "rest day", "protein intake",
                "running shoes", "stretching routine", "heart rate zone", "kettlebell",
                "yoga mat", "marathon plan", "foam roller", "squat form", "step count"),
    "programming": ("unit test", "database index", "memory leak", "API endpoint",
                    "race condition", "code review", "regular expression", "Python script",
                    "build pipeline", "hash map", "recursion", "type hints", "log file"),
    "gardening": ("tomato seedlings", "compost bin", "raised bed", "drip irrigation",
                  "aphids", "mulch", "potting soil", "herb garden", "pruning shears",
                  "succulents", "seed catalog", "frost date", "rain barrel"),
    "personal finance": ("emergency fund", "index fund", "credit score", "monthly budget",
                         "retirement account", "student loan", "tax return", "interest rate",
                         "savings goal", "credit card debt", "expense tracker", "mortgage"),
    "history": ("Roman aqueducts", "printing press", "Silk Road", "industrial revolution",
                "Byzantine empire", "medieval guilds", "Renaissance painters", "Ottoman court",
                "steam engine", "ancient Egypt", "Hanseatic League", "Meiji restoration"),
    "home repair": ("leaky faucet", "drywall patch", "circuit breaker", "caulk", "grout",
                    "water heater", "door hinge", "paint primer", "smoke detector",
                    "window seal", "garbage disposal", "ceiling fan", "toolbox"),
    "photography": ("aperture", "shutter speed", "tripod", "golden hour", "prime lens",
                    "white balance", "raw files", "light meter", "film stock",
                    "composition", "long exposure", "portrait lighting", "lens filter"),
    "music": ("chord progression", "metronome", "music theory", "ear training", "scales",
              "sheet music", "practice routine", "recording setup", "vinyl records",
              "playlist", "harmony", "audio interface", "open mic"),
    "careers": ("cover letter", "job interview", "salary negotiation", "performance review",
                "networking event", "resume", "career change", "remote work", "mentor",
                "portfolio", "promotion", "side project", "certification"),
    "parenting": ("bedtime routine", "screen time", "picky eater", "homework help",
                  "school lunch", "toddler tantrum", "reading time", "summer camp",
                  "allowance", "playdate", "car seat", "family calendar"),
    "science": ("black holes", "photosynthesis", "plate tectonics", "quantum computing",
                "vaccines", "climate models", "DNA sequencing", "exoplanets", "neurons",
                "renewable energy", "ocean currents", "antibiotics", "particle physics"),
    "writing": ("short story", "writing prompt", "character arc", "first draft", "editor",
                "plot outline", "dialogue", "poetry collection", "writer's block",
                "query letter", "point of view", "word count", "critique group"),
    "pets": ("litter box", "dog training", "vet visit", "pet insurance", "chew toys",
             "aquarium filter", "bird cage", "flea treatment", "leash walking",
             "grooming brush", "pet food", "scratching post"),
    "mental health": ("sleep schedule", "journaling", "breathing exercise", "therapist",
                      "burnout", "gratitude list", "morning routine", "digital detox",
                      "anxiety", "meditation app", "work-life balance", "social battery"),
}
_USER_TEMPLATES = (
    "I've been thinking a lot about {a} lately and could use some advice.",
    "Do you have any tips on {a} for someone who is just starting out?",
    "My friend keeps telling me that {a} matters more than {b}, is that true?",
    "Last week I spent hours reading about {a} and got pretty confused.",
    "How would you compare {a} with {b} for a beginner like me?",
    "I tried to sort out the {a} on my own but it did not go well.",
    "Could you explain {a} in simple terms, without too much jargon?",
    "I'm a little worried that I'm doing the {a} part completely wrong.",
    "What are the most common mistakes people make with {a}?",
    "Honestly, I never understood why everyone talks about {a} so much.",
    "I have about an hour each evening, is that enough time for {a}?",
    "Is there a cheap way to get better at {a} and {b} at the same time?",
    "Sorry if this is a basic question, but what exactly is {a}?",
    "I want to make a plan for {a} over the next few months.",
    "Someone online said {b} is overrated, what do you think?",
    "Can you give me a short checklist for {a}?",
)
_ASSISTANT_TEMPLATES = (
    "Great question, {a} is something a lot of people find confusing at first.",
    "The short answer is that {a} and {b} solve slightly different problems.",
    "A good first step is to set aside a small amount of time for {a} every day.",
    "Many beginners overlook {b}, but it often makes the biggest difference.",
    "Here is a simple way to think about {a}: start small, then build on what works.",
    "It helps to write down what you already know about {a} before going further.",
    "If you only remember one thing, remember that {a} rewards consistency over intensity.",
    "You do not need expensive equipment for {a}; the basics will take you a long way.",
    "One common mistake is to change too many things at once, including {b}.",
    "Try comparing your results with and without {b} for a couple of weeks.",
    "Experts usually recommend reading a reliable guide on {a} before experimenting.",
    "Keep in mind that progress with {a} is rarely a straight line.",
    "If something about {b} feels wrong, it is worth pausing and checking the details.",
    "A checklist can make {a} feel much less overwhelming.",
    "There are free resources online that cover {a} and {b} in depth.",
    "Over time you will develop an intuition for {a} that no article can teach.",
    "Remember to be patient with yourself while you learn about {a}.",
    "In practice, the right choice depends on your goals, your budget and your time.",
    "Let me know if you would like a step-by-step plan tailored to your situation.",
    "I hope this helps, and feel free to ask follow-up questions about {b}.",
)
#: Assistant suggestions a single-session-assistant question asks back about.
_SUGGESTIONS = (
    ("I'm planning a long weekend away in the spring and can't decide where to go.",
     "My top suggestion would be {value}, which is lovely at that time of year.",
     "Which city did you suggest for my spring long weekend?", "city"),
    ("Can you recommend a novel for my book club to read next month?",
     'I would recommend "{value}", it tends to spark great discussions.',
     "What novel did you recommend for my book club?", "book"),
    ("I need an idea for a main course for the dinner party I'm hosting.",
     "You could make {value}; it is easy to scale up for a group of guests.",
     "What main course did you suggest for my dinner party?", "dish"),
    ("My nephew wants to learn a musical instrument, any ideas?",
     "The {value} is a wonderful first instrument for a child his age.",
     "Which instrument did you suggest for my nephew?", "instrument"),
    ("I want to pick up a creative hobby to get me through the winter.",
     "You might really enjoy {value}; starter kits are cheap and easy to find.",
     "What hobby did you suggest I take up for the winter?", "hobby"),
)
#: User facts: (pool, statement, question, update statement, question after an update).
_USER_FACTS = {
    "gift": ("object", "By the way, my {rel} gave me {a} {value} for my birthday.",
             "What did my {syn} give me for my birthday?", None, None),
    "move": ("city", "Oh, and my {rel} just moved to {value} last month.",
             "Which city did my {syn} move to?",
             "Quick update: my {rel} moved again, this time to {value}.",
             "Which city does my {syn} live in now?"),
    "job": ("job", "My {rel} just started working as {a} {value}, which is exciting.",
            "What job did my {syn} start?",
            "My {rel} switched careers again and now works as {a} {value}.",
            "What does my {syn} work as now?"),
    "instrument": ("instrument", "My {rel} has been teaching me to play the {value}.",
                   "Which instrument is my {syn} teaching me to play?", None, None),
}
#: Multi-session counts: (pool, statement, question).
_COUNTED = (
    ("city", "I just got back from a trip to {value} and I'm still unpacking.",
     "How many cities have I traveled to?"),
    ("band", "I saw {value} play live last night and it was fantastic.",
     "How many concerts have I been to?"),
    ("dish", "I cooked {value} for the first time this weekend.",
     "How many new dishes have I cooked?"),
)


_POOLS: dict[str, tuple[str, ...]] = {
    "object": OBJECTS, "city": CITIES, "job": JOBS, "instrument": INSTRUMENTS, "book": BOOKS,
    "dish": DISHES, "hobby": HOBBIES, "band": BANDS}


def lme_date_text(moment: datetime) -> str:
    """A timestamp as LongMemEval writes it: '2023/05/30 (Tue) 23:40'."""
    return moment.strftime("%Y/%m/%d") + f" ({_DAYS[moment.weekday()]}) " + \
        moment.strftime("%H:%M")


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def parameters_sha256(params: dict[str, int]) -> str:
    canonical = json.dumps({"generator": GENERATOR_VERSION, "shape": "longmemeval", **params},
                           sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _Banks:
    """Seeded sentence banks per topic and the shared pool of filler sessions."""

    def __init__(self, seed: int, turns: int, pool_size: int) -> None:
        rng = random.Random(f"{seed}/lme/banks")
        self.seed = seed
        self.turns = turns
        self.pool_size = pool_size
        self.topics = list(_TOPICS)
        self.user: dict[str, list[str]] = {}
        self.assistant: dict[str, list[str]] = {}
        for topic, nouns in _TOPICS.items():
            self.user[topic] = self._bank(rng, _USER_TEMPLATES, nouns, 120)
            self.assistant[topic] = self._bank(rng, _ASSISTANT_TEMPLATES, nouns, 240)
        self.mean_words = {
            "user": _mean_words(self.user), "assistant": _mean_words(self.assistant)}
        self._fillers: dict[int, tuple[tuple[str, str], ...]] = {}

    @staticmethod
    def _bank(rng: random.Random, templates: tuple[str, ...], nouns: tuple[str, ...],
              size: int) -> list[str]:
        return [rng.choice(templates).format(a=a, b=rng.choice([n for n in nouns if n != a]))
                for a in (rng.choice(nouns) for _ in range(size))]

    def sentences(self, rng: random.Random, role: str, topic: str) -> list[str]:
        """Sentences of one turn, about as many words in all as LongMemEval's turns of
        ``role`` have (normal around the mean, clipped to a quarter and three times it)."""
        mean, sd = USER_WORDS if role == "user" else ASSISTANT_WORDS
        words = min(3 * mean, max(mean // 4, rng.gauss(mean, sd)))
        bank = self.user[topic] if role == "user" else self.assistant[topic]
        return rng.choices(bank, k=max(2, round(words / self.mean_words[role])))

    def length(self, rng: random.Random) -> int:
        """Turns in a session: even (user, assistant, ...), around ``turns``."""
        pairs = max(1, self.turns // 2)
        return 2 * rng.randint(max(1, pairs - 2), pairs + 2)

    def filler(self, index: int) -> tuple[tuple[str, str], ...]:
        """Filler session ``index`` of the pool; built once, so its texts are shared objects."""
        found = self._fillers.get(index)
        if found is None:
            rng = random.Random(f"{self.seed}/lme/filler/{index}")
            topic = rng.choice(self.topics)
            found = tuple((role, " ".join(self.sentences(rng, role, topic)))
                          for role in ("user", "assistant") * (self.length(rng) // 2))
            self._fillers[index] = found
        return found


def _mean_words(banks: dict[str, list[str]]) -> float:
    sentences = [s for bank in banks.values() for s in bank]
    return sum(len(s.split()) for s in sentences) / len(sentences)


def _question_types(rng: random.Random) -> str:
    return rng.choices(list(TYPE_SHARES), weights=list(TYPE_SHARES.values()))[0]


class _Haystack:
    """One question's evidence sessions, planned before the fillers are drawn around them."""

    def __init__(self, banks: _Banks, rng: random.Random) -> None:
        self.banks = banks
        self.rng = rng
        #: Evidence sessions in chronological order: lists of (role, text, is_evidence).
        self.sessions: list[list[tuple[str, str, bool]]] = []
        self.used: set[str] = set()

    def value(self, pool: str) -> str:
        value = self.rng.choice([v for v in _POOLS[pool] if v not in self.used])
        self.used.add(value)
        return value

    def session(self, evidence: str, role: str = "user", request: str | None = None) -> None:
        """A session on a random topic with ``evidence`` inside one of its ``role`` turns (after
        ``request`` in the user turn before it, for an assistant's answer)."""
        rng, banks = self.rng, self.banks
        topic = rng.choice(banks.topics)
        roles = ("user", "assistant") * (banks.length(rng) // 2)
        slot = rng.randrange(0 if role == "user" else 1, len(roles), 2)
        turns = []
        for position, speaker in enumerate(roles):
            sentences = banks.sentences(rng, speaker, topic)
            if position == slot:
                sentences.insert(rng.randrange(len(sentences) + 1), evidence)
            elif position == slot - 1 and request is not None:
                sentences.insert(0, request)
            turns.append((speaker, " ".join(sentences), position == slot))
        self.sessions.append(turns)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _plan(kind: str, hay: _Haystack) -> tuple[str, str, bool]:
    """Plan the evidence of a question of type ``kind``: (question text, answer, abstention)."""
    rng = hay.rng
    if kind in ("single-session-user", "knowledge-update"):
        fact = rng.choice([f for f, spec in _USER_FACTS.items()
                           if kind == "single-session-user" or spec[3]])
        pool, statement, question, update, question_now = _USER_FACTS[fact]
        (rel, syn), value = rng.choice(RELATIONS), hay.value(pool)
        hay.session(statement.format(rel=rel, a=_article(value), value=value))
        abstain = rng.random() < ABSTENTION_SHARE
        if abstain:
            # Asked about another relative, whose fact the haystack never states.
            other = rng.choice([r for r in RELATIONS if r[0] != rel])[1]
            text = (question if kind == "single-session-user" else question_now).format(syn=other)
            return text, "You did not mention this information.", True
        if kind == "single-session-user":
            return question.format(syn=syn), value, False
        newer = hay.value(pool)
        hay.session(update.format(rel=rel, a=_article(newer), value=newer))
        return question_now.format(syn=syn), newer, False
    if kind == "single-session-assistant":
        request, answer, question, pool = rng.choice(_SUGGESTIONS)
        value = hay.value(pool)
        hay.session(answer.format(value=value), role="assistant", request=request)
        return question, value, False
    if kind == "single-session-preference":
        hobby = rng.choice(HOBBIES)
        hay.session(f"I've been getting really into {hobby} lately, it's my favorite way to "
                    "unwind after work.")
        return ("Can you suggest something fun for me to do this weekend?",
                f"The user would prefer suggestions involving {hobby}.", False)
    if kind == "multi-session":
        pool, statement, question = rng.choice(_COUNTED)
        count = rng.randint(2, 4)
        for _ in range(count):
            hay.session(statement.format(value=hay.value(pool)))
        return question, str(count), False
    # temporal-reasoning: the answer is set from the two sessions' dates once laid out.
    first, second = rng.sample(ACTIVITIES, 2)
    for activity, _ in (first, second):
        hay.session(f"I went {activity} today near {rng.choice(NATURE_SPOTS)} and loved it.")
    return (f"How many days passed between the day I went {first[0]} and the day I went "
            f"{second[0]}?", "", False)


def generate(seed: int, questions: int, sessions: int, turns: int,
             keep: Collection[str] | None = None) -> Benchmark:
    """The LongMemEval-shaped benchmark for these parameters (validated by the caller); with
    ``keep``, every question but only those haystacks: the others' filler sessions are never
    made (each haystack draws from its own seeded generator, so the kept ones are the same)."""
    pool_size = max(1, round(POOL_FACTOR * questions * sessions))
    banks = _Banks(seed, turns, pool_size)
    conversations: list[Conversation] = []
    all_questions: list[Question] = []
    for i in range(questions):
        rng = random.Random(f"{seed}/lme/question/{i}")
        kind = _question_types(rng)
        hay = _Haystack(banks, rng)
        text, answer, abstain = _plan(kind, hay)
        fillers = max(0, sessions - len(hay.sessions))
        total = fillers + len(hay.sessions)
        evidence_at = sorted(rng.sample(range(total), len(hay.sessions)))
        planned = iter(hay.sessions)
        moment = datetime(2023, 1, 1) + timedelta(days=rng.randrange(300),
                                                  minutes=rng.randrange(24 * 60))
        qid = f"lme-{i}" + ("_abs" if abstain else "")
        kept = keep is None or qid in keep
        session_objects: list[Session] = []
        evidence: list[str] = []
        evidence_sessions: list[int] = []
        evidence_dates: list[datetime] = []
        for position in range(total):
            index = position + 1
            moment += timedelta(minutes=rng.randrange(60, 5 * 24 * 60))
            if position in evidence_at:
                turns_plan = next(planned)
                evidence_sessions.append(index)
                evidence_dates.append(moment)
            elif kept:
                turns_plan = [(role, content, False) for role, content in
                              banks.filler(rng.randrange(pool_size))]
            else:
                rng.randrange(pool_size)  # the same draw, so later ones stay the same
                turns_plan = []
            session_turns = []
            for t, (role, content, gold) in enumerate(turns_plan, start=1):
                uid = unit_id(index, t)
                if gold:
                    evidence.append(uid)
                if kept:
                    session_turns.append(Turn(id=uid, session_index=index, turn_index=t,
                                              speaker=role, text=content))
            if kept:
                session_objects.append(Session(index=index, date=moment,
                                               date_text=lme_date_text(moment),
                                               turns=tuple(session_turns)))
        if kind == "temporal-reasoning":
            answer = f"{abs((evidence_dates[1].date() - evidence_dates[0].date()).days)} days"
        question_date = moment + timedelta(days=rng.randint(1, 20))
        if kept:
            conversations.append(Conversation(id=qid, speakers=("user", "assistant"),
                                              sessions=tuple(session_objects)))
        all_questions.append(Question(
            id=qid, conversation_id=qid, text=text, category=kind, answers=(answer,),
            adversarial=abstain, evidence=tuple(evidence),
            evidence_sessions=tuple(evidence_sessions), question_date=question_date))
    params = {"seed": seed, "questions": questions, "sessions": sessions, "turns": turns}
    spec = ",".join(["shape=longmemeval"] + [f"{k}={params[k]}" for k in DEFAULTS])
    return Benchmark(name="synthetic", variant=spec, source=f"synthetic:{spec}",
                     sha256=parameters_sha256(params), conversations=tuple(conversations),
                     questions=tuple(all_questions))
