"""`python -m bench.loadgen SPEC.json`: a small closed-loop HTTP load client in its own process.

The fallback when `wrk` is not installed, the client for exact request counts (the memory
benchmark) and for paired comparisons (key scaling). Each of `connections` threads keeps
one HTTP/1.1 keep-alive connection per server and sends the spec's requests round-robin
until `duration` seconds pass or `count` requests have been sent in all. A request may name
its own `base_url` and a `tag`: requests to two servers interleaved on one thread see the
same machine noise, and each tag gets its own percentiles. Prints one JSON object:
requests, seconds, p50/p99 in ms, errors (4xx/5xx answers and socket errors), and per tag
requests, p50, p99, p99.9 and mean.
"""

from __future__ import annotations

import http.client
import itertools
import json
import sys
import threading
import time
import typing as t
from urllib.parse import urlsplit


def percentile(sorted_ms: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not sorted_ms:
        return 0.0
    rank = max(1, min(len(sorted_ms), round(pct / 100 * len(sorted_ms) + 0.5)))
    return sorted_ms[rank - 1]


class _Worker(threading.Thread):
    def __init__(self, spec: dict[str, t.Any], ticket: t.Iterator[int], stop_at: float) -> None:
        super().__init__(daemon=True)
        self.spec = spec
        self.ticket = ticket
        self.stop_at = stop_at
        self.latencies: dict[str, list[float]] = {}
        self.errors = 0
        self.conns: dict[str, http.client.HTTPConnection] = {}

    def _conn(self, base_url: str, *, fresh: bool = False) -> http.client.HTTPConnection:
        if fresh and base_url in self.conns:
            self.conns.pop(base_url).close()
        if base_url not in self.conns:
            url = urlsplit(base_url)
            self.conns[base_url] = http.client.HTTPConnection(url.hostname or "127.0.0.1",
                                                              url.port or 80, timeout=30)
        return self.conns[base_url]

    def _one(self, req: dict[str, t.Any]) -> None:
        base = req.get("base_url") or self.spec["base_url"]
        body = req.get("body")
        conn = self._conn(base)
        started = time.perf_counter()
        try:
            conn.request(req["method"], req["path"], body=body.encode() if body else None,
                         headers=req.get("headers", {}))
            resp = conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.errors += 1
            self._conn(base, fresh=True)
            return
        self.latencies.setdefault(req.get("tag") or "all", []).append(
            (time.perf_counter() - started) * 1000)
        if resp.status >= 400:
            self.errors += 1

    def run(self) -> None:
        reqs = self.spec["requests"]
        count = self.spec.get("count") or 0
        while time.perf_counter() < self.stop_at:
            n = next(self.ticket)
            if count and n >= count:
                break
            self._one(reqs[n % len(reqs)])
        for conn in self.conns.values():
            conn.close()


def run(spec: dict[str, t.Any]) -> dict[str, t.Any]:
    """Drive the load described by `spec`; the summary."""
    duration = float(spec.get("duration") or 3600)
    started = time.perf_counter()
    ticket = itertools.count()
    workers = [_Worker(spec, ticket, started + duration) for _ in range(int(spec["connections"]))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    tags = sorted({tag for w in workers for tag in w.latencies})
    by_tag = {tag: sorted(itertools.chain.from_iterable(w.latencies.get(tag, []) for w in workers))
              for tag in tags}
    latencies = sorted(itertools.chain.from_iterable(by_tag.values()))
    return {
        "requests": len(latencies),
        "seconds": seconds,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "errors": sum(w.errors for w in workers),
        "tags": {tag: {"requests": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99),
                       "p999_ms": percentile(v, 99.9), "mean_ms": sum(v) / len(v)}
                 for tag, v in by_tag.items()},
    }


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    with open(args[0]) as fh:
        spec = json.load(fh)
    print(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
