"""The embedded default benchmark: seeded LoCoMo-shaped conversations with exact gold evidence."""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._registry import check_options, register
from benchmarks.errors import BenchmarkError
from benchmarks.model import Benchmark, Conversation, Question, Session, Turn

#: Part of the sha256: bump it whenever the same parameters start producing different data.
GENERATOR_VERSION = 1
DEFAULTS: dict[str, int] = {"seed": 0, "conversations": 10, "sessions": 12, "turns": 20,
                            "questions": 25}
# 10 conversations leave 8 for dev: the fewest with which the guard's sign-flip test (p >= 2^-k)
# can pass Holm's level for a round of 4 candidates; 8 (6 dev) never could.
#: Upper bounds; ``questions`` is per conversation and bounded so the pools below never run dry.
LIMITS: dict[str, int] = {"conversations": 10_000, "sessions": 1_000, "turns": 1_000,
                          "questions": 100}
#: The ``--benchmark-option`` keys, for both shapes.
OPTIONS: dict[str, str] = {
    "shape": "locomo (default: conversations between two people, LoCoMo's categories) or "
             "longmemeval (one user/assistant haystack per question, LongMemEval's types)",
    "seed": "seed of everything generated (default 0)",
    "conversations": "locomo shape: how many conversations (default 8)",
    "sessions": "sessions per conversation (default 12); longmemeval: per haystack (default "
                "50, the S size; 500 is the M size)",
    "turns": "turns per session (default 20; longmemeval: about that many, default 10)",
    "questions": "per conversation (default 25); longmemeval: in all (default 500)",
}
SHAPES = ("locomo", "longmemeval")
#: Share of each LoCoMo category among a conversation's questions beyond one of each.
CATEGORY_SHARES: dict[str, float] = {"1": 0.15, "2": 0.2, "3": 0.1, "4": 0.35, "5": 0.2}
#: Relative time phrases of temporal turns: days back from the session date ...
RELATIVE_DAYS: dict[str, int] = {"yesterday": 1, "two days ago": 2, "three days ago": 3}
#: ... or, as LoCoMo's gold answers put it, the span before the session date.
RELATIVE_SPANS: dict[str, str] = {"last week": "The week before",
                                  "last weekend": "The weekend before"}

NAMES = (
    "Caroline", "Melanie", "Jon", "Gina", "Maria", "Tomas", "Priya", "Dev", "Aiko", "Kenji",
    "Fatima", "Omar", "Lena", "Jonas", "Sofia", "Mateo", "Nadia", "Elliot", "Grace", "Hugo",
    "Isla", "Ravi", "Zoe", "Marcus", "Chloe", "Andre", "Yara", "Felix", "Hannah", "Luca",
    "Amara", "Noah", "Ingrid", "Diego", "Mei", "Samir", "Clara", "Theo", "Nora", "Kwame",
    "Leila", "Oscar", "Ruth", "Emil", "Tara", "Joel", "Vera", "Idris",
)
#: Who a fact is about: (word a speaker uses, synonym the question uses instead).
RELATIONS = (
    ("mom", "mother"), ("dad", "father"), ("grandma", "grandmother"),
    ("grandpa", "grandfather"), ("sister", "sibling"), ("boss", "manager"),
    ("roommate", "flatmate"), ("coworker", "colleague"), ("best friend", "closest pal"),
    ("mentor", "adviser"), ("coach", "trainer"), ("neighbor", "next-door neighbour"),
    ("teacher", "instructor"), ("landlord", "property manager"),
)
SPECIES = (
    ("puppy", "dog"), ("kitten", "cat"), ("parrot", "bird"), ("bunny", "rabbit"),
    ("hamster", "rodent"), ("goldfish", "fish"), ("tortoise", "turtle"), ("gecko", "lizard"),
)
#: Objects share adjectives and nouns on purpose: each is a lexical distractor for another.
OBJECTS = (
    "vintage typewriter", "vintage camera", "vintage record player", "leather journal",
    "leather backpack", "leather wallet", "red bicycle", "red kayak", "red scarf",
    "ceramic teapot", "ceramic vase", "ceramic mug", "silver watch", "silver locket",
    "silver bracelet", "wooden chess set", "wooden music box", "wooden cutting board",
    "handmade quilt", "handmade scarf", "handmade candle set", "brass telescope",
    "brass compass", "blue umbrella", "blue sketchbook", "wool blanket", "wool sweater",
    "fountain pen", "bonsai tree", "succulent garden", "green tea set", "green backpack",
    "portable record player", "portable projector", "digital camera", "digital photo frame",
    "desk lamp", "camping lantern", "camping hammock", "hiking backpack",
)
CITIES = (
    "Lisbon", "Kyoto", "Denver", "Vancouver", "Reykjavik", "Austin", "Prague", "Seoul",
    "Dublin", "Marrakech", "Oslo", "Lima", "Hanoi", "Cape Town", "Melbourne", "Montreal",
    "Edinburgh", "Barcelona", "Nairobi", "Havana", "Santiago", "Tbilisi", "Bergen", "Porto",
    "Seville", "Krakow", "Budapest", "Valparaiso", "Queenstown", "Chiang Mai", "Sapporo",
    "Tallinn", "Ljubljana", "Cusco", "Zanzibar", "Halifax", "Asheville", "Savannah", "Boulder",
    "Florence",
)
PET_NAMES = (
    "Biscuit", "Pepper", "Mochi", "Luna", "Waffles", "Ziggy", "Noodle", "Pickles", "Olive",
    "Bean", "Maple", "Clover", "Nugget", "Pumpkin", "Sprout", "Tofu", "Juniper", "Pretzel",
    "Dumpling", "Comet", "Sushi", "Marble", "Peanut", "Ginger",
)
JOBS = (
    "pastry chef", "graphic designer", "park ranger", "nurse", "librarian", "data analyst",
    "physical therapist", "sound engineer", "florist", "dental hygienist", "architect",
    "translator", "flight attendant", "marine biologist", "line cook", "wedding photographer",
    "yoga instructor", "pharmacist", "firefighter", "paramedic", "tattoo artist",
    "museum curator", "software engineer", "bus driver",
)
INSTRUMENTS = (
    "cello", "ukulele", "violin", "banjo", "saxophone", "harp", "drums", "trumpet", "flute",
    "piano", "accordion", "mandolin", "clarinet", "harmonica",
)
#: Invented titles that share words, like the objects.
BOOKS = (
    "The Salt Orchard", "The Salt Road", "Winter of Glass", "Glass Harbor",
    "A Map of Small Fires", "The Last Lighthouse", "The Lighthouse Keeper's Daughter",
    "Orchard of Stars", "Night Train to Nowhere", "The Paper Garden", "Garden of Ash",
    "Seven Quiet Rivers", "River of Lanterns", "The Clockmaker's Silence", "Silent Harbor",
    "The Copper Sky", "Sky Full of Birds", "The Winter Birds", "Letters from the Orchard",
    "The Quiet Cartographer", "House of Small Hours", "The Night Gardener", "Salt and Lanterns",
    "Paper Moons",
)
HOBBIES = (
    "pottery", "knitting", "calligraphy", "woodworking", "origami", "embroidery", "beekeeping",
    "archery", "fencing", "candle making", "bread baking", "film photography", "crocheting",
    "stained glass", "bookbinding", "improv comedy", "sign language", "tap dancing",
    "jewelry making", "chess",
)
DISHES = (
    "mushroom risotto", "pad thai", "shakshuka", "vegetable lasagna", "pierogi", "falafel",
    "gnocchi", "paella", "ramen", "dumplings", "banana bread", "lemon tart", "bibimbap",
    "tamales", "spinach curry", "empanadas", "focaccia", "miso soup", "pumpkin soup",
    "apple pie",
)
BANDS = (
    "The Velvet Foxes", "Midnight Harbor", "Paper Lanterns", "Neon Orchard", "The Copper Kites",
    "Silver Pines", "The Quiet Tides", "Wild Marigold", "The Night Owls", "Brass Meridian",
    "Electric Willow", "The Lonely Comets", "Sugar Mountain Choir", "Velvet Harbor",
    "The Paper Kites Revival", "Silver Tide",
)
#: Activities for temporal facts: (what the speaker says they went doing, question paraphrase).
ACTIVITIES = (
    ("hiking", "go on a hike"), ("camping", "spend a night in a tent"),
    ("fishing", "cast a line for fish"), ("kayaking", "go paddling in a kayak"),
    ("skiing", "hit the slopes on skis"), ("surfing", "ride some waves"),
    ("bowling", "knock down some pins"), ("ice skating", "glide around a rink"),
    ("horseback riding", "ride a horse"), ("sailing", "take a sailboat out"),
    ("rock climbing", "scale a cliff with ropes"), ("snorkeling", "swim with a mask and fins"),
    ("paddleboarding", "stand on a paddle board"), ("canoeing", "paddle a canoe"),
    ("stargazing", "look at the night sky"), ("berry picking", "gather wild berries"),
    ("apple picking", "pick fruit at an orchard"), ("snowboarding", "ride a board down the snow"),
    ("skydiving", "jump out of a plane"), ("scuba diving", "dive underwater with a tank"),
    ("mountain biking", "ride a bike on rugged trails"),
    ("rollerblading", "skate on inline wheels"),
    ("caving", "explore underground caverns"), ("whale watching", "go looking for whales"),
    ("salsa dancing", "hit a Latin dance floor"), ("swimming", "do laps in a pool"),
    ("golfing", "play a round of golf"), ("sledding", "slide down a snowy hill"),
    ("bouldering", "climb boulders"), ("windsurfing", "sail a windsurf board"),
    ("zip lining", "fly along a cable through the treetops"),
    ("thrift shopping", "hunt for secondhand clothes"),
    ("wine tasting", "sample wines at a vineyard"), ("geocaching", "search for hidden caches"),
    ("ice fishing", "drop a line through a frozen lake"), ("tubing", "float on an inner tube"),
    ("white water rafting", "ride the rapids"), ("go-karting", "race karts on a track"),
    ("birdwatching", "look for birds through binoculars"), ("antiquing", "browse antique shops"),
)
NATURE_SPOTS = (
    "Cedar Lake", "Pine Ridge", "Eagle Creek", "Silver Falls", "Maple Hollow", "Fox Point",
    "Willow Bay", "Granite Peak", "Otter Cove", "Bluebell Woods", "Hawk Hill", "Mirror Pond",
    "Juniper Flats", "Crystal Springs", "Heron Marsh", "Aspen Valley",
)
#: Open-domain inference: (question, "answer; rationale", clue, clue, counter-clue). The clues
#: imply the answer without stating it; the other speaker's counter-clue shares their words.
TRAITS = (
    ("Would {name} consider a career as a veterinarian?",
     "Likely yes; {name} volunteers at an animal shelter and adores dogs",
     "I spent the whole Saturday volunteering at the animal shelter again.",
     "Honestly, I'd rather hang out with dogs than people most days.",
     "I'm a bit scared of big dogs, to be honest."),
    ("Is {name} more of an extrovert or an introvert?",
     "Introvert; {name} finds big parties draining and prefers quiet nights in",
     "Big parties drain me, I left the party after twenty minutes.",
     "My ideal Friday is tea, a blanket and a quiet novel.",
     "I love a packed party, the louder the better!"),
    ("Does {name} care about protecting the environment?",
     "Yes; {name} gave up their car for cycling and composts to cut waste",
     "I sold my car and I bike everywhere now, way less pollution.",
     "I've been composting and cutting out plastic at home.",
     "I drive everywhere, I can't imagine life without my car."),
    ("Might {name} move somewhere warmer in the future?",
     "Likely yes; {name} dislikes the cold grey weather and browses homes in sunny towns",
     "Another grey, freezing week here, I miss the sunshine so much.",
     "I keep browsing apartments in sunny coastal towns.",
     "I actually love the cold, winter is my favorite season."),
    ("Would {name} be likely to sign up for a marathon?",
     "Likely yes; {name} runs very long distances and trains with a running club",
     "I ran twenty miles this morning before breakfast.",
     "My running club does hill repeats every Thursday now.",
     "I can barely run to catch the bus, haha."),
    ("Would {name} order a steak at a restaurant?",
     "No; {name} has not eaten meat for years and prefers vegetable dishes",
     "I haven't eaten meat in almost three years now.",
     "The lentil curry at that new place is my favorite meal.",
     "Nothing beats a good steak on a Friday night."),
    ("Could {name} make a living as a professional artist?",
     "Possibly yes; {name} paints portraits late into the night and a gallery wants their work",
     "I stayed up until 3am finishing another oil portrait.",
     "A gallery downtown asked to show a few of my canvases.",
     "I can't even draw a stick figure, honestly."),
    ("Does {name} want to have children?",
     "Likely yes; {name} loves babysitting and is looking into adoption",
     "Babysitting my nephews is the best part of my week.",
     "We've started looking into adoption agencies.",
     "Kids are cute, but I'm happy being the fun relative who visits."),
    ("Would {name} be interested in a software engineering bootcamp?",
     "Likely yes; {name} builds computers and teaches themselves to code",
     "I built my own gaming computer from spare parts.",
     "I've been teaching myself to code small apps at night.",
     "Computers confuse me, I still print my emails."),
    ("Would {name} rather cross an ocean by ship or by airplane?",
     "By ship; {name} is anxious about flying and avoids planes",
     "I took a thirty-hour train instead of the plane, my hands shake on flights.",
     "Turbulence is my worst nightmare, honestly.",
     "I love flying, I'd take a plane anywhere."),
    ("Is music an important part of {name}'s life?",
     "Yes; {name} practices scales for hours and joined a community orchestra",
     "I practiced scales for three hours again today.",
     "I got into the community orchestra after my audition!",
     "I can't carry a tune to save my life."),
    ("Would {name} enjoy living in the countryside?",
     "Likely yes; {name} grows vegetables and dreams of a small farm with chickens",
     "My tomatoes finally came in, and the zucchini are taking over.",
     "I'm dreaming of a little farm with chickens someday.",
     "I could never leave the city, I need the noise."),
)
FILLERS = (
    "How was your week?", "Haha, that's awesome!", "I've been so busy with work lately.",
    "That sounds amazing, tell me more!", "Oh wow, I didn't expect that.", "Same here, honestly.",
    "I hear you, it's been a long month.", "Thanks for asking, I'm doing alright.",
    "That's so sweet of you to say.", "Ugh, the traffic this morning was unbearable.",
    "I really need a vacation soon.", "Did you sleep okay? You seemed tired last time.",
    "I made way too much coffee again.", "The weather has been all over the place.",
    "I'm trying to drink more water these days.", "That makes total sense.",
    "I'm so happy for you!", "No way, that's hilarious.", "Let's catch up properly soon.",
    "I binge-watched a whole series over the weekend.", "My phone keeps dying on me.",
    "Work has been chaotic, but I'm managing.", "Honestly, same. I need more sleep.",
    "I finally cleaned out my closet.", "You always know how to cheer me up.",
    "What have you been up to?", "I can't believe how fast this year is going.",
    "Sorry for the late reply, it was a hectic day.", "That's a great idea.",
    "I tried a new coffee shop, it was just okay.", "Hey {other}! Long time no talk.",
    "Good to hear from you, {other}.", "Take care of yourself, {other}!",
    "Anyway, enough about me. How are you?", "I've been reorganizing my apartment.",
    "My plants are somehow still alive.", "I keep forgetting to call the dentist.",
    "We should grab lunch sometime.", "Wish me luck for tomorrow!",
    "I started a new podcast, it's pretty good.",
)
PHOTO_LINES = (
    "Check out this view from my walk today.", "Look at this!", "This made my day.",
    "Sharing a little moment from this week.", "Couldn't resist taking this one.",
    "Here's what my evening looked like.",
)
CAPTIONS = (
    "a sunset over the ocean", "a cup of coffee on a wooden table", "a city skyline at night",
    "a plate of pasta with basil", "a dog running on a beach", "a bowl of fresh fruit",
    "a rainy street with umbrellas", "a stack of books on a windowsill", "a field of sunflowers",
    "a cozy living room with a fireplace", "a snowy mountain range", "a bicycle leaning on a wall",
    "a colorful mural on a brick building", "a garden with blooming roses",
    "a crowded farmers market", "a cat sleeping on a sofa", "a lake surrounded by pine trees",
    "a birthday cake with candles", "a train station platform", "a hot air balloon in the sky",
)
_TEMPORAL_STATEMENTS = (
    "I went {activity} {when} near {place} and I'm still sore!",
    "Guess what? I went {activity} {when}, it was so much fun.",
    "{When} I went {activity} at {place} with a couple of friends.",
)
_TEMPORAL_CAPTION = "people {activity} on a sunny day at {place}"


@dataclass(frozen=True)
class _Kind:
    """A kind of fact: how a speaker states it, how questions paraphrase it, its distractors."""

    values: tuple[str, ...]
    statements: tuple[str, ...]
    listing: str
    mentions: tuple[str, ...]
    #: (word, synonym) pairs that tell two facts of the kind apart; empty for listed-only kinds.
    discs: tuple[tuple[str, str], ...] = ()
    questions: tuple[str, ...] = ()
    caption: str | None = None


_KINDS: dict[str, _Kind] = {
    "gift": _Kind(
        OBJECTS,
        ("My {disc} gave me {a} {value} for my birthday!",
         "Look what my {disc} got me for my birthday: {a} {value}!"),
        "What presents has {name} been given?",
        ("I saw {a} {value} at the flea market but it was way too pricey.",
         "My coworker has {a} {value} on her desk, it's kind of cute."),
        RELATIONS,
        ("What present did {name} receive from their {syn}?",
         "Which item did {name}'s {syn} hand over as a gift?"),
        "{a} {value} wrapped with a ribbon"),
    "move": _Kind(
        CITIES,
        ("My {disc} packed everything up and moved to {value}!",
         "Big news, my {disc} is living in {value} now."),
        "Which cities have people close to {name} relocated to?",
        ("Have you ever been to {value}? It keeps popping up in my feed.",
         "{value} is on my bucket list, maybe next year."),
        RELATIONS,
        ("Which city did {name}'s {syn} relocate to?",
         "Where has {name}'s {syn} settled down?")),
    "job": _Kind(
        JOBS,
        ("My {disc} just got hired as {a} {value}!",
         "My {disc} finally landed a job as {a} {value}."),
        "Which new occupations have people around {name} taken on?",
        ("I watched a documentary about being {a} {value} last night.",
         "An old classmate of mine trained to be {a} {value} too."),
        RELATIONS,
        ("What new occupation did {name}'s {syn} take on?",
         "What does {name}'s {syn} now work as?")),
    "instrument": _Kind(
        INSTRUMENTS,
        ("My {disc} has been teaching me to play the {value}.",
         "Weekly {value} lessons with my {disc} are the highlight of my week."),
        "Which instruments is {name} learning?",
        ("A street musician was playing the {value} outside the station today.",
         "I heard a {value} solo on the radio this morning, gorgeous."),
        RELATIONS,
        ("Which instrument is {name}'s {syn} helping them learn?",
         "What is {name} practicing under the guidance of their {syn}?")),
    "book": _Kind(
        BOOKS,
        ('My {disc} recommended "{value}" and I finished it in two sittings.',
         'I\'m reading "{value}" because my {disc} would not stop talking about it.'),
        "Which books have been suggested to {name}?",
        ('I saw "{value}" at the airport bookstore but didn\'t pick it up.',
         'Someone on the bus was reading "{value}", have you heard of it?'),
        RELATIONS,
        ("Which book did {name}'s {syn} suggest?",
         "What novel was {name} urged to read by their {syn}?")),
    "pet": _Kind(
        PET_NAMES,
        ("We adopted a {disc} and named it {value}!",
         "Meet {value}, the {disc} we brought home this month."),
        "What are the names of {name}'s pets?",
        ("Funny, my niece named her teddy bear {value}.",
         "There's a cafe near my place called {value}, cute name."),
        SPECIES,
        ("What is the name of the {syn} {name} took in?",
         "What did {name} call their new {syn}?"),
        "a {disc} curled up on a blanket"),
    "hobby": _Kind(
        HOBBIES,
        ("I just signed up for a {value} class and I'm hooked.",
         "I've started doing {value} on weekends, it's so relaxing."),
        "Which new pastimes has {name} picked up?",
        ("I've always wondered whether {value} is hard to learn.",
         "My cousin swears {value} changed her life, I'm not convinced."),
        caption="a workbench covered in {value} supplies"),
    "trip": _Kind(
        CITIES,
        ("Just got back from {value}, the food there was incredible!",
         "My trip to {value} was amazing, I didn't want to leave."),
        "Which cities has {name} traveled to?",
        ("{value} is on my bucket list, maybe next year.",
         "Have you ever been to {value}? It keeps popping up in my feed."),
        caption="a busy street market in {value}"),
    "dish": _Kind(
        DISHES,
        ("I tried cooking {value} for the first time tonight.",
         "Made {value} from scratch this weekend, turned out great."),
        "What recipes has {name} attempted at home?",
        ("The place downstairs has {value} on the menu now.",
         "I've never actually tasted {value}, is it good?"),
        caption="a plate of homemade {value}"),
    "concert": _Kind(
        BANDS,
        ("I finally saw {value} perform live, what a show!",
         "Went to the {value} concert, I'm still buzzing."),
        "Which musical acts has {name} seen in concert?",
        ("My cousin keeps telling me to listen to {value}.",
         "{value} are touring again, but tickets sold out instantly."),
        caption="a crowded stage with colorful lights"),
}
#: Kinds a single-hop question can ask about: each fact is told apart by its discriminator.
_SINGLE_HOP = ("gift", "move", "job", "instrument", "book", "pet")
#: Values a kind draws from a shared pool: a city is a relative's new home or a trip, never both.
_POOL_OF = {"move": "city", "trip": "city"}
_TEMPORAL = "activity"
#: English month names whatever the process locale, which ``%B`` would follow.
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")


def generate(seed: int = DEFAULTS["seed"], conversations: int = DEFAULTS["conversations"],
             sessions: int = DEFAULTS["sessions"], turns: int = DEFAULTS["turns"],
             questions: int = DEFAULTS["questions"]) -> Benchmark:
    """The synthetic benchmark for these parameters; the same parameters give the same data."""
    params = validate_parameters({"seed": seed, "conversations": conversations,
                                  "sessions": sessions, "turns": turns, "questions": questions})
    all_conversations: list[Conversation] = []
    all_questions: list[Question] = []
    for index in range(params["conversations"]):
        # One generator per conversation: conversation i is the same whatever the count.
        rng = random.Random(f"{params['seed']}/{index}")
        builder = _ConversationBuilder(rng, f"syn-{index}", params["sessions"], params["turns"])
        conversation, conversation_questions = builder.build(params["questions"])
        all_conversations.append(conversation)
        all_questions.extend(conversation_questions)
    spec = ",".join(f"{key}={params[key]}" for key in DEFAULTS)
    return Benchmark(name="synthetic", variant=spec, source=f"synthetic:{spec}",
                     sha256=parameters_sha256(params), conversations=tuple(all_conversations),
                     questions=tuple(all_questions))


def validate_parameters(options: dict[str, Any], defaults: dict[str, int] = DEFAULTS,
                        limits: dict[str, int] = LIMITS, shape: str = "locomo") -> dict[str, int]:
    """Defaults filled in and every value checked; BenchmarkError names a bad field and the fix."""
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise BenchmarkError("synthetic", f"'{unknown[0]}' is not an option of shape={shape}.",
                             field=unknown[0], fix=f"use only {', '.join(defaults)}"
                             + (" (one haystack per question: size it by questions and "
                                "sessions)." if shape == "longmemeval" else "."))
    params = dict(defaults)
    for key, value in options.items():
        params[key] = _as_int(key, value, defaults[key])
    for key, high in limits.items():
        if not 1 <= params[key] <= high:
            raise BenchmarkError("synthetic", f"{key}={params[key]} is out of range.", field=key,
                                 fix=f"pass {key} between 1 and {high}.")
    return params


def parameters_sha256(params: dict[str, int]) -> str:
    """Identity of the generated data: the generator version and the parameters."""
    canonical = json.dumps({"generator": GENERATOR_VERSION, **params}, sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def locomo_day(moment: datetime) -> str:
    """A date as LoCoMo's gold answers write it: '7 May 2023'."""
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def session_date_text(moment: datetime) -> str:
    """A session timestamp as LoCoMo writes it: '1:56 pm on 8 May, 2023'."""
    hour = moment.hour % 12 or 12
    half = "am" if moment.hour < 12 else "pm"
    month = _MONTHS[moment.month - 1]
    return f"{hour}:{moment.minute:02d} {half} on {moment.day} {month}, {moment.year}"


def resolve_relative_date(phrase: str, session_date: datetime) -> str:
    """The gold answer of a temporal turn: its relative phrase resolved against the session."""
    if phrase in RELATIVE_DAYS:
        return locomo_day(session_date - timedelta(days=RELATIVE_DAYS[phrase]))
    return f"{RELATIVE_SPANS[phrase]} {locomo_day(session_date)}"


@register
class SyntheticAdapter:
    """Generated, not read: the default benchmark, available offline and at any size."""

    name = "synthetic"
    embedded = True
    loads_part = True
    options = OPTIONS

    def sniff(self, raw: Any) -> str | None:
        return None

    def load(self, path: Path | None = None, *, variant: str | None = None,
             keep: Collection[str] | None = None, **options: Any) -> Benchmark:
        if path is not None:
            raise BenchmarkError(path, "the synthetic benchmark is generated and reads no file.",
                                 fix="drop --data, or pick the benchmark the file belongs to.")
        if variant is not None:
            raise BenchmarkError("synthetic", f"has no variant '{variant}'.", field="variant",
                                 fix=f"drop --variant and size it with --benchmark-option "
                                     f"({', '.join(OPTIONS)}).")
        check_options(self, options)
        options = dict(options)
        shape = str(options.pop("shape", "locomo")).strip()
        if shape == "locomo":
            made = generate(**validate_parameters(options))
            return made if keep is None else made.keeping(keep)
        if shape == "longmemeval":
            from benchmarks import _synthetic_longmemeval as lme

            return lme.generate(**validate_parameters(options, lme.DEFAULTS, lme.LIMITS, shape),
                                keep=keep)
        raise BenchmarkError("synthetic", f"shape={shape!r} is not a shape of the synthetic "
                             "benchmark.", field="shape", fix=f"pass one of: "
                             f"{', '.join(f'shape={s}' for s in SHAPES)}.")


def _as_int(key: str, value: Any, default: int) -> int:
    # Strings are accepted because command-line options arrive as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise BenchmarkError("synthetic", f"{key}={value!r} is not an integer.", field=key,
                         fix=f"pass {key} as a whole number, e.g. {key}={default}.")


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _category_counts(total: int) -> dict[str, int]:
    """One question of each category, the rest shared out by CATEGORY_SHARES (largest remainder)."""
    order = list(CATEGORY_SHARES)
    if total < len(order):
        # Too few for all five: the most frequent LoCoMo categories first.
        return {c: int(c in ("4", "2", "5", "1", "3")[:total]) for c in order}
    rest = total - len(order)
    exact = {c: CATEGORY_SHARES[c] * rest for c in order}
    counts = {c: 1 + int(exact[c]) for c in order}
    left = total - sum(counts.values())
    for c in sorted(order, key=lambda c: (int(exact[c]) - exact[c], order.index(c)))[:left]:
        counts[c] += 1
    return counts


@dataclass(eq=False)
class _Line:
    """One planned utterance; its session and turn numbers are set when it is laid out."""

    speaker: int
    text: str
    #: Lines of one group are spread over different sessions where there is room.
    group: str
    caption: str | None = None
    session: int = 0
    turn: int = 0

    @property
    def id(self) -> str:
        return f"D{self.session}:{self.turn}"


@dataclass(eq=False)
class _Fact:
    kind: str
    disc: str
    speaker: int
    value: str
    line: _Line
    #: Temporal facts: the relative time phrase the line uses.
    phrase: str = ""


@dataclass(eq=False)
class _Plan:
    """A question whose answer and evidence ids are settled once the lines are laid out."""

    category: str
    text: str
    lines: list[_Line] = field(default_factory=list)
    answer: str = ""
    fact: _Fact | None = None
    #: Multi-hop: every fact of this (kind, speaker) in the final ledger is the answer.
    listing: tuple[str, int] | None = None


class _ConversationBuilder:
    """Plans facts and distractors for each question, then lays them out among filler turns."""

    def __init__(self, rng: random.Random, conversation_id: str, sessions: int,
                 turns: int) -> None:
        self.rng = rng
        self.id = conversation_id
        self.sessions = sessions
        self.turns = turns
        self.names = tuple(rng.sample(NAMES, 2))
        #: Every fact stated in the conversation, by (kind, discriminator, speaker).
        self.ledger: dict[tuple[str, str, int], _Fact] = {}
        #: Keys an adversarial question claims: no fact may ever fill them.
        self.reserved: set[tuple[str, str, int]] = set()
        self.asked: set[tuple[str, str, int]] = set()
        self.listed: set[tuple[str, int]] = set()
        self.traits: set[int] = set()
        self.used: dict[str, set[str]] = {}
        self.lines: list[_Line] = []
        self.plans: list[_Plan] = []
        self.dates: list[datetime] = []

    def build(self, questions: int) -> tuple[Conversation, list[Question]]:
        counts = _category_counts(questions)
        for category, make in (("1", self._multi_hop), ("3", self._inference),
                               ("2", self._temporal), ("4", self._single_hop),
                               ("5", self._adversarial)):
            for _ in range(counts[category]):
                make()
        conversation = self._layout(questions)
        self.rng.shuffle(self.plans)
        return conversation, [self._question(i, plan) for i, plan in enumerate(self.plans)]

    # -- planning -----------------------------------------------------------------------------

    def _exhausted(self, what: str) -> BenchmarkError:
        return BenchmarkError("synthetic", f"ran out of distinct {what} for conversation "
                              f"{self.id}.", field="questions",
                              fix="lower questions (per conversation).")

    def _say(self, speaker: int, text: str, group: str, caption: str | None = None) -> _Line:
        line = _Line(speaker, text, group, caption)
        self.lines.append(line)
        return line

    def _fresh(self, kind: str, like: str | None = None) -> str | None:
        """An unused value of the kind's pool, preferring one that shares a word with ``like``."""
        pool = _POOL_OF.get(kind, kind)
        used = self.used.setdefault(pool, set())
        free = [v for v in _KINDS[kind].values if v not in used]
        if like is not None:
            words = set(like.lower().split())
            free = [v for v in free if words & set(v.lower().split())] or free
        if not free:
            return None
        value = self.rng.choice(free)
        used.add(value)
        return value

    def _free_discs(self, kind: str, speaker: int) -> list[tuple[str, str]]:
        return [d for d in _KINDS[kind].discs
                if (kind, d[0], speaker) not in self.ledger
                and (kind, d[0], speaker) not in self.reserved]

    def _state(self, kind: str, disc: str, speaker: int, value: str, group: str) -> _Fact:
        spec = _KINDS[kind]
        fill = {"disc": disc, "value": value, "a": _article(value)}
        text = self.rng.choice(spec.statements).format(**fill)
        caption = None
        if spec.caption and self.rng.random() < 0.25:
            caption = spec.caption.format(**fill)
        fact = _Fact(kind, disc, speaker, value, self._say(speaker, text, group, caption))
        self.ledger[(kind, disc, speaker)] = fact
        return fact

    def _new_fact(self, kind: str, speaker: int, group: str) -> _Fact | None:
        spec = _KINDS[kind]
        if spec.discs:
            discs = self._free_discs(kind, speaker)
            if not discs:
                return None
            disc = self.rng.choice(discs)[0]
        value = self._fresh(kind)
        if value is None:
            return None
        return self._state(kind, disc if spec.discs else value, speaker, value, group)

    def _mention(self, kind: str, value: str, group: str) -> None:
        """A distractor: the value in a sentence that answers nothing."""
        template = self.rng.choice(_KINDS[kind].mentions)
        self._say(self.rng.randrange(2), template.format(value=value, a=_article(value)), group)

    def _multi_hop(self) -> None:
        free = [(k, s) for k in _KINDS for s in (0, 1) if (k, s) not in self.listed]
        if not free:
            raise self._exhausted("list questions")
        kind, speaker = self.rng.choice(free)
        self.listed.add((kind, speaker))
        group = f"list:{kind}:{speaker}"
        have = sum(1 for (k, _, s) in self.ledger if k == kind and s == speaker)
        for _ in range(self.rng.choice((2, 2, 3)) - have):
            if self._new_fact(kind, speaker, group) is None:
                raise self._exhausted(f"{kind} facts")
        if self.rng.random() < 0.5:
            # An unused value in a sentence that is no such fact: never part of the answer.
            value = self._fresh(kind)
            if value is not None:
                self._mention(kind, value, group)
        text = _KINDS[kind].listing.format(name=self.names[speaker])
        self.plans.append(_Plan("1", text, listing=(kind, speaker)))

    def _inference(self) -> None:
        free = [i for i in range(len(TRAITS)) if i not in self.traits]
        if not free:
            raise self._exhausted("inference traits")
        index = self.rng.choice(free)
        self.traits.add(index)
        question, answer, *clues, counter = TRAITS[index]
        speaker = self.rng.randrange(2)
        name = self.names[speaker]
        group = f"trait:{index}"
        lines = [self._say(speaker, clue, group) for clue in clues]
        if self.rng.random() < 0.5:
            self._say(1 - speaker, counter, group)
        self.plans.append(_Plan("3", question.format(name=name), lines,
                                answer=answer.format(name=name)))

    def _temporal_fact(self, activity: str, speaker: int, group: str) -> _Fact:
        phrase = self.rng.choice((*RELATIVE_DAYS, *RELATIVE_DAYS, *RELATIVE_SPANS))
        place = self.rng.choice(NATURE_SPOTS)
        text = self.rng.choice(_TEMPORAL_STATEMENTS).format(
            activity=activity, when=phrase, When=phrase.capitalize(), place=place)
        caption = None
        if self.rng.random() < 0.25:
            caption = _TEMPORAL_CAPTION.format(activity=activity, place=place)
        line = self._say(speaker, text, group, caption)
        fact = _Fact(_TEMPORAL, activity, speaker, activity, line, phrase)
        self.ledger[(_TEMPORAL, activity, speaker)] = fact
        return fact

    def _free_activity(self, activity: str, speaker: int) -> bool:
        key = (_TEMPORAL, activity, speaker)
        return key not in self.ledger and key not in self.reserved

    def _temporal(self) -> None:
        free = [(a, s) for a, _ in ACTIVITIES for s in (0, 1) if self._free_activity(a, s)]
        if not free:
            raise self._exhausted("activities")
        activity, speaker = self.rng.choice(free)
        group = f"{_TEMPORAL}:{activity}"
        fact = self._temporal_fact(activity, speaker, group)
        if self.rng.random() < 0.5 and self._free_activity(activity, 1 - speaker):
            # The other speaker did the same thing at another time: same words, other date.
            self._temporal_fact(activity, 1 - speaker, group)
        paraphrase = dict(ACTIVITIES)[activity]
        self.plans.append(_Plan("2", f"When did {self.names[speaker]} {paraphrase}?",
                                [fact.line], fact=fact))

    def _single_hop_question(self, fact: _Fact, speaker: int) -> str:
        spec = _KINDS[fact.kind]
        synonym = dict(spec.discs)[fact.disc]
        return self.rng.choice(spec.questions).format(name=self.names[speaker], syn=synonym)

    def _single_hop(self) -> None:
        reusable = [f for key, f in self.ledger.items()
                    if key[0] in _SINGLE_HOP and key not in self.asked]
        if reusable and self.rng.random() < 0.3:
            fact = self.rng.choice(reusable)
        else:
            fact = self._new_single_hop_fact()
            mirror = (fact.kind, fact.disc, 1 - fact.speaker)
            if (self.rng.random() < 0.4 and mirror not in self.ledger
                    and mirror not in self.reserved):
                # The other speaker states the same kind of fact with a look-alike value.
                value = self._fresh(fact.kind, like=fact.value)
                if value is not None:
                    self._state(fact.kind, fact.disc, 1 - fact.speaker, value, fact.line.group)
        self.asked.add((fact.kind, fact.disc, fact.speaker))
        self._mention(fact.kind, fact.value, fact.line.group)
        self.plans.append(_Plan("4", self._single_hop_question(fact, fact.speaker),
                                [fact.line], answer=fact.value))

    def _new_single_hop_fact(self, swapped_free: bool = False) -> _Fact:
        options = [(k, s) for k in _SINGLE_HOP for s in (0, 1)
                   if any(not swapped_free or self._swap_free((k, d, s))
                          for d, _ in self._free_discs(k, s))]
        self.rng.shuffle(options)
        for kind, speaker in options:
            discs = [d for d, _ in self._free_discs(kind, speaker)
                     if not swapped_free or self._swap_free((kind, d, speaker))]
            value = self._fresh(kind)
            if value is not None:
                disc = self.rng.choice(discs)
                return self._state(kind, disc, speaker, value, f"{kind}:{disc}")
        raise self._exhausted("single-hop facts")

    def _swap_free(self, key: tuple[str, str, int]) -> bool:
        swapped = (key[0], key[1], 1 - key[2])
        return swapped not in self.ledger and swapped not in self.reserved

    def _adversarial(self) -> None:
        candidates = [f for key, f in self.ledger.items()
                      if key[0] in (*_SINGLE_HOP, _TEMPORAL) and self._swap_free(key)]
        if candidates and self.rng.random() < 0.7:
            fact = self.rng.choice(candidates)
        else:
            fact = self._new_single_hop_fact(swapped_free=True)
        other = 1 - fact.speaker
        self.reserved.add((fact.kind, fact.disc, other))
        if fact.kind == _TEMPORAL:
            text = f"When did {self.names[other]} {dict(ACTIVITIES)[fact.disc]}?"
        else:
            text = self._single_hop_question(fact, other)
        self.plans.append(_Plan("5", text, [fact.line], fact=fact))

    # -- layout -------------------------------------------------------------------------------

    def _layout(self, questions: int) -> Conversation:
        # Leave a fifth of every session to chit-chat so facts never sit wall to wall.
        room = self.turns - self.turns // 5
        if len(self.lines) > self.sessions * room:
            raise BenchmarkError(
                "synthetic", f"questions={questions} needs {len(self.lines)} fact and distractor "
                f"turns in conversation {self.id}, but sessions={self.sessions} x "
                f"turns={self.turns} leave room for {self.sessions * room}.",
                field="questions", fix="raise sessions or turns, or lower questions.")
        placed: list[list[_Line]] = [[] for _ in range(self.sessions)]
        for line in self.lines:
            open_sessions = [s for s in range(self.sessions) if len(placed[s]) < room]
            spread = [s for s in open_sessions if all(o.group != line.group for o in placed[s])]
            placed[self.rng.choice(spread or open_sessions)].append(line)
        moment = datetime(2022, 1, 1) + timedelta(days=self.rng.randrange(540))
        sessions = []
        for index, lines in enumerate(placed, start=1):
            if index > 1:
                moment += timedelta(days=self.rng.randint(2, 20))
            moment = moment.replace(hour=self.rng.randint(8, 21), minute=self.rng.randrange(60))
            self.dates.append(moment)
            sessions.append(Session(index=index, date=moment, date_text=session_date_text(moment),
                                    turns=self._session_turns(index, lines)))
        return Conversation(id=self.id, speakers=self.names, sessions=tuple(sessions))

    def _session_turns(self, index: int, lines: list[_Line]) -> tuple[Turn, ...]:
        slots = dict(zip(sorted(self.rng.sample(range(self.turns), len(lines))),
                         self.rng.sample(lines, len(lines))))
        speaker = self.rng.randrange(2)
        turns = []
        for position in range(self.turns):
            line = slots.get(position) or self._filler(1 - speaker)
            line.session, line.turn = index, position + 1
            speaker = line.speaker
            turns.append(Turn(id=line.id, session_index=index, turn_index=line.turn,
                              speaker=self.names[line.speaker], text=line.text,
                              caption=line.caption))
        return tuple(turns)

    def _filler(self, speaker: int) -> _Line:
        if self.rng.random() < 0.08:
            return _Line(speaker, self.rng.choice(PHOTO_LINES), "", self.rng.choice(CAPTIONS))
        text = self.rng.choice(FILLERS).format(other=self.names[1 - speaker])
        return _Line(speaker, text, "")

    # -- questions ----------------------------------------------------------------------------

    def _question(self, index: int, plan: _Plan) -> Question:
        lines, answer = plan.lines, plan.answer
        if plan.listing is not None:
            kind, speaker = plan.listing
            facts = sorted((f for (k, _, s), f in self.ledger.items()
                            if k == kind and s == speaker),
                           key=lambda f: (f.line.session, f.line.turn))
            lines = [f.line for f in facts]
            answer = ", ".join(f.value for f in facts)
        elif plan.fact is not None:
            fact = plan.fact
            answer = fact.value
            if fact.kind == _TEMPORAL:
                answer = resolve_relative_date(fact.phrase, self.dates[fact.line.session - 1])
        lines = sorted(lines, key=lambda line: (line.session, line.turn))
        adversarial = plan.category == "5"
        return Question(id=f"{self.id}:{index}", conversation_id=self.id, text=plan.text,
                        category=plan.category, answers=() if adversarial else (answer,),
                        adversarial=adversarial,
                        adversarial_answer=answer if adversarial else None,
                        evidence=tuple(line.id for line in lines),
                        evidence_sessions=tuple(sorted({line.session for line in lines})))
