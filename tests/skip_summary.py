"""A pytest plugin for `make test`: the run's very last line says how many tests were skipped and why.

Loaded with `-p tests.skip_summary`. pytest's own "N passed, M skipped" line names no
reasons, and its `-ra` list can scroll away; this one line comes after both.
"""

from __future__ import annotations

import typing as t
from collections import Counter

import pytest

REASON_WIDTH = 90


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    text = text.removeprefix("Skipped: ").splitlines()[0] if text else "no reason given"
    return text if len(text) <= REASON_WIDTH else text[:REASON_WIDTH - 1] + "…"


class SkipSummary:
    def __init__(self) -> None:
        self.reasons: Counter[str] = Counter()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and not hasattr(report, "wasxfail"):
            self.reasons[_reason(report)] += 1

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self) -> t.Generator[None, None, None]:
        yield  # after the terminal reporter's "N passed, M skipped in ..." line
        print(self.line(), flush=True)

    def line(self) -> str:
        total = sum(self.reasons.values())
        if not total:
            return "0 skipped: every collected test ran."
        parts = [f"{reason} ({count})" for reason, count in self.reasons.most_common()]
        return f"{total} skipped: " + "; ".join(parts)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(SkipSummary(), "skip-summary")
