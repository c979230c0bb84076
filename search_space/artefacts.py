"""Learned parts of a config (a question-type predictor, ...) are artefacts: JSON bodies named by
the hash of their content, so a config can reference one by hash and export/resume carry it."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_artefact_json(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def artefact_hash(body: dict[str, Any]) -> str:
    """The content address of an artefact body."""
    return hashlib.sha256(canonical_artefact_json(body).encode()).hexdigest()[:16]
