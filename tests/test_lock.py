"""constraints.txt (written by `make lock`) against pyproject's requirements: every requirement
is pinned, every pin satisfies it, and no pin names a path of the machine that wrote it."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")

pytestmark = pytest.mark.timeout(30)


def _pins() -> dict[str, Version]:
    pins = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = PIN.match(line.strip())
        assert match, (f"constraints.txt line {n} is not 'name==version': {line!r}. Fix: run "
                       "'make lock', which pins by version only.")
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in
            [*project["dependencies"], *extras["test"], *extras["llm"]]]


def test_every_requirement_is_pinned_to_a_version_it_allows():
    pins = _pins()
    for requirement in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, (f"pyproject requires {requirement} but constraints.txt does not "
                              "pin it. Fix: run 'make lock'.")
        # A local label (torch's +cpu) is the build, not the release the specifier names.
        assert requirement.specifier.contains(Version(pins[name].public), prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside pyproject's {requirement}. "
            "Fix: run 'make lock'.")


def test_the_lock_pins_the_cpu_build_of_torch_and_nothing_of_its_own():
    pins = _pins()
    # The release is pyproject's (the test above); the build must be the CPU one.
    assert pins["torch"].local == "cpu"
    assert "memevolve" not in pins
