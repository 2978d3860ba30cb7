"""Prometheus metrics: requests, upstream calls, rate limits, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import typing as t

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.conftest import PartnerActions
from tests.conftest import add_partner


def samples(client: t.Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics as {(name, labels): value}."""
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(metrics: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)



# --- metrics ----------------------------------------------------------------------------


def test_metrics_count_requests_upstream_calls_and_token_refreshes(partner, client):
    created = partner.create()
    assert created.status_code == 201
    envelope_id = created.json["envelope_id"]
    assert partner.status(envelope_id).status_code == 200
    assert partner.status("no-such-envelope").status_code == 404
    assert client.get("/v1/templates", headers={"Authorization": "Bearer pgw_nope"}).status_code == 401
    m = samples(client)
    assert value(m, "gateway_requests_total", partner="example", operation="create_draft",
                 status="201") == 1
    assert value(m, "gateway_requests_total", partner="example", operation="status", status="200") == 1
    assert value(m, "gateway_requests_total", partner="example", operation="status", status="404") == 1
    assert value(m, "gateway_requests_total", partner="", operation="list_templates", status="401") == 1
    assert value(m, "gateway_upstream_calls_total", endpoint="create_envelope", status="201") == 1
    assert value(m, "gateway_upstream_duration_seconds_count", endpoint="create_envelope") == 1
    assert value(m, "gateway_upstream_token_refreshes_total", outcome="ok") == 1
    assert value(m, "gateway_request_duration_seconds_count", operation="create_draft") == 1
    text = client.get("/metrics").get_data(as_text=True)
    # unbounded values never become labels
    assert envelope_id not in text
    assert partner.key.split("_")[1] not in text


def test_metrics_count_rate_limit_rejections(app, client):
    viewer = PartnerActions(client, "viewer", add_partner(app, "viewer"))
    statuses = [viewer.status("x").status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    m = samples(client)
    assert value(m, "gateway_rate_limit_rejections_total", partner="viewer", operation="status") == 1
    assert value(m, "gateway_requests_total", partner="viewer", operation="status", status="429") == 1


def test_metrics_count_failed_upstream_attempts(partner, client, sandbox):
    sandbox.fault(endpoint="create_envelope", status=500, count=1)
    assert partner.create().status_code == 502
    m = samples(client)
    assert value(m, "gateway_upstream_calls_total", endpoint="create_envelope", status="500") == 1


_WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])
    from gateway import create_app
    app = create_app({"TESTING": True, "DATABASE_URL": "sqlite://", "POLICY_DIR": sys.argv[2],
                      "MASTER_KEY": sys.argv[3]})
    client = app.test_client()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
""")


def test_metrics_add_up_across_worker_processes(tmp_path, client, monkeypatch):
    from cryptography.fernet import Fernet

    shared = tmp_path / "prom"
    shared.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"PROMETHEUS_MULTIPROC_DIR": str(shared), "GATEWAY_INSTANCE_PATH": str(tmp_path / "inst")}
    args = [sys.executable, "-c", _WORKER, str(ROOT), str(tmp_path), Fernet.generate_key().decode()]
    workers = [subprocess.Popen(args, env=env, stderr=subprocess.PIPE) for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-2000:]
    # any worker answering /metrics reads every worker's files
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    m = samples(client)
    assert value(m, "gateway_requests_total", partner="", operation="healthz", status="200") == 6
