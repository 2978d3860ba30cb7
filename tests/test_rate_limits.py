"""A rate with several limits ("10/minute;3/hour"): every limit counts, in memory and on Redis."""

from __future__ import annotations

import secrets
import time
import typing as t
from pathlib import Path

import pytest
import redis
from limits.storage import storage_from_string

from gateway.guards.ratelimit import Gcra
from tests.conftest import PartnerActions
from tests.conftest import add_partner
from tests.conftest import make_gateway
from tests.conftest import partner_policy
from tests.conftest import service_or_skip
from tests.test_partner_api import problem

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
def gcra(request: pytest.FixtureRequest) -> t.Iterator[tuple[Gcra, str]]:
    """A GCRA over each storage, and a key of this test's own."""
    key = "test-" + secrets.token_hex(4)
    if request.param == "memory":
        yield Gcra(storage_from_string("memory://")), key
        return
    service_or_skip("Redis", lambda: redis.Redis.from_url(REDIS).ping())
    yield Gcra(storage_from_string(REDIS, wrap_exceptions=True)), key
    client = redis.Redis.from_url(REDIS)
    for name in client.scan_iter(f"pgw:gcra:{{{key}}}:*"):
        client.delete(name)


def test_the_tightest_limit_refuses_and_is_the_one_reported(gcra: tuple[Gcra, str]) -> None:
    limiter, key = gcra
    verdicts = [limiter.hit(key, "10/minute;3/hour") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    # the hour's three leave less room than the minute's ten: its figures go in the headers
    assert [(v.limit, v.remaining) for v in verdicts[:3]] == [(3, 2), (3, 1), (3, 0)]
    refused = verdicts[3]
    assert refused.limit == 3 and refused.remaining == 0
    assert 1190 <= refused.retry_in <= 1200  # one of three an hour: the next in 20 minutes


def test_a_refused_hit_spends_none_of_the_other_limits(gcra: tuple[Gcra, str]) -> None:
    limiter, key = gcra
    first = limiter.hit(key, "1/second;5/hour")
    assert first.allowed and first.remaining == 0  # the second's one is the least room
    assert not limiter.hit(key, "1/second;5/hour").allowed
    time.sleep(1.05)
    again = limiter.hit(key, "1/second;5/hour")
    assert again.allowed
    later = limiter.hit(key, "5/hour")  # the hour's own count: two hits, not three
    assert (later.limit, later.remaining) == (5, 2)


def test_a_partner_over_its_hourly_limit_gets_429(tmp_path: Path, sandbox: t.Any,
                                                  rsa_private_pem: str) -> None:
    app = make_gateway(tmp_path, sandbox.url, rsa_private_pem)
    (tmp_path / "policies" / "hourly.toml").write_text(
        partner_policy("hourly", rate="10/minute;3/hour"))
    client = app.test_client()
    hourly = PartnerActions(client, "hourly", add_partner(app, "hourly"))
    answers = [hourly.status("nope") for _ in range(4)]
    assert [r.status_code for r in answers] == [404, 404, 404, 429]
    assert [r.headers["X-RateLimit-Limit"] for r in answers[:3]] == ["3"] * 3
    assert [r.headers["X-RateLimit-Remaining"] for r in answers[:3]] == ["2", "1", "0"]
    problem(answers[3], 429, "rate_limited")
    assert 1190 <= int(answers[3].headers["Retry-After"]) <= 1200


def test_memory_counters_drop_spent_entries_and_do_not_rescan_live_ones() -> None:
    from gateway.guards import ratelimit

    limiter = Gcra(storage_from_string("memory://"))
    for i in range(ratelimit._LOCAL_PRUNE_AT):
        limiter.hit(f"spent-{i}", "1000/second")  # each entry's TAT is 1 ms ahead
    time.sleep(0.01)
    limiter.hit("fresh", "1/hour")
    assert len(limiter._tats) == 1  # every spent entry went at the threshold
    for i in range(ratelimit._LOCAL_PRUNE_AT):
        limiter.hit(f"live-{i}", "1/hour")  # all still live at the next threshold
    assert len(limiter._tats) == ratelimit._LOCAL_PRUNE_AT + 1  # none was spent: all kept
    assert limiter._prune_at == 2 * ratelimit._LOCAL_PRUNE_AT  # the next scan waits for as many more
