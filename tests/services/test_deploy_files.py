"""`deploy/` stays consistent with the code: what compose starts is what the gateway accepts."""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

import pytest

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


@pytest.fixture(scope="module")
def compose() -> dict[str, t.Any]:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def _gateways(compose: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("command", [None, None])[:2] == ["gateway", "serve"]}


def test_two_gateways_with_several_workers_on_shared_stores(compose: dict[str, t.Any]) -> None:
    gateways = _gateways(compose)
    assert len(gateways) == 2
    for svc in gateways.values():
        command = svc["command"]
        assert command[command.index("--host") + 1] == "0.0.0.0"
        assert int(command[command.index("--workers") + 1]) > 1
        env = svc["environment"]
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["RATELIMIT_STORAGE_URI"].startswith("redis://")
        assert env["GATEWAY_MASTER_KEY"].startswith("${GATEWAY_MASTER_KEY:?")
    assert compose["services"]["init"]["command"] == ["gateway", "init"]


def test_the_gateways_preflight_accepts_the_compose_settings(compose: dict[str, t.Any],
                                                             tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    from gateway import create_app
    from gateway.cli import serving

    env = next(iter(_gateways(compose).values()))["environment"]
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'g.db'}",
        "RATELIMIT_STORAGE_URI": env["RATELIMIT_STORAGE_URI"],
        "MASTER_KEY": Fernet.generate_key().decode("ascii"),
        "POLICY_DIR": str(ROOT / "policies"),
    })
    with app.app_context():
        serving.preflight(app, workers=4)  # raises on memory:// counters with several workers


def test_nginx_balances_over_exactly_the_gateways(compose: dict[str, t.Any]) -> None:
    conf = (DEPLOY / "nginx.conf").read_text()
    servers = set(re.findall(r"^\s*server\s+([\w.-]+):8080;", conf, re.M))
    assert servers == set(_gateways(compose))
    retries = re.findall(r"^\s*proxy_next_upstream\s+([^;]+);", conf, re.M)
    assert retries and all("non_idempotent" not in r for r in retries)  # a POST goes to one node
    read_timeout = int(re.search(r"proxy_read_timeout\s+(\d+)s;", conf).group(1))
    from gateway.settings import DEFAULTS

    assert read_timeout > DEFAULTS["DOCUSIGN_TOTAL_BUDGET"] + DEFAULTS["IDEMPOTENCY_WAIT"]


def test_the_image_copies_what_exists() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for source in re.findall(r"^COPY\s+(.+?)\s+\S+$", dockerfile, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
