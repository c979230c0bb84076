"""The models a search may try: the domains of the model dimensions (the embedding model of dense
retrieval, the cross-encoder reranker). They are the models this user has, listed by name in an
environment variable, because no list of the Hub's models or of a provider's can be known
offline, and an API model costs money on every evaluation: the search tries only what is listed.

Set the same variables on every node of a Ray cluster (or in its runtime_env): a config names a
model, and each process that evaluates it resolves the name itself."""
from __future__ import annotations

import os
from typing import Any, Literal

ModelKind = Literal["embedding", "cross-encoder"]

#: The environment variable that lists each kind's models, comma-separated.
MODEL_LISTS: dict[str, str] = {"embedding": "MEMEVOLVE_EMBEDDING_MODELS",
                               "cross-encoder": "MEMEVOLVE_CROSS_ENCODERS"}
#: The embedding model value that means the memory's own embedder (``--embedder``).
DEFAULT_MODEL = "default"
#: An embedding model served through litellm is written ``litellm:<litellm model name>``.
LITELLM_PREFIX = "litellm:"


def listed_models(kind: ModelKind) -> tuple[str, ...]:
    """The models the user listed for ``kind``, in their order, each once."""
    raw = os.environ.get(MODEL_LISTS[kind], "")
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return tuple(name for name in dict.fromkeys(names) if name != DEFAULT_MODEL)


def embedder_arguments(model: str, backend: str, default_model: str | None,
                       options: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(backend, model, options) of ``make_embedder`` for an ``embedding_model`` value, given
    the memory's own embedder: 'default' is that embedder; 'litellm:<name>' goes through
    litellm; any other name is a sentence-transformers model (a Hub name or a folder), run by
    torch: the onnx backend (the default) exports only local mean-pooled folders, and only
    after ~30 s of export per model, too slow for a search that tries each listed one."""
    if model == DEFAULT_MODEL:
        return backend, default_model, options
    if model.startswith(LITELLM_PREFIX):
        return "litellm", model[len(LITELLM_PREFIX):], {}
    return "sentence-transformers", model, options if backend == "sentence-transformers" else {}


def widen_hint(kind: ModelKind) -> str:
    return f"to search another model, add it to ${MODEL_LISTS[kind]}, comma-separated"
