"""Issue 16 findings 13 and 14: a database or Redis outage is a 503 problem+json with
Retry-After and one log line per request, before, during and after the view; a keyed create
that committed upstream just before the database went makes one envelope on retry.

Each test starts its own PostgreSQL or Redis (tests/security/throwaway.py) and stops it.
"""

from __future__ import annotations

import logging
import time
import typing as t
from pathlib import Path

import pytest

from gateway.upstream import client as upstream_client
from tests.conftest import PartnerActions
from tests.conftest import SandboxControl
from tests.conftest import add_partner
from tests.conftest import make_gateway
from tests.security.throwaway import ThrowawayPostgres
from tests.security.throwaway import ThrowawayRedis


@pytest.fixture
def postgres() -> t.Iterator[ThrowawayPostgres]:
    pg = ThrowawayPostgres()
    pg.start()
    yield pg
    pg.remove()


@pytest.fixture
def pg_partner(tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str,
               postgres: ThrowawayPostgres) -> t.Iterator[t.Callable[..., PartnerActions]]:
    """A gateway on the throwaway PostgreSQL, and its partner `example`."""
    from gateway import store

    apps = []

    def make(**config: t.Any) -> PartnerActions:
        app = make_gateway(tmp_path, sandbox.url, rsa_private_pem, DATABASE_URL=postgres.url,
                           **config)
        apps.append(app)
        return PartnerActions(app.test_client(), "example", add_partner(app, "example"))

    yield make
    for app in apps:
        with app.app_context():
            store.get_engine().dispose()  # its connections, dead or alive, closed here


@pytest.fixture
def redis_server() -> t.Iterator[ThrowawayRedis]:
    server = ThrowawayRedis()
    server.start()
    yield server
    server.stop()


def unavailable(resp: t.Any, code: str) -> dict[str, t.Any]:
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.mimetype == "application/problem+json"
    assert int(resp.headers["Retry-After"]) > 0
    body = resp.get_json()
    assert body["code"] == code
    assert "Traceback" not in resp.get_data(as_text=True)
    return t.cast(dict[str, t.Any], body)


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The outage's log lines: each one line, none with a traceback."""
    lines = []
    for record in caplog.records:
        # another test's leftover background thread is not this request's business
        if record.name.startswith("gateway.services.webhook_sender"):
            continue
        if record.levelno >= logging.ERROR:
            assert record.exc_info is None, record.getMessage()
            assert "\n" not in record.getMessage()
            lines.append(record.getMessage())
    return lines


def test_database_outage_is_503_then_recovers(pg_partner: t.Callable[..., PartnerActions],
                                              postgres: ThrowawayPostgres,
                                              caplog: pytest.LogCaptureFixture) -> None:
    partner = pg_partner()
    env_id = partner.create().get_json()["envelope_id"]
    assert partner.status(env_id).status_code == 200  # a pooled connection now exists
    postgres.stop()
    caplog.clear()
    for call in (lambda: partner.status(env_id), partner.create, lambda: partner.view(env_id)):
        unavailable(call(), "database_unavailable")
    lines = no_tracebacks(caplog)
    assert any(line.startswith("database unavailable: ") for line in lines), lines
    postgres.start()
    assert partner.status(env_id).status_code == 200


def test_keyed_create_committed_upstream_before_the_outage_makes_one_envelope(
        pg_partner: t.Callable[..., PartnerActions], sandbox: SandboxControl,
        postgres: ThrowawayPostgres, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    partner = pg_partner(IDEMPOTENCY_LEASE=1.0, IDEMPOTENCY_WAIT=0.1)
    real_create = upstream_client.DocuSignClient.create_envelope

    def create_then_outage(self: t.Any, *args: t.Any, **kw: t.Any) -> t.Any:
        made = real_create(self, *args, **kw)
        postgres.stop()  # DocuSign made it; the gateway cannot write it down
        return made

    monkeypatch.setattr(upstream_client.DocuSignClient, "create_envelope", create_then_outage)
    first = partner.create(headers={"Idempotency-Key": "order-9"})
    unavailable(first, "database_unavailable")
    no_tracebacks(caplog)
    monkeypatch.undo()
    postgres.start()
    retry = first
    for _ in range(20):  # the partner retries as told until the abandoned claim is reconciled
        time.sleep(float(retry.headers.get("Retry-After", "1")))
        retry = partner.create(headers={"Idempotency-Key": "order-9"})
        if retry.status_code == 201:
            break
        assert retry.status_code in (409, 503), retry.get_json()
    assert retry.status_code == 201, retry.get_json()
    assert sandbox.calls()["create_envelope"] == 1
    again = partner.create(headers={"Idempotency-Key": "order-9"})
    assert again.get_json()["envelope_id"] == retry.get_json()["envelope_id"]
    assert sandbox.calls()["create_envelope"] == 1


def redis_gateway(tmp_path: Path, sandbox: SandboxControl, pem: str,
                  redis_server: ThrowawayRedis) -> tuple[t.Any, PartnerActions]:
    app = make_gateway(tmp_path, sandbox.url, pem, RATELIMIT_STORAGE_URI=redis_server.url)
    return app, PartnerActions(app.test_client(), "example", add_partner(app, "example"))


def test_redis_down_before_the_view(tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str,
                                    redis_server: ThrowawayRedis,
                                    caplog: pytest.LogCaptureFixture) -> None:
    _, partner = redis_gateway(tmp_path, sandbox, rsa_private_pem, redis_server)
    env_id = partner.create().get_json()["envelope_id"]
    redis_server.stop()
    caplog.clear()
    unavailable(partner.status(env_id), "rate_limit_unavailable")
    unavailable(partner.client.get("/v1/return/x?event=cancel"), "rate_limit_unavailable")
    assert no_tracebacks(caplog)
    redis_server.start()
    assert partner.status(env_id).status_code == 200


def test_redis_down_during_the_view(tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str,
                                    redis_server: ThrowawayRedis, monkeypatch: pytest.MonkeyPatch,
                                    caplog: pytest.LogCaptureFixture) -> None:
    _, partner = redis_gateway(tmp_path, sandbox, rsa_private_pem, redis_server)
    real_create = upstream_client.DocuSignClient.create_envelope

    def outage_then_create(self: t.Any, *args: t.Any, **kw: t.Any) -> t.Any:
        redis_server.stop()  # the account budget asks Redis before DocuSign is called
        return real_create(self, *args, **kw)

    monkeypatch.setattr(upstream_client.DocuSignClient, "create_envelope", outage_then_create)
    caplog.clear()
    unavailable(partner.create(), "rate_limit_unavailable")
    assert no_tracebacks(caplog)
    assert sandbox.calls().get("create_envelope", 0) == 0


def test_redis_down_after_the_view_keeps_the_answer(
        tmp_path: Path, sandbox: SandboxControl, rsa_private_pem: str,
        redis_server: ThrowawayRedis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from gateway.web import partner as partner_views

    _, partner = redis_gateway(tmp_path, sandbox, rsa_private_pem, redis_server)
    env_id = partner.create().get_json()["envelope_id"]
    real_refresh = partner_views.status_reads.refresh

    def refresh_then_outage(*args: t.Any, **kw: t.Any) -> t.Any:
        answer = real_refresh(*args, **kw)
        redis_server.stop()  # the limit was checked; the RateLimit headers are still to come
        return answer

    monkeypatch.setattr(partner_views.status_reads, "refresh", refresh_then_outage)
    caplog.clear()
    resp = partner.status(env_id)
    # the answer was decided before the outage: it goes out, with the RateLimit headers
    # of the partner limit's own hit (no second read of the storage after the view)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["envelope_id"] == env_id
    assert int(resp.headers["X-RateLimit-Remaining"]) < int(resp.headers["X-RateLimit-Limit"])
    no_tracebacks(caplog)
