"""Assemble BENCHMARKS.md from the sections each benchmark script writes.

Every ``benchmarks/bench_*.py`` writes its results (command, date, machine,
versions, tables, figure paths) to ``benchmarks/sections/NN_topic.md``; this
script concatenates them in order under a common header. Run by
``benchmarks/run_all.py`` after the scripts, or alone:

    python benchmarks/assemble.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ROOT / "benchmarks" / "sections"

HEADER = """# Benchmarks

Every table and figure below was produced by the command printed with it, in a
run that measured pathwise and the peer side by side on the same machine with
the same seeds and budgets. `make bench` reruns the quick versions and
`make bench-full` all of them; both rebuild this file from
`benchmarks/sections/` with `python benchmarks/assemble.py`.

Machines: unless a section says otherwise, the 2-core CPU container this
project is developed on (no GPU). Several development jobs shared those two
cores during some runs; each section says so where it applies, and ratios
measured within one run are the numbers to trust over absolute times.

"""


def assemble() -> str:
    parts = [HEADER]
    files = sorted(SECTIONS.glob("*.md"))
    if files:
        parts.append("## Contents\n\n" + "\n".join(f"- `{f.stem}`" for f in files) + "\n\n")
    for f in files:
        parts.append(f.read_text().rstrip() + "\n\n")
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
