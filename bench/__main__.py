"""`python -m bench [NAME ...]`: run every benchmark module, or the named ones."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.endswith("_bench"))
    wanted = [a for a in argv if not a.startswith("-")]
    selected = [n for n in names if not wanted or n in wanted or n.removesuffix("_bench") in wanted]
    options = [a for a in argv if a.startswith("-")]
    for name in selected:
        print(f"\n## {name}\n", flush=True)
        importlib.import_module(f"bench.{name}").main(options)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
