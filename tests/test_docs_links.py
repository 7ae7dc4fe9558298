"""Links between the project's Markdown files: every relative file and #anchor must exist.

docs/training.md alone has over a hundred sections that point at each other; a renamed
heading silently breaks a reader's path through the measurements, so the links are checked.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^(#{1,6}) (.+)$")
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets '-1', '-2', ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", text).splitlines():
        match = HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """'file: link (why)' for each relative link whose file or anchor is missing."""
    problems = []
    for path in files:
        text = FENCE.sub("", path.read_text(encoding="utf-8"))
        for link in LINK.findall(text):
            if re.match(r"[a-z]+:", link):
                continue
            target_name, _, anchor = link.partition("#")
            target = (path.parent / target_name).resolve() if target_name else path
            if not target.exists():
                problems.append(f"{path.relative_to(root)}: {link} (no such file)")
            elif anchor and target.suffix == ".md" and anchor not in anchors(target.read_text(encoding="utf-8")):
                problems.append(f"{path.relative_to(root)}: {link} (no such heading)")
    return problems


def test_every_relative_link_and_anchor_exists():
    files = sorted(ROOT.glob("*.md")) + sorted((ROOT / "docs").glob("*.md"))
    assert len(files) >= 3
    assert broken_links(files) == []


def test_a_renamed_heading_is_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Speed, on 2 cores\n\nSee [speed](#speed-on-2-cores) and [gone](#speed).\n"
                    "[other](missing.md)\n", encoding="utf-8")
    assert broken_links([page], root=tmp_path) == ["page.md: #speed (no such heading)",
                                                   "page.md: missing.md (no such file)"]
