"""Benchmark 2, key lookup scaling: `.venv/bin/python -m bench.keyscale`.

Two deployments side by side, identical but for the size of the key store: one with 10
partner keys, one with 100,000 (`--keys`). Both are set up with the owner's commands
(`gateway init`, `docusign configure --sandbox`, `partners add bench`); the other keys are
inserted directly with SQLAlchemy Core in batches of 5,000, each a real key from
`keys.generate()` stored as `keys.hash_key()` (the CLI would take minutes for 100,000),
one partner per key. The measured call is `GET /v1/templates` with the bench partner's
key: key check, policy, rate limit and audit row, and no upstream call. Rounds alternate
between the two deployments so drift on a shared machine hits both alike; the table shows
every round and the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import typing as t

from bench import harness
from bench import load
from bench.report import Report
from bench.report import table

BATCH = 5000


def _batches(total: int) -> t.Iterator[range]:
    for start in range(0, total, BATCH):
        yield range(start, min(total, start + BATCH))


def add_keys(gw: harness.Gateway, count: int) -> float:
    """Insert `count` more partners with one key each; seconds taken."""
    from gateway import keys
    from gateway import store

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


def _deploy(ws: harness.Workspace, sandbox: str, redis_uri: str | None, total: int,
            args: argparse.Namespace) -> tuple[harness.Gateway, float, int]:
    name = f"keys{total}"
    gw = harness.prepare_gateway(ws, sandbox, name=name, redis_uri=redis_uri)
    seconds = add_keys(gw, total - 1)
    stored = _count_keys(gw)
    harness.serve_gateway(ws, gw, workers=args.workers, threads=args.threads, name=name)
    return gw, seconds, stored


def run(args: argparse.Namespace) -> Report:
    """Set up both deployments, alternate rounds, tear down; the report."""
    sizes = (args.small, args.keys)
    results: dict[int, list[load.Result]] = {n: [] for n in sizes}
    setup: dict[int, tuple[float, int]] = {}
    seen: list[float] = []
    with harness.workspace() as ws, harness.load_watch(seen):
        sandbox = harness.start_emulator(ws, unlimited=True)
        redis_uri = harness.workers_and_limits(ws, args.workers)
        gateways = {}
        for n in sizes:
            gw, seconds, stored = _deploy(ws, sandbox, redis_uri, n, args)
            gateways[n], setup[n] = gw, (seconds, stored)
        for gw in gateways.values():
            load.run(gw.url, [load.Req("GET", "/v1/templates", gw.auth)], connections=1, duration=1,
                     client=args.client)
        for _ in range(args.rounds):
            for n, gw in gateways.items():
                results[n].append(load.run(gw.url, [load.Req("GET", "/v1/templates", gw.auth)],
                                           connections=1, duration=args.duration, client=args.client))
    report = _report(results, setup, args)
    report.add(harness.load_note(seen))
    return report


def _median(values: t.Iterable[float]) -> float:
    return statistics.median(list(values))


def _report(results: dict[int, list[load.Result]], setup: dict[int, tuple[float, int]],
            args: argparse.Namespace) -> Report:
    small, large = args.small, args.keys
    client = results[small][0].client
    report = Report(f"Key lookup scaling (GET /v1/templates, 1 connection, {args.workers} worker(s), "
                    f"client {client}, {args.rounds} x {args.duration}s per deployment)")
    rows = []
    for n, runs in results.items():
        for i, r in enumerate(runs, start=1):
            rows.append((f"{setup[n][1]:,} keys", f"round {i}", r.p50_ms, r.p99_ms, r.rps, r.errors))
        rows.append((f"{setup[n][1]:,} keys", "median", _median(r.p50_ms for r in runs),
                     _median(r.p99_ms for r in runs), _median(r.rps for r in runs),
                     sum(r.errors for r in runs)))
    report.add(table(["store", "run", "p50 ms", "p99 ms", "req/s", "errors"], rows))
    report.add(f"Inserting {setup[large][1] - 1:,} keys (SQLAlchemy Core, batches of {BATCH:,}) took "
               f"{setup[large][0]:.1f} s.")
    p50 = _median(r.p50_ms for r in results[large]) / _median(r.p50_ms for r in results[small])
    p99 = _median(r.p99_ms for r in results[large]) / _median(r.p99_ms for r in results[small])
    report.check(f"p50 latency ratio {large:,} / {small} keys <= 1.1", f"{p50:.3f}", p50 <= 1.1)
    report.check(f"p99 latency ratio {large:,} / {small} keys <= 1.1", f"{p99:.3f}", p99 <= 1.1)
    return report


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.keyscale", description=__doc__.splitlines()[0])
    harness.common_args(p)
    p.add_argument("--keys", type=int, default=100_000, help="keys in the large store (default 100,000)")
    p.add_argument("--small", type=int, default=10, help="keys in the small store (default 10)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per round (default 5)")
    return p


def main(argv: t.Sequence[str] | None = None) -> int:
    report = run(parser().parse_args(argv))
    print(report.markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
