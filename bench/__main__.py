"""Run benchmarks: every ``bench/*_bench.py`` module's ``main()``, or those named."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    names = argv or sorted(p.stem[:-len("_bench")] for p in here.glob("*_bench.py"))
    status = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}_bench")
        status = module.main([]) or status
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
