"""One gateway fleet (two `gateway serve --workers 2` on PostgreSQL and Redis) under load.

Exact partner limits across nodes, revocation with no propagation delay, one envelope
per Idempotency-Key even when a worker is killed mid-create, and DocuSign's faults
turned into 502/503/504 inside the time budget.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.services.fleet import Emulator
from tests.services.fleet import Fleet
from tests.services.fleet import create_body
from tests.services.fleet import emulator
from tests.services.fleet import running_fleet

pytestmark = pytest.mark.services

LIMIT = 25  # the "limited" partner's policy: 25/minute
CLIENTS = 8
# small upstream timeouts so faults resolve quickly; the lease outlives the budget
BUDGET = 3.0
READ_TIMEOUT = 1.0
LEASE = 4.0

PARTNERS = {
    "limited": f"{LIMIT}/minute",
    "revokee": "100000/hour",
    "idem": "100000/hour",
    "faulty": "100000/hour",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[tuple[Fleet, Emulator]]:
    root: Path = tmp_path_factory.mktemp("fleet")
    with emulator() as url, running_fleet(
        root, url, PARTNERS, instances=2, workers=2,
        DOCUSIGN_CONNECT_TIMEOUT=0.5, DOCUSIGN_READ_TIMEOUT=READ_TIMEOUT,
        DOCUSIGN_TOTAL_BUDGET=BUDGET, IDEMPOTENCY_LEASE=LEASE,
        # every status read asks DocuSign (the fault cases need it)
        STATUS_MIN_POLL_INTERVAL=0,
    ) as fleet:
        yield fleet, Emulator(url)


def _round_robin(fleet: Fleet) -> t.Iterator[str]:
    return itertools.cycle([i.url for i in fleet.instances])


def _problem(resp: requests.Response, status: int, code: str) -> dict[str, t.Any]:
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    body = resp.json()
    assert body["code"] == code and body["status"] == status
    return body


# --- 1. exact limits across instances and workers -------------------------------------


def test_partner_limit_is_exact_across_instances(world: tuple[Fleet, Emulator]) -> None:
    fleet, _ = world
    urls = _round_robin(fleet)
    targets = [next(urls) for _ in range(LIMIT * 3)]
    headers = fleet.headers("limited")

    def call(url: str) -> requests.Response:
        return requests.get(url + "/v1/templates", headers=headers, timeout=10)

    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(call, targets))

    accepted = [r for r in answers if r.status_code == 200]
    refused = [r for r in answers if r.status_code == 429]
    assert len(accepted) == LIMIT
    assert len(refused) == len(answers) - LIMIT
    for resp in refused:
        _problem(resp, 429, "rate_limited")
        assert 0 < int(resp.headers["Retry-After"]) <= 60


# --- 2. revocation: the very next request, on every instance --------------------------


def test_revocation_bites_at_once_on_every_instance(world: tuple[Fleet, Emulator]) -> None:
    fleet, _ = world
    headers = fleet.headers("revokee")
    revoked_at: list[float] = []
    stop = threading.Event()
    seen: list[tuple[float, str, int, str]] = []

    def client(url: str) -> None:
        while not stop.is_set():
            started = time.monotonic()
            resp = requests.get(url + "/v1/templates", headers=headers, timeout=10)
            code = resp.json().get("code", "") if resp.status_code != 200 else "ok"
            seen.append((started, url, resp.status_code, code))

    urls = [i.url for i in fleet.instances] * (CLIENTS // len(fleet.instances))
    with ThreadPoolExecutor(CLIENTS) as pool:
        running = [pool.submit(client, url) for url in urls]
        time.sleep(0.5)
        fleet.gateway("partners", "revoke", "revokee")
        revoked_at.append(time.monotonic())
        time.sleep(1.0)
        stop.set()
        for future in running:
            future.result()

    after = [s for s in seen if s[0] > revoked_at[0]]
    before = [s for s in seen if s[0] <= revoked_at[0]]
    assert any(status == 200 for _, _, status, _ in before)
    assert len(after) >= CLIENTS and {url for _, url, _, _ in after} == {i.url for i in fleet.instances}
    assert {(status, code) for _, _, status, code in after} == {(401, "key_revoked")}


# --- 3. one envelope per Idempotency-Key ---------------------------------------------------


def test_concurrent_creates_with_one_key_make_one_envelope(world: tuple[Fleet, Emulator]) -> None:
    fleet, ds = world
    before = ds.calls()["create_envelope"]
    headers = fleet.headers("idem", **{"Idempotency-Key": "order-20-at-once"})
    body = create_body("order-20")
    urls = _round_robin(fleet)
    targets = [next(urls) for _ in range(20)]
    barrier = threading.Barrier(20)

    def call(url: str) -> requests.Response:
        barrier.wait()
        return requests.post(url + "/v1/envelopes", json=body, headers=headers, timeout=30)

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, targets))

    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    assert len({r.text for r in answers}) == 1
    assert len({r.headers["Location"] for r in answers}) == 1
    assert ds.calls()["create_envelope"] == before + 1


def _kill_workers(instance: t.Any) -> list[int]:
    pids = instance.workers()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def test_worker_killed_mid_create_then_retry_makes_one_envelope(
        world: tuple[Fleet, Emulator]) -> None:
    fleet, ds = world
    first, second = fleet.instances
    headers = fleet.headers("idem", **{"Idempotency-Key": "order-killed"})
    body = create_body("order-killed")
    before = ds.calls()["create_envelope"]
    # the emulator holds the create long enough for the kill, then makes the envelope anyway
    ds.fault(mode="delay", delay_ms=800, endpoint="create_envelope", count=1)
    outcome: list[t.Any] = []

    def doomed() -> None:
        try:
            outcome.append(requests.post(first.url + "/v1/envelopes", json=body, headers=headers,
                                         timeout=30))
        except requests.RequestException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=doomed)
    thread.start()
    deadline = time.monotonic() + 10
    while ds.calls()["create_envelope"] == before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ds.calls()["create_envelope"] == before + 1, "the create never reached DocuSign"
    killed = _kill_workers(first)
    thread.join(timeout=30)
    assert killed and isinstance(outcome[0], requests.RequestException), outcome

    started = time.monotonic()
    retry = requests.post(second.url + "/v1/envelopes", json=body, headers=headers, timeout=30)
    assert retry.status_code == 201, retry.text
    # it waited for the dead worker's lease, then found the envelope instead of making one
    assert time.monotonic() - started < LEASE + 2
    envelope_id = retry.json()["envelope_id"]
    assert ds.calls()["create_envelope"] == before + 1
    assert ds.calls()["list_status_changes"] >= 1
    assert ds.envelope(envelope_id)["envelopeId"] == envelope_id

    again = requests.post(first.url + "/v1/envelopes", json=body, headers=headers, timeout=30)
    assert (again.status_code, again.text) == (201, retry.text)
    view = requests.post(f"{second.url}/v1/envelopes/{envelope_id}/recipient-view",
                         json={"return_url": "https://idem.example/done"},
                         headers=fleet.headers("idem"), timeout=30)
    assert view.status_code == 201, view.text  # the adopted envelope is fully usable
    assert ds.calls()["create_envelope"] == before + 1


def test_timed_out_create_is_reconciled_not_repeated(world: tuple[Fleet, Emulator]) -> None:
    fleet, ds = world
    headers = fleet.headers("idem", **{"Idempotency-Key": "order-slow"})
    body = create_body("order-slow")
    before = ds.calls()["create_envelope"]
    ds.fault(mode="delay", delay_ms=int(READ_TIMEOUT * 1000) + 500, endpoint="create_envelope")
    url = fleet.instances[0].url + "/v1/envelopes"

    slow = requests.post(url, json=body, headers=headers, timeout=30)
    _problem(slow, 504, "upstream_timeout")
    wait = int(slow.headers["Retry-After"])
    assert 1 <= wait <= LEASE + 1

    time.sleep(wait)
    retry = requests.post(url, json=body, headers=headers, timeout=30)
    assert retry.status_code == 201, retry.text
    assert ds.calls()["create_envelope"] == before + 1


# --- 4. DocuSign's faults, through the partner API -------------------------------------


def _create(fleet: Fleet, **headers: str) -> requests.Response:
    return requests.post(fleet.instances[0].url + "/v1/envelopes", json=create_body(),
                         headers=fleet.headers("faulty", **headers), timeout=30)


def _fresh_envelope(fleet: Fleet) -> str:
    resp = _create(fleet)
    assert resp.status_code == 201, resp.text
    return resp.json()["envelope_id"]


def _status(fleet: Fleet, envelope_id: str) -> requests.Response:
    return requests.get(f"{fleet.instances[1].url}/v1/envelopes/{envelope_id}",
                        headers=fleet.headers("faulty"), timeout=30)


def _delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


CREATE_FAULTS = [
    # (fault, partner status, code, Retry-After, the attempt as the gateway's metrics label it)
    ({"status": 503, "retry_after": 7}, 502, "upstream_unavailable", "7", "503"),
    ({"status": 500}, 502, "upstream_unavailable", None, "500"),
    ({"status": 429, "retry_after": 30}, 503, "upstream_rate_limited", "30", "429"),
    ({"mode": "drop"}, 502, "upstream_unavailable", None, "connection"),
]


@pytest.mark.parametrize(("fault", "status", "code", "retry_after", "label"), CREATE_FAULTS)
def test_create_faults_are_answered_not_retried(world: tuple[Fleet, Emulator], fault: dict[str, t.Any],
                                                status: int, code: str, retry_after: str | None,
                                                label: str) -> None:
    fleet, ds = world
    _fresh_envelope(fleet)  # token and account in hand: the fault hits the create itself
    before = ds.calls()["create_envelope"]
    counted = fleet.instances[0].upstream_calls("create_envelope")
    ds.fault(endpoint="create_envelope", count=5, **fault)
    started = time.monotonic()
    resp = _create(fleet)
    elapsed = time.monotonic() - started
    ds.clear_faults()

    _problem(resp, status, code)
    assert resp.headers.get("Retry-After") == retry_after
    assert ds.calls()["create_envelope"] == before + 1  # a create is never blindly retried
    assert _delta(fleet.instances[0].upstream_calls("create_envelope"), counted) == {label: 1}
    assert elapsed < BUDGET


STATUS_FAULTS = [
    # (fault, count, partner status, code, attempts by metrics label, at least this long)
    ({"status": 500}, 1, 200, None, {"500": 1, "200": 1}, 0.0),
    ({"status": 503}, 10, 502, "upstream_unavailable", {"503": 4}, 0.0),
    ({"status": 429, "retry_after": 1}, 1, 200, None, {"429": 1, "200": 1}, 1.0),
    ({"status": 429, "retry_after": 60}, 1, 503, "upstream_rate_limited", {"429": 1}, 0.0),
    ({"mode": "drop"}, 1, 200, None, {"connection": 1, "200": 1}, 0.0),
    ({"mode": "delay", "delay_ms": 2000}, 10, 504, "upstream_timeout", {"timeout": 3},
     BUDGET - 0.5),
]


@pytest.mark.parametrize(("fault", "count", "status", "code", "attempts", "at_least"), STATUS_FAULTS)
def test_status_faults_are_retried_within_the_budget(world: tuple[Fleet, Emulator],
                                                     fault: dict[str, t.Any], count: int,
                                                     status: int, code: str | None,
                                                     attempts: dict[str, int],
                                                     at_least: float) -> None:
    fleet, ds = world
    envelope_id = _fresh_envelope(fleet)
    before = ds.calls()["get_envelope"]
    counted = fleet.instances[1].upstream_calls("get_envelope")
    ds.fault(endpoint="get_envelope", count=count, **fault)
    started = time.monotonic()
    resp = _status(fleet, envelope_id)
    elapsed = time.monotonic() - started
    ds.clear_faults()

    if code is None:
        assert resp.status_code == status, resp.text
    else:
        _problem(resp, status, code)
    if status == 503 and code == "upstream_rate_limited":
        assert resp.headers["Retry-After"] == "60"  # DocuSign's hint, not waited out
    assert ds.calls()["get_envelope"] - before == sum(attempts.values())
    assert _delta(fleet.instances[1].upstream_calls("get_envelope"), counted) == attempts
    assert at_least <= elapsed < BUDGET + 1.0


# --- 6. the audit chain after all of the above ---------------------------------------------


def test_audit_chain_is_intact_after_concurrent_writers(world: tuple[Fleet, Emulator]) -> None:
    fleet, _ = world
    done = fleet.gateway("audit", "--verify")
    assert done.stdout.startswith("ok: ")
    # every instance and worker appended to one chain, in the hundreds
    assert int(done.stdout.split()[1]) > 200
