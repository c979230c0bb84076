"""Shared fixtures: the real benchmark files in ../shared/data, loaded once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

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
