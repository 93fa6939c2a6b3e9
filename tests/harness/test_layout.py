"""The table of docs/code_layout.md names every module of the referee, the submission library and the research code."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_code_layout_lists_every_module():
    layout = (ROOT / "docs" / "code_layout.md").read_text()
    rows = [line for line in layout.splitlines() if line.startswith("| `")]
    missing = []
    for package in ("harness", "submission_kit", "research"):
        for module in sorted((ROOT / package).rglob("*.py")):
            rel = module.relative_to(ROOT).as_posix()
            folder = module.parent.relative_to(ROOT).as_posix() + "/"
            # a module is listed by its path, or by its file name in the row of its folder
            listed = any(f"`{rel}`" in row or (f"`{folder}`" in row and (f"`{module.name}`" in row
                                                                          or module.name == "__init__.py"))
                         for row in rows)
            if not listed:
                missing.append(rel)
    assert not missing, f"docs/code_layout.md's table lacks: {missing}"
    assert re.search(r"`harness/__init__.py`", layout)
