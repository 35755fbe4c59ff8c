"""Run benchmarks: every ``bench/*_bench.py`` module's ``main()``, or those named.

    python -m bench                  all of them
    python -m bench agi archiver     these
    python -m bench catalog --rows N one, with its options
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    known = sorted(p.stem[:-len("_bench")] for p in here.glob("*_bench.py"))
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip() + f"\n\nbenchmarks: {', '.join(known)}")
        return 0
    if len(argv) > 1 and argv[0] in known and argv[1].startswith("-"):  # one benchmark, its options
        return importlib.import_module(f"bench.{argv[0]}_bench").main(argv[1:]) or 0
    unknown = [a for a in argv if a not in known]
    if unknown:
        print(f"python -m bench: no benchmark {', '.join(map(repr, unknown))} (known: {', '.join(known)})",
              file=sys.stderr)
        return 2
    status = 0
    for name in argv or known:
        module = importlib.import_module(f"bench.{name}_bench")
        status = module.main([]) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
