"""Diagnosers behind one interface, registered by name (rules; llm)."""
from __future__ import annotations

from evolve.diagnosers import llm, rules  # noqa: F401  (registers)
from evolve.diagnosers.base import DIAGNOSERS, Diagnoser, DiagnosisContext, Edit, Proposal

__all__ = ["DIAGNOSERS", "Diagnoser", "DiagnosisContext", "Edit", "Proposal"]
