"""The README stays short (at most 16 KB: details go to docs/) and every local link of the README, CHANGELOG.md and
docs/*.md leads to a file that exists (and to a heading of it, when the link names one)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_LIMIT = 16 * 1024
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = "```"


def prose_lines(markdown: str) -> list[str]:
    """The lines of ``markdown`` outside fenced code blocks."""
    lines, in_code = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(FENCE):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return lines


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown``: lower case, punctuation dropped, spaces → hyphens,
    a repeated heading numbered ``-1``, ``-2``, ..."""
    anchors: set[str] = set()
    for line in prose_lines(markdown):
        match = re.match(r"#{1,6} +(.+?) *#* *$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        unique, number = slug, 0
        while unique in anchors:
            number += 1
            unique = f"{slug}-{number}"
        anchors.add(unique)
    return anchors


def local_links(path: Path) -> list[str]:
    """Link targets of the markdown file ``path`` that are not web addresses."""
    return [target for line in prose_lines(path.read_text(encoding="utf-8")) for target in LINK.findall(line)
            if not re.match(r"[a-z]+:", target)]


def broken_links(path: Path) -> list[str]:
    """``path``'s local links whose file, or whose heading in that file, does not exist."""
    broken = []
    for target in local_links(path):
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and (destination.suffix != ".md"
                         or anchor not in heading_anchors(destination.read_text(encoding="utf-8"))):
            broken.append(f"{target} (no such heading)")
    return broken


def test_readme_is_at_most_16_kb():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md has {size} bytes, over {README_LIMIT}: move details to a page of docs/"


def test_readme_links_every_page_of_docs():
    linked = {(ROOT / target.partition("#")[0]).resolve() for target in local_links(ROOT / "README.md")}
    pages = sorted((ROOT / "docs").glob("*.md"))
    assert len(pages) >= 10
    unlinked = [page.name for page in pages if page.resolve() not in linked]
    assert not unlinked, f"README.md links no docs page of: {unlinked}"


def test_local_links_resolve():
    documents = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert sum(len(local_links(path)) for path in documents[:1]) >= 15  # the README does link its docs
    broken = {path.relative_to(ROOT).as_posix(): links for path in documents if (links := broken_links(path))}
    assert not broken, f"links to nothing: {broken}"


def test_broken_links_are_found(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page: its `title`\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("[a](docs/page.md) [b](docs/page.md#a-page-its-title) [c](docs/page.md#twice-1)\n"
                      "[d](docs/missing.md) [e](docs/page.md#nowhere) [f](https://example.org/x) [g](#here)\n"
                      "```\n[h](docs/in_code.md)\n```\n# Here\n", encoding="utf-8")
    assert broken_links(readme) == ["docs/missing.md (no such file)", "docs/page.md#nowhere (no such heading)"]
