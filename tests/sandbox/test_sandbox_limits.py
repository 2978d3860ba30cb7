"""Rate-limit headers, hourly / burst / polling limits, injected faults, call counts."""

from __future__ import annotations

import time

import pytest

from sandbox import constants as c
from sandbox.limits import ConnectionDropped

MISSING = "00000000-0000-0000-0000-000000000000"


def limit_error(resp, code):
    assert resp.status_code == c.RATE_LIMIT_STATUS, resp.get_json()
    assert resp.get_json()["errorCode"] == code
    if not c.RATE_LIMIT_SENDS_RETRY_AFTER:
        # DocuSign documents no Retry-After on its limit errors (see constants.py)
        assert "Retry-After" not in resp.headers
        return None
    return int(resp.headers["Retry-After"])


def test_rate_limit_headers(ds):
    resp = ds.create()
    assert resp.headers["X-RateLimit-Limit"] == "3000"
    assert resp.headers["X-RateLimit-Remaining"] == "2999"
    assert resp.headers["X-BurstLimit-Limit"] == "200"
    assert resp.headers["X-BurstLimit-Remaining"] == "199"
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert reset % 3600 == 0
    assert 0 < reset - ds.state.now() <= 3600
    resp = ds.create()
    assert resp.headers["X-RateLimit-Remaining"] == "2998"


def test_errors_carry_headers_too(ds):
    resp = ds.rest("GET", f"/envelopes/{MISSING}")
    assert resp.status_code == c.ENVELOPE_NOT_FOUND_STATUS
    assert resp.headers["X-RateLimit-Remaining"] == "2999"


def test_oauth_calls_do_not_count(ds):
    ds.token()
    ds.client.get("/oauth/userinfo", headers=ds.auth)
    assert ds.create().headers["X-RateLimit-Remaining"] == "2999"


def test_hourly_limit_resets_at_the_top_of_the_hour(make_ds):
    ds = make_ds(SANDBOX_HOURLY_LIMIT=3, SANDBOX_BURST_LIMIT=100)
    for remaining in ("2", "1", "0"):
        assert ds.create().headers["X-RateLimit-Remaining"] == remaining
    resp = ds.create()
    wait = limit_error(resp, "HOURLY_APIINVOCATION_LIMIT_EXCEEDED")
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    reset = int(resp.headers["X-RateLimit-Reset"])
    if wait is not None:
        assert 0 < wait <= 3600
        assert ds.state.now() + wait >= reset - 1
    ds.advance(reset - ds.state.now() + 0.01)
    resp = ds.create()
    assert resp.status_code == 201
    assert resp.headers["X-RateLimit-Remaining"] == "2"


def test_burst_limit(make_ds):
    ds = make_ds(SANDBOX_BURST_LIMIT=2)
    assert ds.create().headers["X-BurstLimit-Remaining"] == "1"
    assert ds.create().headers["X-BurstLimit-Remaining"] == "0"
    wait = limit_error(ds.create(), "BURST_APIINVOCATION_LIMIT_EXCEEDED")
    if wait is not None:
        assert 0 < wait <= 30
    ds.advance(30)
    resp = ds.create()
    assert resp.status_code == 201
    # rejected calls were not counted
    assert resp.headers["X-RateLimit-Remaining"] == "2997"


def test_envelope_poll_limit(ds):
    eid = ds.sent_envelope()
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200
    wait = limit_error(ds.rest("GET", f"/envelopes/{eid}"), c.POLL_LIMIT_CODE)
    if wait is not None:
        assert 890 <= wait <= 900
    limit_error(ds.rest("GET", f"/envelopes/{eid}/recipients"), c.POLL_LIMIT_CODE)
    # other envelopes and other calls are not affected
    other = ds.sent_envelope()
    assert ds.rest("GET", f"/envelopes/{other}/recipients").status_code == 200
    assert ds.view(eid).status_code == 201
    ds.advance(900)
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200


def test_failed_gets_do_not_count_as_polls(ds):
    eid = ds.sent_envelope()
    ds.control("/faults", {"mode": "status", "status": 503, "endpoint": "get_envelope"})
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 503
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200


def test_poll_limit_configurable(make_ds):
    ds = make_ds(SANDBOX_ENVELOPE_POLL_LIMIT=3, SANDBOX_ENVELOPE_POLL_WINDOW=60)
    eid = ds.sent_envelope()
    for _ in range(3):
        assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200
    limit_error(ds.rest("GET", f"/envelopes/{eid}"), c.POLL_LIMIT_CODE)
    ds.advance(60)
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200


# --- faults ----------------------------------------------------------------------------


def test_status_fault_with_retry_after_and_count(ds):
    ds.token()
    ds.control(
        "/faults",
        {"mode": "status", "status": 503, "count": 2, "retry_after": 7, "endpoint": "create_envelope"},
    )
    for _ in range(2):
        resp = ds.create()
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "7"
        assert set(resp.get_json()) == {"errorCode", "message"}
        assert "X-RateLimit-Limit" in resp.headers
    assert ds.create().status_code == 201
    assert ds.control("/faults", method="GET") == {"faults": []}


def test_fault_only_hits_its_endpoint(ds):
    eid = ds.sent_envelope()
    ds.control("/faults", {"status": 500, "endpoint": "recipient_view"})
    assert ds.rest("GET", f"/envelopes/{eid}").status_code == 200
    resp = ds.view(eid)
    assert resp.status_code == 500
    assert resp.get_json()["errorCode"] == "UNSPECIFIED_ERROR"
    assert "Retry-After" not in resp.headers
    assert ds.view(eid).status_code == 201


def test_429_fault_is_docusign_shaped(ds):
    ds.token()
    ds.control("/faults", {"status": 429, "retry_after": 30})
    resp = ds.create()
    assert resp.status_code == 429
    assert resp.get_json()["errorCode"] == "BURST_APIINVOCATION_LIMIT_EXCEEDED"
    assert resp.headers["Retry-After"] == "30"


def test_oauth_faults(ds):
    ds.control("/faults", {"status": 503, "endpoint": "token", "retry_after": 2})
    resp = ds.request_token(ds.assertion())
    assert resp.status_code == 503
    assert resp.headers["Retry-After"] == "2"
    assert set(resp.get_json()) == {"error", "error_description"}
    assert ds.request_token(ds.assertion()).status_code == 200
    ds.control("/faults", {"status": 429, "endpoint": "userinfo"})
    resp = ds.client.get("/oauth/userinfo", headers=ds.auth)
    assert resp.status_code == 429


def test_unscoped_fault_hits_the_next_call_of_any_endpoint(ds):
    ds.control("/faults", {"status": 500})
    assert ds.request_token(ds.assertion()).status_code == 500
    assert ds.request_token(ds.assertion()).status_code == 200


def test_delay_fault(ds):
    ds.token()
    ds.control("/faults", {"mode": "delay", "delay_ms": 150, "endpoint": "create_envelope"})
    started = time.monotonic()
    assert ds.create().status_code == 201
    assert time.monotonic() - started >= 0.15
    started = time.monotonic()
    ds.create()
    assert time.monotonic() - started < 0.15


def test_drop_fault_under_test_client(ds):
    ds.token()
    ds.control("/faults", {"mode": "drop", "endpoint": "create_envelope"})
    with pytest.raises(ConnectionDropped):
        ds.create()
    assert ds.create().status_code == 201


def test_clear_faults(ds):
    ds.control("/faults", {"status": 500, "count": 5})
    ds.control("/faults", method="DELETE")
    assert ds.request_token(ds.assertion()).status_code == 200


@pytest.mark.parametrize(
    "spec",
    [
        {"mode": "explode"},
        {"status": 200},
        {"status": "500"},
        {"count": 0},
        {"endpoint": "delete_everything"},
        {"mode": "delay", "delay_ms": -1},
    ],
)
def test_bad_fault_specs(client, spec):
    resp = client.post("/_sandbox/faults", json=spec)
    assert resp.status_code == 400
    assert "error" in resp.get_json()


# --- call counts ---------------------------------------------------------------------------


def test_call_counts(ds):
    assert ds.control("/calls", method="GET") == {
        "counts": {name: 0 for name in c.ENDPOINT_NAMES},
        "total": 0,
    }
    eid = ds.sent_envelope()  # token + create
    ds.client.get("/oauth/userinfo", headers=ds.auth)
    ds.rest("PUT", f"/envelopes/{eid}", json={"status": "sent"})  # fails, still counted
    ds.rest("GET", f"/envelopes/{eid}")
    ds.rest("GET", f"/envelopes/{eid}/recipients")  # over the poll limit, still counted
    ds.view(eid)
    ds.control("/faults", {"status": 500, "endpoint": "get_envelope"})
    ds.rest("GET", f"/envelopes/{MISSING}")  # faulted, still counted
    ds.client.get(f"/restapi/v2.1/accounts/{c.DEMO_ACCOUNT_ID}/envelopes/{eid}")  # no token
    ds.rest("GET", "/nowhere")  # unknown route: no endpoint
    calls = ds.control("/calls", method="GET")
    assert calls["counts"] == {
        **{name: 0 for name in c.ENDPOINT_NAMES},
        "token": 1,
        "userinfo": 1,
        "create_envelope": 1,
        "get_envelope": 3,
        "update_envelope": 1,
        "list_recipients": 1,
        "recipient_view": 1,
    }
    assert calls["total"] == 9
    ds.control("/calls", method="DELETE")
    assert ds.control("/calls", method="GET")["total"] == 0
