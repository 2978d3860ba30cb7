"""Benchmark 4, memory: `.venv/bin/python -m bench.memory`.

Resident memory (VmRSS from /proc, Linux) of each gunicorn worker of `gateway serve
--workers N` after start-up and a warm-up, then after every `--requests` partner calls (by
default 10,000, twice, so growth shows): a mix of 7 status reads (served from the store),
2 template lists and 1 create (an upstream call) in every 10, sent by the Python load client
(it stops at an exact count) over `--connections` connections. The emulator's DocuSign
limits are lifted so the creates are not refused.
"""

from __future__ import annotations

import argparse
import sys
import typing as t

from bench import harness
from bench import load
from bench.report import Report
from bench.report import table


def _mix(gw: harness.Gateway, envelope_id: str) -> list[load.Req]:
    status = load.Req("GET", f"/v1/envelopes/{envelope_id}", gw.auth)
    templates = load.Req("GET", "/v1/templates", gw.auth)
    create = load.Req("POST", "/v1/envelopes", gw.auth, harness.CREATE_BODY)
    return [status, templates, status, status, create, status, templates, status, status, status]


def _sample(master: int) -> dict[int, float]:
    return {pid: harness.rss_mib(pid) for pid in harness.worker_pids(master)}


def run(args: argparse.Namespace) -> Report:
    """Set up, load in rounds, sample RSS after each, tear down; the report."""
    samples: list[tuple[str, dict[int, float], int]] = []
    seen: list[float] = []
    with harness.workspace() as ws, harness.load_watch(seen):
        sandbox = harness.start_emulator(ws, unlimited=True)
        redis_uri = harness.workers_and_limits(ws, args.workers)
        gw = harness.prepare_gateway(ws, sandbox, redis_uri=redis_uri, unlimited=True)
        harness.serve_gateway(ws, gw, workers=args.workers, threads=args.threads)
        master = ws.procs["gateway"].pid
        mix = _mix(gw, harness.create_envelope(gw))
        warm = load.run_count(gw.url, mix, connections=args.connections, count=200)
        samples.append(("after warm-up (200 requests)", _sample(master), warm.errors))
        for n in range(1, args.rounds + 1):
            done = load.run_count(gw.url, mix, connections=args.connections, count=args.requests)
            samples.append((f"after {n * args.requests:,} requests", _sample(master), done.errors))
        master_rss = harness.rss_mib(master)
    report = _report(samples, master_rss, args)
    report.add(harness.load_note(seen))
    return report


def _report(samples: list[tuple[str, dict[int, float], int]], master_rss: float,
            args: argparse.Namespace) -> Report:
    report = Report(f"Memory ({args.workers} worker(s) x {args.threads} threads, RSS in MiB)")
    pids = sorted(samples[0][1])
    rows = []
    for label, rss, errors in samples:
        values = [rss.get(pid, float("nan")) for pid in pids]
        rows.append((label, *values, max(values), errors))
    report.add(table(["when", *(f"worker {i}" for i in range(1, len(pids) + 1)), "max per worker",
                      "errors"], rows))
    first, after = samples[0][1], samples[1][1]
    growth = max(after.get(pid, 0.0) - first[pid] for pid in pids)
    report.add(f"gunicorn master: {master_rss:.1f} MiB. Largest growth of one worker over the first "
               f"{args.requests:,} requests: {growth:.1f} MiB.")
    same = set(samples[-1][1]) == set(pids)
    report.check("workers survive the run (no restart)", "same pids" if same else "pids changed", same)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    harness.common_args(p, workers=2)
    p.add_argument("--requests", type=int, default=10_000, help="requests per round (default 10,000)")
    p.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    p.add_argument("--connections", type=int, default=8, help="connections (default 8)")
    return p


def main(argv: t.Sequence[str] | None = None) -> int:
    return harness.main(run, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
