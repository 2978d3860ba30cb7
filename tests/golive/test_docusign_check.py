"""`gateway docusign check`: a fresh grant and userinfo each time, one line naming the failing step."""

from __future__ import annotations

import typing as t

import requests
from click.testing import CliRunner

from tests.golive.helpers import change_settings
from tests.golive.helpers import lines
from tests.golive.helpers import run

OTHER_GUID = "0f0f0f0f-1111-4222-8333-444455556666"


def info(sandbox: t.Any) -> dict[str, t.Any]:
    return t.cast(dict[str, t.Any], requests.get(sandbox.url + "/_sandbox/info", timeout=5).json())


def test_ok_names_user_and_account_and_grants_anew_every_time(configured: CliRunner,
                                                               sandbox: t.Any) -> None:
    before = sandbox.calls()
    for _ in range(2):
        out = lines(run(configured, "docusign", "check"))
        assert len(out) == 1
        assert out[0].startswith("ok: token obtained for Gateway System Sender")
        assert "'Sandbox Demo Account'" in out[0] and "(emulator)" in out[0]
        assert "Bearer" not in out[0]
    after = sandbox.calls()
    # no cached token, no fleet token: each check is one grant and one userinfo
    assert after["token"] - before["token"] == 2
    assert after["userinfo"] - before["userinfo"] == 2


def test_the_check_does_not_leave_a_token_for_the_fleet(configured: CliRunner) -> None:
    from gateway import create_app
    from gateway import store

    run(configured, "docusign", "check")
    app = create_app()
    with app.app_context(), store.get_engine().connect() as conn:
        rows = conn.execute(store.settings.select()).all()
    app.extensions["store"].dispose()
    assert [r.name for r in rows if "token" in r.name] == []


def test_emulator_down_says_it_may_have_restarted(owner: CliRunner) -> None:
    from sandbox import create_app as create_sandbox
    from sandbox.server import BackgroundServer

    run(owner, "init")
    server = BackgroundServer(create_sandbox())
    server.start()
    url = server.url
    run(owner, "docusign", "configure", "--sandbox", url)
    server.stop()
    out = lines(run(owner, "docusign", "check", code=1))
    assert out == [f"error: JWT grant: the emulator at {url} does not answer; it may have "
                   f"restarted: run `gateway docusign configure --sandbox {url}` again"]


def test_wrong_private_key_names_the_description_and_its_usual_cause(configured: CliRunner,
                                                                     sandbox: t.Any) -> None:
    keys = requests.get(sandbox.url + "/_sandbox/keys", timeout=5).json()
    for key_id in [k for ids in keys.values() for k in ids] if isinstance(keys, dict) else []:
        requests.delete(f"{sandbox.url}/_sandbox/keys/{key_id}", timeout=5).raise_for_status()
    out = lines(run(configured, "docusign", "check", code=1))
    assert len(out) == 1, out
    assert out[0].startswith("error: JWT grant: DocuSign refused the assertion "
                             "(invalid_grant: no_valid_keys_or_signatures)")
    assert "private key is wrong, or its public key is not registered" in out[0]


def test_consent_revoked_prints_the_url_and_the_redirect_uri(configured: CliRunner,
                                                             sandbox: t.Any) -> None:
    ids = info(sandbox)
    sandbox.post("/_sandbox/consent", {"integration_key": ids["integration_key"],
                                       "user_id": ids["user_id"], "granted": False})
    out = lines(run(configured, "docusign", "check", code=1))
    assert len(out) == 1
    assert "consent required" in out[0]
    assert f"{sandbox.url}/oauth/auth?response_type=code" in out[0]
    assert ("https://developers.docusign.com/platform/auth/consent) must be registered on the "
            "integration key") in out[0]


def test_unknown_user_and_unknown_integration_key(configured: CliRunner) -> None:
    change_settings(user_id=OTHER_GUID)
    out = lines(run(configured, "docusign", "check", code=1))
    assert "(invalid_grant: user_not_found)" in out[0] and "user id is wrong" in out[0]
    change_settings(integration_key=OTHER_GUID)
    out = lines(run(configured, "docusign", "check", code=1))
    assert "(invalid_grant: issuer_not_found)" in out[0] and "integration key is wrong" in out[0]


def test_clock_skew_is_named(configured: CliRunner, sandbox: t.Any) -> None:
    sandbox.advance(5000)  # the assertion (1 h) is already expired on DocuSign's clock
    out = lines(run(configured, "docusign", "check", code=1))
    assert len(out) == 1 and "expired_grant" in out[0] and "clock" in out[0]


def test_account_not_among_the_users_accounts(configured: CliRunner) -> None:
    change_settings(account_id=OTHER_GUID)
    out = lines(run(configured, "docusign", "check", code=1))
    assert len(out) == 1
    assert out[0].startswith(f"error: account: the configured account {OTHER_GUID} is not among "
                             "Gateway System Sender's accounts ('Sandbox Demo Account'")
