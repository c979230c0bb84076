"""The README's search-space table is generated from the dimensions and kept in sync."""
from __future__ import annotations

from pathlib import Path

from search_space.dimensions import space_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_table_matches_the_declared_dimensions():
    text = README.read_text()
    table = text.split("<!-- space:begin -->\n", 1)[1].split("\n<!-- space:end -->", 1)[0]
    assert table == space_markdown(), "run 'memevolve space --markdown' and paste it into README"
