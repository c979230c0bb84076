"""No command and no test reaches the network: litellm's price list comes from its local copy."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

# Runs in a fresh interpreter with the socket guard installed first; prints what it refused.
_PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
import netguard
netguard.install()
{body}
print("ATTEMPTS=" + json.dumps(netguard.attempts))
"""

_CLI_AND_LLM_CALL = """
import evolve.cli  # the CLI's whole import graph
import litellm
from evolve.llm import LLMClient, LLMSettings, ResponseCache

real = litellm.completion
litellm.completion = lambda **kw: real(**kw, mock_response="Paris")
client = LLMClient(LLMSettings(model="openai/gpt-4o-mini", api_key="sk-test"),
                   cache=ResponseCache({cache!r}))
result = client.complete([{{"role": "user", "content": "Capital of France?"}}], purpose="answer")
assert result.text == "Paris", result.text
"""


def _probe(body: str, env: dict[str, str]) -> list[str]:
    done = subprocess.run([sys.executable, "-c", _PROBE.format(tests=str(TESTS), body=body)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("ATTEMPTS=")]
    return json.loads(line.removeprefix("ATTEMPTS="))


def _env_without_cost_map_setting(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"}
    env["MEMEVOLVE_CACHE_DIR"] = str(tmp_path / "cache")
    return env


@pytest.mark.timeout(300)
def test_importing_the_cli_and_calling_the_llm_client_makes_no_network_attempt(tmp_path):
    body = _CLI_AND_LLM_CALL.format(cache=str(tmp_path / "llm.sqlite"))
    assert _probe(body, _env_without_cost_map_setting(tmp_path)) == []


@pytest.mark.timeout(300)
def test_the_guard_catches_litellm_fetching_its_price_list(tmp_path):
    # The control: imported bare, without our setting, litellm reaches for the network, and the
    # guard sees it. Without this the test above could pass with a blind guard.
    attempts = _probe("import litellm", _env_without_cost_map_setting(tmp_path))
    assert attempts, "the socket guard saw no attempt from a bare `import litellm`"


def test_the_guard_allows_loopback():
    import socket

    import netguard

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    assert netguard.is_local_host("127.0.0.1") and not netguard.is_local_host("example.org")
