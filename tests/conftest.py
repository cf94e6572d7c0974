"""For every test: commands of ours build their labs on the host itself (IPSEC_LAB_HOST=1, as
before worlds existed) unless a test says otherwise (tests/lab/test_worlds.py); scripts/test.sh
already runs each group of tests in a world of its own (lab.net.world). `--shard I/N` keeps the
I-th of N shares of the collected tests (every N-th, so each share gets some of every kind)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("IPSEC_LAB_HOST", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--shard", metavar="I/N", default=None,
                     help="run only share I (0..N-1) of N of the collected tests (scripts/test.sh runs N at once)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    text = config.getoption("--shard")
    if not text:
        return
    try:
        index, count = (int(part) for part in text.split("/"))
        if not 0 <= index < count:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"--shard {text}: give I/N with 0 <= I < N, e.g. 0/2") from None
    keep = [item for position, item in enumerate(items) if position % count == index]
    dropped = [item for position, item in enumerate(items) if position % count != index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
