"""`gateway partners webhook-secret`, `gateway webhooks list|replay`, and the console's page."""

from __future__ import annotations

import json
import re
import time
import typing as t

import pytest
import sqlalchemy as sa
import standardwebhooks
from click.testing import CliRunner

from gateway import store
from gateway.cli import cli
from tests.webhooks.conftest import Receiver
from tests.webhooks.conftest import deliver
from tests.webhooks.conftest import events
from tests.webhooks.conftest import new_envelope
from tests.webhooks.conftest import report
from tests.webhooks.conftest import rotate_secret
from tests.webhooks.conftest import write_policy


def run(runner: CliRunner, *args: str, ok: bool = True) -> t.Any:
    result = runner.invoke(cli, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def one_error_line(result: t.Any) -> str:
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def owned(owner: CliRunner, receiver: Receiver) -> tuple[CliRunner, t.Any]:
    """`gateway init`, partner `example` with a webhook_url, and the app the commands use."""
    from gateway import create_app

    run(owner, "init")
    run(owner, "partners", "add", "example")
    app = create_app()
    write_policy(app, receiver.url)
    return owner, app


def test_webhook_secret_is_printed_once_alone(owned: tuple[CliRunner, t.Any], receiver: Receiver) -> None:
    owner, app = owned
    result = run(owner, "partners", "webhook-secret", "example")
    secret = result.stdout.strip()
    assert result.stdout.count("\n") == 1 and re.fullmatch(r"whsec_[A-Za-z0-9+/]{32}", secret)
    assert secret not in result.stderr
    second = run(owner, "partners", "webhook-secret", "example", "--grace", "1h").stdout.strip()
    assert second != secret
    # the stored setting is vault-encrypted: the secret is nowhere in the database in clear
    with app.app_context(), store.transaction() as conn:
        values = [r.value for r in conn.execute(sa.select(store.settings.c.value))]
    assert not any(secret in v or second in v for v in values)
    report(app, new_envelope(app), "voided")
    deliver(app)
    headers, body = receiver.requests[0]
    standardwebhooks.Webhook(secret).verify(body, headers)  # inside its 1 h grace
    standardwebhooks.Webhook(second).verify(body, headers)
    assert secret not in json.dumps(events(app))


def test_webhook_secret_unknown_partner(owned: tuple[CliRunner, t.Any]) -> None:
    owner, _ = owned
    line = one_error_line(run(owner, "partners", "webhook-secret", "nobody", ok=False))
    assert "no partner named 'nobody'" in line


def test_list_and_replay(owned: tuple[CliRunner, t.Any], receiver: Receiver) -> None:
    owner, app = owned
    run(owner, "partners", "webhook-secret", "example")
    envelope_id = new_envelope(app)
    report(app, envelope_id, "voided")
    receiver.answers = [500]
    deliver(app)
    (event,) = events(app)
    listed = run(owner, "webhooks", "list").output
    assert event["event_id"] in listed and "envelope.voided" in listed
    assert "pending" in listed and "attempts=1" in listed and "HTTP 500" in listed
    rows = json.loads(run(owner, "webhooks", "list", "--partner", "example", "--json").output)
    assert [(r["event_id"], r["partner"], r["state"], r["attempts"], r["last_result"])
            for r in rows] == [(event["event_id"], "example", "pending", 1, "HTTP 500")]
    assert json.loads(run(owner, "webhooks", "list", "--partner", "other", "--json").output) == []
    receiver.answers = [204]
    deliver(app, now=time.time() + 10 * 86400)
    assert events(app)[0]["state"] == "delivered"
    out = run(owner, "webhooks", "replay", event["event_id"]).output
    assert event["event_id"] in out
    assert events(app)[0]["state"] == "pending"
    deliver(app)
    assert receiver.ids() == [event["event_id"]] * 3


def test_replay_unknown_event(owned: tuple[CliRunner, t.Any]) -> None:
    owner, _ = owned
    line = one_error_line(run(owner, "webhooks", "replay", "msg_nope", ok=False))
    assert "no webhook event 'msg_nope'" in line


# --- the console ---------------------------------------------------------------------------

PASSWORD = "correct horse battery staple"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def console(hooked: t.Any) -> t.Any:
    from gateway.services import admin_accounts

    hooked.config["ADMIN_PASSWORD_METHOD"] = "scrypt:1024:8:1"
    with hooked.app_context(), store.transaction() as conn:
        admin_accounts.create_admin(conn, "root", PASSWORD)
    client = hooked.test_client()
    page = client.get("/admin/login").get_data(as_text=True)
    token = _CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    assert client.post("/admin/login", data={"csrf_token": token, "username": "root",
                                             "password": PASSWORD}).status_code == 303
    return client


def test_console_lists_deliveries_and_replays(hooked: t.Any, console: t.Any,
                                              receiver: Receiver) -> None:
    rotate_secret(hooked)
    report(hooked, new_envelope(hooked), "voided")
    receiver.answers = [500]
    deliver(hooked)
    (event,) = events(hooked)
    assert "/admin/partners/example/webhooks" in console.get("/admin/").get_data(as_text=True)
    page = console.get("/admin/partners/example/webhooks").get_data(as_text=True)
    assert event["event_id"] in page and "failing" in page and "HTTP 500" in page
    action = f"/admin/partners/example/webhooks/{event['event_id']}/replay"
    assert action in page
    # without its CSRF token the POST is refused and nothing changes
    refused = console.post(action, data={})
    assert refused.status_code in (400, 403)
    assert events(hooked)[0]["attempts"] == 1
    token = _CSRF_RE.search(page).group(1)  # type: ignore[union-attr]
    done = console.post(action, data={"csrf_token": token})
    assert done.status_code == 303
    replayed = events(hooked)[0]
    assert replayed["state"] == "pending" and replayed["attempts"] == 0
    receiver.answers = [204]
    deliver(hooked)
    assert events(hooked)[0]["state"] == "delivered"
    # another partner's name cannot replay this partner's event
    assert console.post(f"/admin/partners/other/webhooks/{event['event_id']}/replay",
                        data={"csrf_token": token}).status_code == 303
    assert events(hooked)[0]["state"] == "delivered"
    assert console.get("/admin/partners/nobody/webhooks").status_code == 404
