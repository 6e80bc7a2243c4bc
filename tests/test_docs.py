"""The README and docs/ as a user follows them: every link and picture is there, every valve is documented,
and the README stays short enough to read in five minutes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipe_n8n_stream import Pipe

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300
LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)\)")


def without_code_blocks(markdown: str) -> str:
    return re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)


def prose(markdown: str) -> str:
    """The text a reader sees as markdown: without fenced blocks and code spans, whose brackets are not links."""
    return re.sub(r"(`+).+?\1", "", without_code_blocks(markdown))


def anchors(page: Path) -> set[str]:
    """GitHub's ids for a page's headings: lower case, punctuation dropped, spaces as hyphens, repeats numbered."""
    seen: dict[str, int] = {}
    ids = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", without_code_blocks(page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def links(page: Path) -> list[tuple[bool, str, str]]:
    return [(bang == "!", text, target) for bang, text, target in LINK.findall(prose(page.read_text()))]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_link_reaches_a_file_and_heading_that_exist(page: Path):
    broken = []
    for _, _, target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        if not goal.exists():
            broken.append(f"{target}: no file {goal.relative_to(ROOT)}")
        elif anchor and anchor not in anchors(goal):
            broken.append(f"{target}: no heading #{anchor} in {goal.relative_to(ROOT)}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_picture_says_what_it_shows(page: Path):
    pictures = [(text, target) for is_picture, text, target in links(page) if is_picture]
    assert all(len(text.split()) >= 5 for text, _ in pictures), pictures


def test_the_readme_reads_in_five_minutes():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES


def test_the_readme_links_every_page_of_docs():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, _, target in links(ROOT / "README.md")}
    assert set(PAGES[1:]) <= linked, sorted(p.name for p in set(PAGES[1:]) - linked)


def test_every_valve_is_in_the_valves_page():
    table = (ROOT / "docs" / "valves.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert documented == set(Pipe.Valves.model_fields)
