"""The commands the documentation gives (README.md, experiments/*.md) and what each comment says it does:
read by the documented-commands test (tests/docs/) and by the schema test that validates them."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]  # the repository
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "experiments").glob("*.md") if p.name != "README.md")]


def documented_commands(page: Path) -> list[tuple[int, str, str]]:
    """(line number, command line with its comment, its ``##`` section) of every command in the page's
    shell code blocks."""
    out, in_block, section = [], False, ""
    for n, line in enumerate(page.read_text().splitlines(), 1):
        if line.startswith("```"):
            in_block = not in_block and line.strip("`").strip() in ("", "bash", "sh", "shell", "console")
            continue
        if not in_block and line.startswith("## "):
            section = line[3:].strip()
        elif in_block and line.strip() and not line.lstrip().startswith("#"):
            out.append((n, line.strip(), section))
    return out


def expected_exit(comment: str) -> int:
    """The exit status a command's comment says it ends with: 2 for a dataset it needs, ``exits N``, else 0."""
    if "needs the dataset" in comment:
        return 2
    m = re.search(r"exits (\d+)", comment)
    return int(m.group(1)) if m else 0
