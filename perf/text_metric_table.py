"""The README's text-track metric table: the leaderboard's mean-over-seeds table without the columns the
README leaves out (FID / KID against real data, which measure guidance on this card; steps; seeds).

Usage:  unlearnbench leaderboard docs/records/mnist-text-style-v3-quick
        python perf/text_metric_table.py docs/records/mnist-text-style-v3-quick/leaderboard.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

DROPPED_PREFIXES = ("FID[", "KID[")
DROPPED = ("steps", "seeds")
RIGHT_ALIGNED = ("cost", "unlearn time")


def readme_table(leaderboard_md: str) -> str:
    """The first markdown table of ``leaderboard_md`` (the metric table), columns chosen for the README."""
    lines = leaderboard_md.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| method")), None)
    if start is None:
        raise SystemExit("text_metric_table: error: no '| method' table in the leaderboard")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    head = rows[0]
    keep = [i for i, h in enumerate(head) if not h.startswith(DROPPED_PREFIXES) and h not in DROPPED]
    out = ["| " + " | ".join(head[i] for i in keep) + " |",
           "| :--- | " + " | ".join("---:" if head[i].startswith(RIGHT_ALIGNED) else ":---" for i in keep[1:]) + " |"]
    out += ["| " + " | ".join(r[i] for i in keep) + " |" for r in rows[2:]]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("leaderboard", type=Path, help="leaderboard.md written by `unlearnbench leaderboard DIR`")
    args = parser.parse_args()
    if not args.leaderboard.is_file():
        raise SystemExit(f"text_metric_table: error: {args.leaderboard} is not a file")
    print(readme_table(args.leaderboard.read_text()))


if __name__ == "__main__":
    main()
