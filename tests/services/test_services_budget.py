"""What a fleet shares upstream: one access token, and one hourly budget of DocuSign calls.

Two `gateway serve --workers 2` on one PostgreSQL schema and one Redis prefix, against
an emulator of this module's own, with a small account limit.
"""

from __future__ import annotations

import itertools
import math
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from tests.services.fleet import Emulator
from tests.services.fleet import Fleet
from tests.services.fleet import create_body
from tests.services.fleet import emulator
from tests.services.fleet import running_fleet

pytestmark = pytest.mark.services

ACCOUNT_HOURLY_LIMIT = 48
ACCOUNT_RESERVE = 0.25
ALLOWED = 36  # 48 less the 25 % reserve
PARTNERS = {"alpha": "100000/hour", "beta": "100000/hour", "gamma": "100000/hour"}
REST_ENDPOINTS = ("create_envelope", "get_envelope", "update_envelope", "list_recipients",
                  "recipient_view", "list_status_changes")


def _clear_of_the_hour(margin: float = 30.0) -> None:
    """DocuSign's (and the budget's) hour turns at :00; do not straddle it."""
    left = 3600 - time.time() % 3600
    if left < margin:
        time.sleep(left + 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[tuple[Fleet, Emulator]]:
    _clear_of_the_hour()
    root: Path = tmp_path_factory.mktemp("budget")
    with emulator() as url, running_fleet(
        root, url, PARTNERS, instances=2, workers=2,
        ACCOUNT_HOURLY_LIMIT=ACCOUNT_HOURLY_LIMIT, ACCOUNT_RESERVE=ACCOUNT_RESERVE,
    ) as fleet:
        yield fleet, Emulator(url)


def _creates(fleet: Fleet, partners: t.Iterable[str], count: int) -> list[requests.Response]:
    urls = itertools.cycle([i.url for i in fleet.instances])
    names = itertools.cycle(partners)
    jobs = [(next(urls), next(names), n) for n in range(count)]

    def call(job: tuple[str, str, int]) -> requests.Response:
        url, partner, n = job
        return requests.post(url + "/v1/envelopes", json=create_body(f"order-{n}"),
                             headers=fleet.headers(partner), timeout=30)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(call, jobs))


def test_the_fleet_makes_one_token_request(world: tuple[Fleet, Emulator]) -> None:
    fleet, ds = world
    answers = _creates(fleet, ["alpha"], 16)
    assert {r.status_code for r in answers} == {201}, [r.text for r in answers]
    calls = ds.calls()
    # four workers on two instances served these; one of them fetched for all
    assert calls["token"] == 1
    assert calls["userinfo"] == 1

    engine = sa.create_engine(fleet.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.text(
                "SELECT value, encrypted FROM settings WHERE name = 'docusign_token'")).one()
    finally:
        engine.dispose()
    assert row.encrypted and "Bearer" not in row.value  # vault-encrypted at rest


def test_account_budget_holds_across_partners_and_instances(world: tuple[Fleet, Emulator]) -> None:
    fleet, ds = world
    _clear_of_the_hour(margin=10)
    spent = sum(ds.calls()[name] for name in REST_ENDPOINTS)
    assert spent < ALLOWED
    answers = _creates(fleet, PARTNERS, ALLOWED + 12)

    accepted = [r for r in answers if r.status_code == 201]
    refused = [r for r in answers if r.status_code != 201]
    assert len(accepted) == ALLOWED - spent
    top_of_hour = math.ceil(3600 - time.time() % 3600)
    for resp in refused:
        assert resp.status_code == 429, resp.text
        assert resp.json()["code"] == "account_budget_exhausted"
        assert abs(int(resp.headers["Retry-After"]) - top_of_hour) <= 5
    # every partner was refused alike: the budget is the account's, not a partner's
    assert {r.request.headers["Authorization"] for r in refused} == {
        f"Bearer {fleet.keys[name]}" for name in PARTNERS}
    # refused before sending: DocuSign saw exactly the budget, no more
    assert sum(ds.calls()[name] for name in REST_ENDPOINTS) == ALLOWED
