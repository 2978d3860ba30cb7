"""Prometheus metrics: requests, DocuSign calls and latency, rate-limit rejections, token refreshes.

With `PROMETHEUS_MULTIPROC_DIR` set (before the process starts) every gunicorn worker
writes its samples there and the exposition sums them all.
"""

from __future__ import annotations

import os
import typing as t

from flask import Flask
from flask import Response
from flask import current_app
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import disable_created_metrics
from prometheus_client import generate_latest
from prometheus_client import multiprocess

from gateway.observability.labels import elapsed_seconds
from gateway.observability.labels import request_labels

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The gateway's Prometheus metrics, in a registry of their own (one per app).

    Labels are bounded: partner names (few), operation names and endpoint names (fixed
    sets), status codes. Never key ids, envelope ids or paths.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter("gateway_requests", "HTTP requests served, by partner, operation "
                                "and status", ["partner", "operation", "status"], registry=reg)
        self.request_seconds = Histogram("gateway_request_duration_seconds", "Time to answer a "
                                         "request, by operation", ["operation"], registry=reg,
                                         buckets=_LATENCY_BUCKETS)
        self.rate_limited = Counter("gateway_rate_limit_rejections", "Requests refused with 429, "
                                    "by partner and operation", ["partner", "operation"], registry=reg)
        self.upstream_calls = Counter("gateway_upstream_calls", "HTTP attempts to DocuSign (retries "
                                      "included), by endpoint and status or failure kind",
                                      ["endpoint", "status"], registry=reg)
        self.upstream_seconds = Histogram("gateway_upstream_duration_seconds", "Time of one HTTP "
                                          "attempt to DocuSign, by endpoint", ["endpoint"],
                                          registry=reg, buckets=_LATENCY_BUCKETS)
        self.token_refreshes = Counter("gateway_upstream_token_refreshes", "DocuSign access token "
                                       "requests (JWT grant), by outcome", ["outcome"], registry=reg)
        self.webhook_deliveries = Counter("gateway_webhook_deliveries", "Partner webhook delivery "
                                          "attempts, by outcome (delivered, retry, failed, held)",
                                          ["outcome"], registry=reg)
        self.webhook_oldest_pending = Gauge("gateway_webhook_oldest_pending_age_seconds", "Age of "
                                            "the oldest pending partner webhook event (set on each "
                                            "sender batch)", registry=reg, multiprocess_mode="max")

    def observe_request(self, *, partner: str, operation: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(partner, operation, str(status)).inc()
        self.request_seconds.labels(operation).observe(seconds)
        if status == 429:
            self.rate_limited.labels(partner, operation).inc()

    def observe_upstream(self, endpoint: str, status: int | str, seconds: float) -> None:
        """`DocuSignClient.on_call`: one HTTP attempt to DocuSign."""
        self.upstream_calls.labels(endpoint, str(status)).inc()
        self.upstream_seconds.labels(endpoint).observe(seconds)
        if endpoint == "token":
            self.token_refreshes.labels("ok" if status == 200 else "failed").inc()

    def exposition(self) -> bytes:
        """The text format: this process's registry, or every worker's when multiprocess."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)


def get_metrics() -> Metrics:
    """The current app's metrics."""
    return t.cast(Metrics, current_app.extensions["metrics"])



def init_app(app: Flask) -> Metrics:
    """A fresh registry for `app` (several apps may share a process, e.g. in tests)."""
    # the *_created series double the output and no dashboard here reads them
    disable_created_metrics()
    app.extensions["metrics"] = metrics = Metrics()
    return metrics


def observe(response: Response) -> Response:
    """Count the request being answered (after-request step)."""
    partner, operation = request_labels()
    get_metrics().observe_request(partner=partner, operation=operation,
                                  status=response.status_code, seconds=elapsed_seconds())
    return response


def record_upstream_call(endpoint: str, status: int | str, seconds: float) -> None:
    """One HTTP attempt to DocuSign, counted in the current app's metrics.

    Needs an app context: a client calling from a thread of its own (the readiness
    probe's) must enter one first, or be given the bound `Metrics.observe_upstream`.
    """
    get_metrics().observe_upstream(endpoint, status, seconds)
