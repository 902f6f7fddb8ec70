"""Print a seeded random sample of the consent core's mutant names, for a time-boxed `mutmut run`.

    .venv/bin/mutmut run --max-children 2 $(.venv/bin/python -m mutation.sample --per-module 45)

A full `make mutate` of the four modules is ~2400 mutants, hours on two shared cores (docs/MUTATION.md).
A uniform sample per module (seeded, so a re-run draws the same mutants) gives an unbiased estimate of
each module's score in a fraction of that; `--all FUNCTION` adds every mutant of a function (e.g. one
that just got its tests). Reads the mutant names from mutants/*.meta, so run `mutmut run` once first
(stopping it once it has started testing is enough: the mutants are generated before that).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from mutmut.configuration import config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-module", type=int, default=45)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--all", action="append", default=[], metavar="FUNCTION",
                        help="also every mutant whose name contains this (e.g. x_parse_area_body)")  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    names: list[str] = []
    for path in sorted(config().only_mutate):
        keys = sorted(json.loads((Path("mutants") / (path + ".meta")).read_text())["exit_code_by_key"])
        wanted = [k for k in keys if any(f in k for f in args.all)]
        rest = [k for k in keys if k not in wanted]
        names += wanted + rng.sample(rest, min(args.per_module, len(rest)))
    print(" ".join(names))


if __name__ == "__main__":
    main()
