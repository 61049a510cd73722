"""The documentation: the top README stays one short first read, and every relative link and image
in it and in the READMEs beside the code resolves (files, and `#anchors` to headings by GitHub's
slug rules).

Run: ~/.cache/mlops-console/venv/bin/python -m pytest tests/test_docs.py -q
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MOVED = [
    ROOT / "inference-image" / "README.md",
    ROOT / "console-core" / "README.md",
    ROOT / "src-tauri" / "README.md",
    ROOT / "tests" / "README.md",
]
DOCS = [README, *MOVED]
MAX_README_BYTES = 12_288

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), with an optional "title".
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: markup dropped, lower case, punctuation removed
    (letters, digits, `_`, `-` and spaces kept), spaces turned into hyphens."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("*", "").lower()
    text = "".join(
        c for c in text
        if c in "-_ " or unicodedata.category(c)[0] in "LN"
    )
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor the headings of a Markdown file produce (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        m = HEADING.match(line)
        if not m:
            continue
        s = slug(m.group(2))
        if s in seen:
            seen[s] += 1
            s = f"{s}-{seen[s]}"
        else:
            seen[s] = 0
        out.add(s)
    return out


def relative_links(path: Path) -> list[str]:
    """The targets of the file's Markdown links and images that are not web or mail addresses."""
    targets = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = CODE_SPAN.sub("", line)
        for m in LINK.finditer(line):
            t = m.group(1)
            if re.match(r"^(https?:|mailto:)", t, re.I):
                continue
            targets.append(t)
    return targets


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, f"README.md is {size} bytes; keep it under {MAX_README_BYTES}"


def test_the_readme_shows_the_two_commands():
    commands = {line.split("#", 1)[0].strip() for line in README.read_text(encoding="utf-8").splitlines()}
    for c in ("bash scripts/run.sh", "bash scripts/test.sh"):
        assert c in commands, f"README.md has no line `{c}`"


@pytest.mark.parametrize("doc", MOVED, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_moved_documents_exist(doc: Path):
    assert doc.is_file(), f"{doc.relative_to(ROOT)} is missing"
    assert doc.read_text(encoding="utf-8").strip(), f"{doc.relative_to(ROOT)} is empty"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    if not doc.is_file():
        pytest.fail(f"{doc.relative_to(ROOT)} is missing")
    broken = []
    for target in relative_links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / unquote(file_part)).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
            continue
        if anchor and dest.suffix.lower() == ".md" and anchor.lower() not in anchors(dest):
            broken.append(f"{target}: no heading in {dest.relative_to(ROOT)} gives #{anchor}")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize(
    "heading, want",
    [
        ("Two commands (fresh Debian machine)", "two-commands-fresh-debian-machine"),
        ("The first run (`bash scripts/run.sh`)", "the-first-run-bash-scriptsrunsh"),
        ("Cloud (`aws`, `ec2`, `publisher_role`)", "cloud-aws-ec2-publisher_role"),
        ("Drift verdict — effect sizes", "drift-verdict--effect-sizes"),
        ("**Bold** and [a link](x.md)", "bold-and-a-link"),
    ],
)
def test_slugs_follow_github(heading: str, want: str):
    assert slug(heading) == want
