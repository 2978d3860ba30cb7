"""Where a status read's CPU goes, measured inside the request's own flow.

`.venv/bin/python -m bench.breakdown [--requests 2000]`: the fleet benchmark's deployment
(PostgreSQL schema of its own, a private redis-server, the emulator), the app built in this
process, status reads through Flask's test client. Each step of the read is wrapped in a
timer of the thread's CPU (`time.thread_time`, so waits on PostgreSQL and Redis do not
count, only the work in this process), summed over the reads; the rest is Flask, werkzeug,
the test client and the pipeline's glue. Background jobs are off, so nothing else runs.

A second column times each step alone in a tight loop. A step costs two to three times
more inside the request than alone (the garbage collector is not why: it runs about once in
fifty reads). That is the usual sign of code and data falling out of the CPU's caches when
a request runs thousands of distinct functions: a read costs roughly as much as the code
it runs, so removing a whole layer (flask-limiter's hooks, SQLAlchemy's execution path on
three statements) saved more than its loop-timed cost.
Needs what bench.fleet needs: PostgreSQL on 127.0.0.1 and `redis-server`.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import sys
import time
import typing as t

from bench import fleet
from bench.harness import POLICY
from bench.harness import BenchError
from bench.harness import Gateway
from bench.harness import app_for
from bench.harness import gateway_cli
from bench.harness import gateway_env
from bench.harness import start_emulator
from bench.harness import start_redis
from bench.harness import workspace

#: (label, module[:class], attribute) of each step, patched where the caller looks it up
STEPS = [
    ("key check: lookup + HMAC", "gateway.services.partner_keys", "authenticate"),
    ("rate limit: GCRA script on Redis", "gateway.guards.ratelimit:Gcra", "hit"),
    ("envelope read", "gateway.services.envelopes", "find_owned"),
    ("audit row INSERT", "gateway.services.audit", "record"),
    ("request connection: checkout", "gateway.store", "_request_connection"),
    ("request connection: check-in", "gateway.store", "_close_request_connection"),
    ("access log line", "gateway.web.pipeline", "access_log"),
    ("metrics", "gateway.observability.metrics", "observe"),
    ("JSON answer", "gateway.web.partner", "jsonify"),
]


def _owner(path: str) -> t.Any:
    module, _, cls = path.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


def _wrap(spent: dict[str, float]) -> None:
    for label, path, name in STEPS:
        owner = _owner(path)
        original = getattr(owner, name)

        def timed(*args: t.Any, _f: t.Any = original, _label: str = label, **kw: t.Any) -> t.Any:
            started = time.thread_time()
            try:
                return _f(*args, **kw)
            finally:
                spent[_label] += time.thread_time() - started

        setattr(owner, name, functools.wraps(original)(timed))


def _alone(app: t.Any, gw: Gateway, envelope_id: str, loops: int) -> dict[str, float]:
    """Each step's thread CPU in a tight loop of its own, microseconds per call."""
    from flask import Response

    from gateway import context
    from gateway import store
    from gateway.observability import metrics
    from gateway.services import audit
    from gateway.services import envelopes
    from gateway.services import partner_keys
    from gateway.web import pipeline

    key = gw.key
    with app.test_request_context(f"/v1/envelopes/{envelope_id}"):
        state = context.current()
        state.partner, state.operation, state.request_id = "bench", "status", "r" * 32
        with store.transaction() as conn:
            caller = partner_keys.authenticate(conn, key)
        answer = Response("{}")
        gcra = app.extensions["partner_gcra"]
        calls: dict[str, t.Callable[[], t.Any]] = {
            "key check: lookup + HMAC": lambda: partner_keys.authenticate(conn, key),
            "rate limit: GCRA script on Redis": lambda: gcra.hit("bench-alone", "100000/minute"),
            "envelope read": lambda: envelopes.find_owned(conn, envelope_id, caller.partner_id),
            "audit row INSERT": lambda: audit.record(
                operation="status", partner="bench", envelope_id=envelope_id, status=200,
                code="ok", method="GET", path=f"/v1/envelopes/{envelope_id}", latency_ms=1.0,
                request_id="r" * 32, detail="created/created"),
            "access log line": lambda: pipeline.access_log(answer),
            "metrics": lambda: metrics.observe(answer),
        }
        timings = {}
        for label, call in calls.items():
            for _ in range(100):
                call()
            started = time.thread_time()
            for _ in range(loops):
                call()
            timings[label] = (time.thread_time() - started) * 1e6 / loops
    return timings


def run(args: argparse.Namespace) -> str:
    with workspace() as ws, fleet.pg_schema("pgw-breakdown", "on") as db_url:
        sandbox = start_emulator(ws, unlimited=True)
        redis_uri = start_redis(ws)
        home = ws.root / "gw"
        (home / "policies").mkdir(parents=True)
        (home / "policies" / "bench.toml").write_text(POLICY.format(rate_limit="100000/minute"))
        env = gateway_env(home, redis_uri=redis_uri) | {
            "DATABASE_URL": db_url, "GATEWAY_ACCOUNT_HOURLY_LIMIT": "1000000000",
            "GATEWAY_AUDIT_SEALER": "false", "GATEWAY_WEBHOOK_SENDER": "false"}
        gateway_cli(env, "init")
        gateway_cli(env, "docusign", "configure", "--sandbox", sandbox)
        key = gateway_cli(env, "partners", "add", "bench").strip().splitlines()[-1]
        gw = Gateway(home=home, env=env, key=key, port=0)
        spent = {label: 0.0 for label, _, _ in STEPS}
        _wrap(spent)
        app = app_for(gw)
        client = app.test_client()
        created = client.post("/v1/envelopes", json=fleet.CREATE, headers=gw.auth)
        if created.status_code != 201:
            raise BenchError(f"create failed: {created.status_code}")
        envelope_id = created.get_json()["envelope_id"]
        path = f"/v1/envelopes/{envelope_id}"
        for _ in range(300):
            client.get(path, headers=gw.auth)
        for label in spent:
            spent[label] = 0.0
        started = time.thread_time()
        for _ in range(args.requests):
            if client.get(path, headers=gw.auth).status_code != 200:
                raise BenchError("a status read failed")
        total = (time.thread_time() - started) * 1e6 / args.requests
        alone = _alone(app, gw, envelope_id, args.requests)
    return report(spent, total, alone, args.requests)


def report(spent: dict[str, float], total: float, alone: dict[str, float], n: int) -> str:
    lines = [f"## A status read's CPU, step by step ({n} reads, PostgreSQL + Redis, in-process)",
             "", "| step | µs per read, in the request | share | µs alone, in a loop |",
             "|---|---|---|---|"]
    steps = 0.0
    for label, seconds in spent.items():
        us = seconds * 1e6 / n
        steps += us
        loop = f"{alone[label]:.0f}" if label in alone else ""
        lines.append(f"| {label} | {us:.0f} | {us / total:.0%} | {loop} |")
    rest = total - steps
    lines += [f"| Flask, werkzeug, the test client, the pipeline's glue | {rest:.0f} | "
              f"{rest / total:.0%} | |", f"| **total** | **{total:.0f}** | 100% | |", "",
              f"Load average {os.getloadavg()[0]:.1f}; thread CPU (`time.thread_time`)."]
    return "\n".join(lines)


def main(argv: t.Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.breakdown",
                                description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000)
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
