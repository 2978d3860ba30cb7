"""SPEC: a partner's `allowed_ips` (CIDR, IPv4 and IPv6); a key used from elsewhere gets a bad key's 401."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway import store
from gateway.policy import PolicyFileInvalid
from gateway.policy.loader import parse_policy
from tests.conftest import add_partner
from tests.conftest import make_gateway
from tests.conftest import partner_policy

ALLOWED = '["198.51.100.0/24", "2001:db8:1::/48", "203.0.113.7"]'


def _policy(name: str, allowed: str) -> str:
    return partner_policy(name).replace("rate_limit", f"allowed_ips = {allowed}\nrate_limit", 1)


def _gateway(tmp_path: Path, **config: t.Any) -> t.Any:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "fenced.toml").write_text(_policy("fenced", ALLOWED))
    return make_gateway(tmp_path, None, None, **config)


def _templates(app: t.Any, key: str, remote: str, **headers: str) -> t.Any:
    return app.test_client().get("/v1/templates", environ_base={"REMOTE_ADDR": remote},
                                 headers={"Authorization": f"Bearer {key}", **headers})


def _audited_codes(app: t.Any) -> list[str | None]:
    with app.app_context(), store.transaction() as conn:
        return list(conn.execute(sa.select(store.audit_events.c.code)
                                 .order_by(store.audit_events.c.id)).scalars())


@pytest.mark.parametrize("remote", ["198.51.100.9", "203.0.113.7", "2001:db8:1:ffff::5",
                                    "::ffff:198.51.100.20"])
def test_a_key_works_from_an_allowed_address(tmp_path, remote):
    app = _gateway(tmp_path)
    resp = _templates(app, add_partner(app, "fenced"), remote)
    assert resp.status_code == 200, resp.get_data(as_text=True)


@pytest.mark.parametrize("remote", ["198.51.101.9", "203.0.113.8", "2001:db8:2::5", "127.0.0.1"])
def test_a_key_from_elsewhere_gets_the_same_401_as_a_bad_key(tmp_path, remote):
    app = _gateway(tmp_path)
    key = add_partner(app, "fenced")
    refused = _templates(app, key, remote)
    bad_key = _templates(app, key[:-4] + "AAAA", "198.51.100.9")
    assert refused.status_code == bad_key.status_code == 401
    strip = lambda body: {k: v for k, v in body.items() if k != "request_id"}  # noqa: E731
    assert strip(refused.get_json()) == strip(bad_key.get_json())
    assert refused.headers["WWW-Authenticate"] == bad_key.headers["WWW-Authenticate"]
    # the refused call names its partner: a chained row; the bad key is counted per address
    assert _audited_codes(app)[-1] == "ip_not_allowed"


def test_other_partners_without_allowed_ips_work_from_anywhere(tmp_path):
    app = _gateway(tmp_path)
    assert _templates(app, add_partner(app, "other"), "192.0.2.200").status_code == 200


def test_the_address_is_the_one_after_the_trusted_proxies(tmp_path):
    app = _gateway(tmp_path, PROXY_HOPS=1)
    key = add_partner(app, "fenced")
    # the proxy (10.0.0.2) says who connected to it: that address is judged
    assert _templates(app, key, "10.0.0.2", **{"X-Forwarded-For": "198.51.100.9"}).status_code == 200
    # a client cannot name itself: only the last hop's entry is trusted
    spoofed = _templates(app, key, "10.0.0.2", **{"X-Forwarded-For": "198.51.100.9, 192.0.2.1"})
    assert spoofed.status_code == 401


def test_without_proxy_hops_a_forwarded_header_is_ignored(tmp_path):
    app = _gateway(tmp_path)
    key = add_partner(app, "fenced")
    assert _templates(app, key, "192.0.2.1", **{"X-Forwarded-For": "198.51.100.9"}).status_code == 401


@pytest.mark.parametrize(("allowed", "message"), [
    ('["10.0.0.1/8"]', "host bits set"),
    ('["not-an-ip"]', "allowed_ips[0]"),
    ('["10.0.0.0/8", "10.0.0.0/8"]', "duplicate"),
    ("[]", "allowed_ips"),
    ('"10.0.0.0/8"', "allowed_ips"),
])
def test_bad_allowed_ips_are_refused(allowed, message):
    with pytest.raises(PolicyFileInvalid) as info:
        parse_policy(_policy("fenced", allowed).encode(), "fenced.toml")
    assert message in str(info.value)


def test_allowed_ips_are_loaded_as_networks():
    policy = parse_policy(_policy("fenced", ALLOWED).encode(), "fenced.toml")
    assert policy.ip_allowed("198.51.100.255") and not policy.ip_allowed("198.51.99.1")
    assert not policy.ip_allowed(None) and not policy.ip_allowed("garbage")
