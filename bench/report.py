"""Markdown tables and target checks shared by the benchmarks."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field


def table(headers: t.Sequence[str], rows: t.Iterable[t.Sequence[t.Any]]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned."""
    body = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(headers)]
    numeric = [bool(body) and all(_is_number(r[i]) for r in body) for i in range(len(headers))]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"]
    lines.append("|" + "|".join(("-" * (w + 1)) + (":" if n else "-")
                               for w, n in zip(widths, numeric, strict=True)) + "|")
    for row in body:
        cells = [c.rjust(w) if n else c.ljust(w) for c, w, n in zip(row, widths, numeric, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: t.Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Check:
    """One target of the issue: what it asks, what was measured, and whether it held."""

    target: str
    measured: str
    met: bool


@dataclass
class Report:
    """A benchmark's output: a title, its tables and notes, and its target checks."""

    title: str
    sections: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.sections.append(text)

    def check(self, target: str, measured: str, met: bool) -> None:
        self.checks.append(Check(target, measured, met))

    def markdown(self) -> str:
        parts = [f"### {self.title}", *self.sections]
        if self.checks:
            parts.append(table(["target", "measured", "met"],
                               [(c.target, c.measured, "yes" if c.met else "**no**")
                                for c in self.checks]))
        return "\n\n".join(parts) + "\n"
