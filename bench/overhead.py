"""Benchmark 1, gateway overhead: `.venv/bin/python -m bench.overhead`.

Five targets, all under gunicorn-or-emulator on loopback, measured in the same run by a
load client in its own process:

- `GET /v1/envelopes/{id}` through the gateway (served from the gateway's store);
- the same path on a bare Flask no-op route (`bench.bare`, same gunicorn workers/threads);
- the same read made directly to the emulator (`GET .../envelopes/{id}` with a token);
- `POST /v1/envelopes` through the gateway (which creates the envelope on the emulator);
- the same create made directly to the emulator.

Each target gets a one-second warm-up; then `--rounds` rounds visit every target in turn
with `--duration` seconds at one connection (per-request latency, no queueing: the
latency targets are judged on these) and `--duration` seconds at `--connections`
connections (throughput, and latency under load). The table shows per-target medians
over the rounds, so drift on a shared machine hits every target alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import typing as t
from dataclasses import dataclass

from bench import harness
from bench import load
from bench.direct import DirectDocuSign
from bench.report import Report
from bench.report import table


@dataclass(frozen=True)
class Target:
    name: str
    base_url: str
    reqs: list[load.Req]


@dataclass(frozen=True)
class Measured:
    single: load.Result
    loaded: load.Result


def _targets(ws: harness.Workspace, args: argparse.Namespace) -> list[Target]:
    """Start the emulator, the gateway and the bare app; the five targets."""
    sandbox = harness.start_emulator(ws, unlimited=True)
    redis_uri = harness.workers_and_limits(ws, args.workers)
    gw = harness.prepare_gateway(ws, sandbox, redis_uri=redis_uri, unlimited=True)
    harness.serve_gateway(ws, gw, workers=args.workers, threads=args.threads)
    bare = harness.serve_bare(ws, workers=args.workers, threads=args.threads)
    envelope_id = harness.create_envelope(gw)
    direct = DirectDocuSign(sandbox)
    token = {"Authorization": f"Bearer {direct.token()}"}
    direct_path = f"{direct.account_path}/envelopes"
    path = f"/v1/envelopes/{envelope_id}"
    return [
        Target("status read via gateway", gw.url, [load.Req("GET", path, gw.auth)]),
        Target("bare Flask no-op route", bare, [load.Req("GET", path)]),
        Target("status read direct to emulator", sandbox,
               [load.Req("GET", f"{direct_path}/{envelope_id}", token)]),
        Target("create via gateway", gw.url,
               [load.Req("POST", "/v1/envelopes", gw.auth, harness.CREATE_BODY)]),
        Target("create direct to emulator", sandbox,
               [load.Req("POST", direct_path, token, direct.create_body())]),
    ]


def _median(results: list[load.Result]) -> load.Result:
    """The run with the median p50, its p99 and throughput the medians of all runs."""
    return load.Result(
        requests=int(statistics.median(r.requests for r in results)),
        seconds=statistics.median(r.seconds for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        errors=sum(r.errors for r in results),
        client=results[0].client,
    )


def _measure(targets: list[Target], args: argparse.Namespace) -> dict[str, Measured]:
    """Rounds that visit every target in turn, so drift hits all alike; medians per target."""
    for target in targets:
        load.run(target.base_url, target.reqs, connections=args.connections, duration=1,
                 client=args.client)
    single: dict[str, list[load.Result]] = {t.name: [] for t in targets}
    loaded: dict[str, list[load.Result]] = {t.name: [] for t in targets}
    for _ in range(args.rounds):
        for target in targets:
            single[target.name].append(load.run(target.base_url, target.reqs, connections=1,
                                                duration=args.duration, client=args.client))
            loaded[target.name].append(load.run(target.base_url, target.reqs,
                                                connections=args.connections,
                                                duration=args.duration, client=args.client))
    return {name: Measured(_median(single[name]), _median(loaded[name])) for name in single}


def _report(m: dict[str, Measured], args: argparse.Namespace, seen: list[float]) -> Report:
    client = next(iter(m.values())).single.client
    report = Report(f"Overhead ({args.workers} worker(s) x {args.threads} threads, client {client}, "
                    f"median of {args.rounds} rounds x {args.duration}s per target and phase)")
    c = args.connections
    report.add(table(
        ["target", "p50 ms @1", "p99 ms @1", f"req/s @{c}", f"p50 ms @{c}", f"p99 ms @{c}", "errors"],
        [(name, x.single.p50_ms, x.single.p99_ms, x.loaded.rps, x.loaded.p50_ms, x.loaded.p99_ms,
          x.single.errors + x.loaded.errors) for name, x in m.items()],
    ))
    read, bare = m["status read via gateway"], m["bare Flask no-op route"]
    create, direct = m["create via gateway"], m["create direct to emulator"]
    rows = [
        ("status read: gateway - bare route", read, bare),
        ("status read: gateway - direct emulator read", read, m["status read direct to emulator"]),
        ("create: gateway - direct emulator create", create, direct),
    ]
    report.add(table(
        ["added by the gateway", "p50 ms @1", "p99 ms @1", f"p50 ms @{c}", f"p99 ms @{c}"],
        [(label, a.single.p50_ms - b.single.p50_ms, a.single.p99_ms - b.single.p99_ms,
          a.loaded.p50_ms - b.loaded.p50_ms, a.loaded.p99_ms - b.loaded.p99_ms)
         for label, a, b in rows],
    ))
    for label, a, b in (rows[0], rows[2]):
        p50 = a.single.p50_ms - b.single.p50_ms
        p99 = a.single.p99_ms - b.single.p99_ms
        report.check(f"{label}: added p50 <= 1 ms @1", f"{p50:.2f} ms", p50 <= 1.0)
        report.check(f"{label}: added p99 <= 3 ms @1", f"{p99:.2f} ms", p99 <= 3.0)
    ratio = read.loaded.rps / bare.loaded.rps if bare.loaded.rps else 0.0
    report.check(f"status read req/s >= 0.5 x bare route @{c}",
                 f"{read.loaded.rps:,.0f} / {bare.loaded.rps:,.0f} = {ratio:.2f}", ratio >= 0.5)
    errors = sum(x.single.errors + x.loaded.errors for x in m.values())
    report.check("no errors", str(errors), errors == 0)
    report.add(harness.load_note(seen))
    return report


def run(args: argparse.Namespace) -> Report:
    """Set up, measure, tear down; the report."""
    seen: list[float] = []
    with harness.workspace() as ws, harness.load_watch(seen):
        targets = _targets(ws, args)
        measured = _measure(targets, args)
    return _report(measured, args, seen)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.splitlines()[0])
    harness.common_args(p)
    p.add_argument("--duration", type=int, default=3, help="seconds per target, phase and round (default 3)")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all targets (default 3)")
    p.add_argument("--connections", type=int, default=16,
                   help="connections for the throughput phase (default 16)")
    return p


def main(argv: t.Sequence[str] | None = None) -> int:
    return harness.main(run, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
