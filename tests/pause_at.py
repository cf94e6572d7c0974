"""`python tests/pause_at.py MODULE:NAME[.NAME] ARGS...` runs `ipsec-lab ARGS` (lab.cli.main, what
the ipsec-lab command runs) with one function made to pause when first called: it prints
PAUSED on stderr and sleeps, so a test sends its signal mid-work, at a known point."""
from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def pause_at(target: str) -> None:
    module_name, _, attributes = target.partition(":")
    owner = importlib.import_module(module_name)
    *path, name = attributes.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    paused = []

    def wrapper(*args, **kwargs):
        if not paused:
            paused.append(True)
            print("PAUSED", file=sys.stderr, flush=True)
            time.sleep(120)
        return original(*args, **kwargs)

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    pause_at(sys.argv[1])
    from lab.cli import main

    sys.exit(main(sys.argv[2:]))
