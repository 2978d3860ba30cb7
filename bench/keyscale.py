"""Benchmark 2, key lookup scaling: `.venv/bin/python -m bench.keyscale`.

Two deployments side by side, identical but for the size of the key store: one with 10
partner keys, one with 100,000 (`--keys`). Both are set up with the owner's commands
(`gateway init`, `docusign configure --sandbox`, `partners add bench`); the other keys are
inserted directly with SQLAlchemy Core in batches of 5,000, each a real key from
`keys.generate()` stored as `keys.hash_key()` (the CLI would take minutes for 100,000),
one partner per key. The measured call is `GET /v1/templates` with the bench partner's
key: key check, policy, rate limit and audit row, and no upstream call.

The comparison is paired: one Python client process (`bench.loadgen`) keeps one connection
to each deployment and alternates requests between them, so a burst of other work on a
shared machine hits both stores alike instead of whichever happened to be measured then
(a ratio of two p99s taken minutes apart on a busy machine measures the machine). The
table shows every round and the median of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import typing as t

from bench import harness
from bench import load
from bench.loadgen import percentile
from bench.report import Report
from bench.report import table

BATCH = 5000


def _batches(total: int) -> t.Iterator[range]:
    for start in range(0, total, BATCH):
        yield range(start, min(total, start + BATCH))


def add_keys(gw: harness.Gateway, count: int) -> float:
    """Insert `count` more partners with one key each; seconds taken."""
    from gateway import store
    from gateway.services import partner_keys as keys

    started = time.perf_counter()
    app = harness.app_for(gw)
    with app.app_context():
        for batch in _batches(count):
            now = time.time()
            with store.transaction() as conn:
                conn.execute(store.partners.insert(),
                             [{"name": f"filler-{n:07d}", "created_at": now} for n in batch])
                ids = conn.execute(
                    store.partners.select().with_only_columns(store.partners.c.id)
                    .where(store.partners.c.name.in_([f"filler-{n:07d}" for n in batch]))
                ).scalars().all()
                rows = []
                for partner_id in ids:
                    key_id, key = keys.generate()
                    rows.append({"key_id": key_id, "partner_id": partner_id, "created_at": now,
                                 "secret_hash": keys.hash_key(conn, key)})
                conn.execute(store.api_keys.insert(), rows)
        app.extensions["store"].dispose()
    return time.perf_counter() - started


def _count_keys(gw: harness.Gateway) -> int:
    import sqlalchemy as sa

    from gateway import store

    app = harness.app_for(gw)
    with app.app_context(), store.transaction() as conn:
        total = conn.execute(sa.select(sa.func.count()).select_from(store.api_keys)).scalar_one()
    app.extensions["store"].dispose()
    return int(total)


def lookup_timings(gateways: dict[int, harness.Gateway], calls: int) -> dict[int, list[float]]:
    """`keys.authenticate` alone, in this process, alternating between the stores: microseconds."""
    from gateway import store
    from gateway.services import partner_keys as keys

    apps = {n: harness.app_for(gw) for n, gw in gateways.items()}
    timings: dict[int, list[float]] = {n: [] for n in gateways}
    for i in range(calls + 200):
        for n, app in apps.items():
            with app.app_context(), store.transaction() as conn:
                started = time.perf_counter()
                keys.authenticate(conn, gateways[n].key)
                if i >= 200:  # the first calls warm caches and compile the statement
                    timings[n].append((time.perf_counter() - started) * 1e6)
    for app in apps.values():
        app.extensions["store"].dispose()
    return {n: sorted(v) for n, v in timings.items()}


def _deploy(ws: harness.Workspace, sandbox: str, redis_uri: str | None, total: int,
            args: argparse.Namespace) -> tuple[harness.Gateway, float, int]:
    name = f"keys{total}"
    gw = harness.prepare_gateway(ws, sandbox, name=name, redis_uri=redis_uri, unlimited=True)
    seconds = add_keys(gw, total - 1)
    stored = _count_keys(gw)
    harness.serve_gateway(ws, gw, workers=args.workers, threads=args.threads, name=name)
    return gw, seconds, stored


def run(args: argparse.Namespace) -> Report:
    """Set up both deployments, measure them interleaved, tear down; the report."""
    sizes = (args.small, args.keys)
    setup: dict[int, tuple[float, int]] = {}
    rounds: list[tuple[dict[str, load.Tagged], int]] = []
    seen: list[float] = []
    with harness.workspace() as ws, harness.load_watch(seen):
        sandbox = harness.start_emulator(ws, unlimited=True)
        redis_uri = harness.workers_and_limits(ws, args.workers)
        reqs, gateways = [], {}
        for n in sizes:
            gateways[n], seconds, stored = _deploy(ws, sandbox, redis_uri, n, args)
            setup[n] = (seconds, stored)
            reqs.append(load.Req("GET", "/v1/templates", gateways[n].auth, base_url=gateways[n].url,
                                 tag=str(n)))
        load.run_paired(reqs, duration=1)
        for _ in range(args.rounds):
            rounds.append(load.run_paired(reqs, duration=args.duration))
        lookups = lookup_timings(gateways, args.lookups)
    report = _report(rounds, setup, args)
    _lookup_report(report, lookups, setup, args)
    report.add(harness.load_note(seen))
    return report


def _median(values: t.Iterable[float]) -> float:
    return statistics.median(list(values))


def _report(rounds: list[tuple[dict[str, load.Tagged], int]], setup: dict[int, tuple[float, int]],
            args: argparse.Namespace) -> Report:
    small, large = str(args.small), str(args.keys)
    report = Report(f"Key lookup scaling (GET /v1/templates, {args.workers} worker(s); one Python client "
                    f"connection per deployment, requests alternating between them; {args.rounds} x "
                    f"{args.duration}s)")
    rows = []
    for size in (small, large):
        label = f"{setup[int(size)][1]:,} keys"
        for i, (tags, _) in enumerate(rounds, start=1):
            x = tags[size]
            rows.append((label, f"round {i}", x.requests, x.p50_ms, x.p99_ms, x.p999_ms, x.mean_ms))
        runs = [r[0][size] for r in rounds]
        rows.append((label, "median", _median(x.requests for x in runs), _median(x.p50_ms for x in runs),
                     _median(x.p99_ms for x in runs), _median(x.p999_ms for x in runs),
                     _median(x.mean_ms for x in runs)))
    report.add(table(["store", "run", "requests", "p50 ms", "p99 ms", "p99.9 ms", "mean ms"], rows))
    report.add(f"Inserting {setup[int(large)][1] - 1:,} keys (SQLAlchemy Core, batches of {BATCH:,}) took "
               f"{setup[int(large)][0]:.1f} s.")
    for pct in ("p50", "p99"):
        ratio = (_median(getattr(r[0][large], f"{pct}_ms") for r in rounds)
                 / _median(getattr(r[0][small], f"{pct}_ms") for r in rounds))
        report.check(f"{pct} latency ratio {int(large):,} / {small} keys <= 1.1", f"{ratio:.3f}",
                     ratio <= 1.1)
    errors = sum(e for _, e in rounds)
    report.check("no errors", str(errors), errors == 0)
    return report


def _lookup_report(report: Report, lookups: dict[int, list[float]], setup: dict[int, tuple[float, int]],
                   args: argparse.Namespace) -> None:
    rows = [(f"{setup[n][1]:,} keys", len(v), percentile(v, 50), percentile(v, 99), sum(v) / len(v))
            for n, v in lookups.items()]
    report.add(f"The key check alone (`keys.authenticate`: SELECT by key id + HMAC + compare), "
               f"in-process, {args.lookups:,} calls per store alternating between the stores, "
               "microseconds:\n\n" + table(["store", "calls", "p50 us", "p99 us", "mean us"], rows))
    small, large = lookups[args.small], lookups[args.keys]
    for pct in (50, 99):
        ratio = percentile(large, pct) / percentile(small, pct)
        report.check(f"key check alone: p{pct} ratio {args.keys:,} / {args.small} keys <= 1.1",
                     f"{ratio:.3f}", ratio <= 1.1)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.keyscale", description=__doc__.splitlines()[0])
    harness.common_args(p)
    p.add_argument("--keys", type=int, default=100_000, help="keys in the large store (default 100,000)")
    p.add_argument("--small", type=int, default=10, help="keys in the small store (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per round (default 10)")
    p.add_argument("--lookups", type=int, default=20_000,
                   help="in-process key checks per store (default 20,000)")
    return p


def main(argv: t.Sequence[str] | None = None) -> int:
    return harness.main(run, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
