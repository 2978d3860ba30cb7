"""All four benchmarks in one go: `.venv/bin/python -m bench` (or `-m bench.run_all`).

Runs overhead, key scaling, upstream economy and memory with their default settings, one
after the other, prints each table as it completes and writes everything, with the machine
and the commands, to `bench/results/latest.md` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import typing as t
from pathlib import Path

from bench import economy
from bench import harness
from bench import keyscale
from bench import memory
from bench import overhead
from bench.load import client_name

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS: dict[str, t.Any] = {
    "overhead": overhead,
    "keyscale": keyscale,
    "economy": economy,
    "memory": memory,
}


def header(client: str) -> str:
    m = harness.machine()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f"## Benchmark results ({when})\n\n"
            f"Machine: {m['cpus']} CPUs ({m['cpu']}), Python {m['python']} on {m['platform']}; "
            f"load client: {client}. Everything on loopback on this one machine: load client, "
            "gateway, emulator (and Redis when there is more than one worker) share the CPUs.\n\n"
            "Commands: " + ", ".join(f"`.venv/bin/python -m bench.{name}`" for name in BENCHMARKS)
            + "; all four: `.venv/bin/python -m bench`.\n")


def main(argv: t.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = p.parse_args(argv)
    names = args.only or list(BENCHMARKS)
    parts = [header(client_name(args.client))]
    print(parts[0], flush=True)
    for name in names:
        module = BENCHMARKS[name]
        started = time.monotonic()
        report = module.run(module.parser().parse_args(["--client", args.client]))
        text = report.markdown() + f"\n({name}: {time.monotonic() - started:.0f} s)\n"
        print(text, flush=True)
        parts.append(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.md").write_text("\n".join(parts))
    print(f"written to {RESULTS / 'latest.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
