"""What the reliability tests count (cut points, kills, fuzz examples), for the run's summary.

A test module takes its counter with ``counter("faults")`` and adds to it;
tests/conftest.py prints every group at the end of the run
(``pytest_terminal_summary``) and, for a full run of scripts/test, writes
them with the durations of the slow tests to ``.test-counters.json``, from
which ``scripts/reliability-figures`` regenerates the figures in
docs/RELIABILITY.md.
"""

from __future__ import annotations

from collections import Counter

GROUPS: dict[str, Counter[str]] = {}
DURATIONS: dict[str, float] = {}  # test node id -> seconds, for tests that counted something


def counter(group: str) -> Counter[str]:
    """The named group's counter (created on first use)."""
    return GROUPS.setdefault(group, Counter())
