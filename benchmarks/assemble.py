"""Assemble BENCHMARKS.md from the sections each benchmark script writes.

Every ``benchmarks/bench_*.py`` writes its results (command, date, machine,
versions, tables, figure paths) to ``benchmarks/sections/NN_topic.md``; this
script concatenates them in order under a common header. Run by
``benchmarks/run_all.py`` after the scripts, or alone:

    python benchmarks/assemble.py
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ROOT / "benchmarks" / "sections"

HEADER = """# Benchmarks

Every table and figure below was produced by the command printed with it.
Where a section compares pathwise with another library (Gymnasium, SciPy and
python-control, Brax, Stable-Baselines3), both sides were measured in that one
run, interleaved, on the same machine with the same seeds and budgets; where a
target from the project's issues is not met, the section says so and why.
`make bench` reruns the quick versions and
`make bench-full` all of them; both rebuild this file from
`benchmarks/sections/` with `python benchmarks/assemble.py`.

Machines: unless a section says otherwise, the 2-core CPU container this
project is developed on (no GPU). Several development jobs shared those two
cores during some runs; each section says so where it applies, and ratios
measured within one run are the numbers to trust over absolute times.

"""


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.startswith("## "):
            return line[3:].strip()
    return fallback


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    keep = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return keep.replace(" ", "-")


def _fix_links(text: str) -> str:
    """Sections link figures relative to ``benchmarks/sections/``; BENCHMARKS.md sits at the repository root."""
    text = re.sub(r"\]\((?:\.\./)?figures/", "](benchmarks/figures/", text)
    # a bare `benchmarks/figures/x.png` mention becomes an embedded image
    text = re.sub(r"^Figure: `(benchmarks/figures/[^`]+\.png)`$", r"![figure](\1)", text, flags=re.M)
    # other figures named in the text (`figures/x.png`) become links, and are embedded at the section's end
    embedded = set(re.findall(r"!\[[^\]]*\]\((benchmarks/figures/[^)]+)\)", text))
    named = []
    for name in re.findall(r"`(?:benchmarks/)?figures/([^`]+\.png)`", text):
        path = f"benchmarks/figures/{name}"
        if path not in embedded and path not in named:
            named.append(path)
    text = re.sub(r"`(?:benchmarks/)?figures/([^`]+\.png)`", r"[`\1`](benchmarks/figures/\1)", text)
    if named:
        text = text.rstrip() + "\n\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in named) + "\n"
    return text


def check(sections: list[tuple[Path, str]]) -> list[str]:
    """Problems that make the document wrong: missing figures, sections without a command, duplicate titles."""
    problems, titles = [], {}
    for f, text in sections:
        if "Command:" not in text and "`python benchmarks/" not in text:
            problems.append(f"{f.name}: no command that regenerates it")
        for fig in re.findall(r"\]\((benchmarks/figures/[^)]+)\)", _fix_links(text)):
            if not (ROOT / fig).exists():
                problems.append(f"{f.name}: figure {fig} does not exist")
        title = _title(text, f.stem)
        if title in titles:
            problems.append(f"{f.name}: same title as {titles[title]} ({title!r})")
        titles[title] = f.name
    return problems


def assemble() -> str:
    parts = [HEADER]
    files = sorted(SECTIONS.glob("*.md"))
    sections = [(f, f.read_text()) for f in files]
    for problem in check(sections):
        print(f"warning: {problem}", file=sys.stderr)
    if sections:
        toc = [f"- [{_title(t, f.stem)}](#{_anchor(_title(t, f.stem))})" for f, t in sections]
        parts.append("## Contents\n\n" + "\n".join(toc) + "\n\n")
    for _, text in sections:
        parts.append(_fix_links(text).rstrip() + "\n\n")
    return "".join(parts).rstrip() + "\n"


def main() -> int:
    text = assemble()
    out = ROOT / "BENCHMARKS.md"
    fd, tmp = tempfile.mkstemp(dir=ROOT, prefix=".BENCHMARKS.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, out)
    print(f"wrote {out.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
