"""Progress lines for logs: count, rate, ETA, and a last line, when stderr is no terminal."""
from __future__ import annotations

from evolve.progress import Progress, format_duration


def test_lines_carry_count_rate_eta_and_a_final_line():
    lines: list[str] = []
    with Progress("embedding", 4, "haystacks", every_s=0.0, write=lines.append,
                  terminal=False) as progress:
        progress.advance(1, texts=30)
        progress.advance(3, texts=90)
    assert lines[0] == "embedding: 0/4 haystacks"
    assert lines[1].startswith("embedding: 1/4 haystacks (25%)") and "ETA" in lines[1]
    assert "30 texts" in lines[1]
    assert lines[-1].startswith("embedding: 4/4 haystacks (100%)") and "ETA" not in lines[-1]
    assert "120 texts" in lines[-1]


def test_lines_are_spaced_by_the_interval_and_disabled_is_silent():
    lines: list[str] = []
    with Progress("evaluating", 100, "questions", every_s=3600, write=lines.append,
                  terminal=False) as progress:
        for _ in range(100):
            progress.advance()
    assert len(lines) == 2
    quiet: list[str] = []
    with Progress("x", 5, "y", enabled=False, write=quiet.append, terminal=False) as progress:
        progress.advance(5)
    assert quiet == [] and progress.done == 5


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (5, 75, 3725)] == ["5s", "1m15s", "1h02m"]
