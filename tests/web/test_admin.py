"""The admin console: accounts, session cookie, CSRF, login limits, partners, revoke, rotate, audit."""

from __future__ import annotations

import re
import time
import typing as t

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from gateway import cli
from gateway import create_app
from gateway import store
from gateway.services import admin_accounts
from gateway.web.admin import access as admin
from tests.conftest import PartnerActions
from tests.conftest import add_partner
from tests.conftest import make_gateway

PASSWORD = "correct horse battery staple"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
_ONCE_RE = re.compile(r'name="once" value="([^"]+)"')


class Console:
    """A browser-like user of the console, through the test client."""

    def __init__(self, client: t.Any) -> None:
        self.client = client

    def form_token(self, path: str) -> str:
        page = self.client.get(path)
        assert page.status_code == 200, page.status_code
        match = _CSRF_RE.search(page.get_data(as_text=True))
        assert match, "no CSRF token on " + path
        return match.group(1)

    def login(self, username: str = "root", password: str = PASSWORD, **kw: t.Any) -> t.Any:
        token = self.form_token("/admin/login")
        return self.client.post("/admin/login", data={"csrf_token": token, "username": username,
                                                      "password": password}, **kw)

    def submit(self, path: str, **data: str) -> t.Any:
        """GET the form at `path`, then POST it back with its tokens."""
        page = self.client.get(path).get_data(as_text=True)
        fields = {"csrf_token": _CSRF_RE.search(page).group(1)}  # type: ignore[union-attr]
        once = _ONCE_RE.search(page)
        if once:
            fields["once"] = once.group(1)
        return self.client.post(path, data=fields | data)


#: a cheaper scrypt for speed; the CLI test checks the default's full cost
FAST_SCRYPT = "scrypt:1024:8:1"


@pytest.fixture
def root(app: t.Any) -> str:
    app.config["ADMIN_PASSWORD_METHOD"] = FAST_SCRYPT
    with app.app_context(), store.transaction() as conn:
        admin_accounts.create_admin(conn, "root", PASSWORD)
    return "root"


@pytest.fixture
def console(client: t.Any, root: str) -> Console:
    return Console(client)


@pytest.fixture
def signed_in(console: Console) -> Console:
    assert console.login().status_code == 303
    return console


def audit_ops(app: t.Any) -> list[tuple[str, str | None, int | None]]:
    with app.app_context(), store.transaction() as conn:
        rows = conn.execute(sa.select(store.audit_events.c.operation, store.audit_events.c.partner,
                                      store.audit_events.c.status)).all()
    return [tuple(r) for r in rows]


# --- accounts and the CLI ------------------------------------------------------------------


@pytest.fixture
def gateway_env(app: t.Any, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """The environment the `gateway` command needs to reach the test app's database."""
    monkeypatch.setenv("DATABASE_URL", app.config["DATABASE_URL"])
    monkeypatch.setenv("GATEWAY_MASTER_KEY", app.config["MASTER_KEY"])
    monkeypatch.setenv("GATEWAY_POLICY_DIR", app.config["POLICY_DIR"])
    return CliRunner()


def _admin_row(app: t.Any, username: str) -> t.Any:
    with app.app_context(), store.transaction() as conn:
        return conn.execute(sa.select(store.admins).where(store.admins.c.username == username)).first()


def test_admin_create_prompts_and_stores_a_scrypt_hash(app, gateway_env):
    result = gateway_env.invoke(cli.cli, ["admin", "create", "owner"], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "admin 'owner' created" in result.output
    row = _admin_row(app, "owner")
    # werkzeug's full-cost default: n=2**15, r=8, p=1
    assert row.password_hash.startswith("scrypt:32768:8:1$")
    assert PASSWORD not in row.password_hash


def test_only_scrypt_is_accepted_as_the_hash_method(app):
    app.config["ADMIN_PASSWORD_METHOD"] = "pbkdf2:sha256:1"
    with app.app_context(), store.transaction() as conn, pytest.raises(admin_accounts.AdminProblem):
        admin_accounts.create_admin(conn, "weak", PASSWORD)


def test_admin_create_reads_stdin_for_scripts(app, gateway_env):
    result = gateway_env.invoke(cli.cli, ["admin", "create", "ops", "--password-stdin"],
                                input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert Console(app.test_client()).login("ops").status_code == 303


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["admin", "create", "bad name"], "", "a username is 1 to 64"),
    (["admin", "create", "x", "--password-stdin"], "short\n", "at least 12 characters"),
    (["admin", "create", "root", "--password-stdin"], PASSWORD + "\n", "already exists"),
    (["admin", "set-password", "ghost", "--password-stdin"], PASSWORD + "\n", "no admin named 'ghost'"),
    (["admin", "delete", "ghost"], "", "no admin named 'ghost'"),
])
def test_admin_commands_fail_with_one_line(gateway_env, root, args, stdin, message):
    result = gateway_env.invoke(cli.cli, args, input=stdin)
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: ")
    assert message in result.output
    assert "Traceback" not in result.output


def test_admin_list_set_password_and_delete(app, gateway_env, root):
    assert "root" in gateway_env.invoke(cli.cli, ["admin", "list"]).output
    old_hash = _admin_row(app, "root").password_hash
    new = "another long passphrase"
    result = gateway_env.invoke(cli.cli, ["admin", "set-password", "root", "--password-stdin"],
                                input=new + "\n")
    assert result.exit_code == 0, result.output
    assert _admin_row(app, "root").password_hash != old_hash
    assert gateway_env.invoke(cli.cli, ["admin", "delete", "root"]).exit_code == 0
    assert _admin_row(app, "root") is None


def test_init_offers_to_create_the_first_admin(app, gateway_env, monkeypatch):
    monkeypatch.setattr(cli.common, "interactive", lambda: True)
    result = gateway_env.invoke(cli.cli, ["init"], input=f"first\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert "admin 'first' created" in result.output
    assert _admin_row(app, "first") is not None
    # and not again once there is one
    again = gateway_env.invoke(cli.cli, ["init"])
    assert "admin console" not in again.output


def test_init_without_a_terminal_only_hints(gateway_env):
    result = gateway_env.invoke(cli.cli, ["init"])
    assert result.exit_code == 0, result.output
    assert "run `gateway admin create NAME`" in result.output


# --- the session secret --------------------------------------------------------------------


def test_session_key_is_generated_once_and_stored_encrypted(app, client, tmp_path):
    assert app.secret_key is None
    client.get("/admin/login")
    key = app.secret_key
    assert key and len(key) >= 48
    with app.app_context(), store.transaction() as conn:
        row = conn.execute(sa.select(store.settings).where(
            store.settings.c.name == admin_accounts.SECRET_KEY_SETTING)).first()
    assert row.encrypted is True and key not in row.value
    # another instance on the same database signs with the same key: sessions survive it
    second = create_app({**{k: app.config[k] for k in ("DATABASE_URL", "MASTER_KEY", "POLICY_DIR")},
                         "TESTING": True})
    second.test_client().get("/admin/login")
    assert second.secret_key == key


def test_partner_traffic_never_loads_the_session_key(app, partner):
    assert partner.create().status_code == 201
    assert app.secret_key is None


@pytest.mark.parametrize("placeholder", ["dev", "changeme", "secret", "x" * 31])
def test_placeholder_secret_key_is_refused_outside_testing(tmp_path, placeholder):
    with pytest.raises(admin_accounts.SecretKeyUnsafe):
        create_app({"TESTING": False, "SECRET_KEY": placeholder,
                    "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})


def test_placeholder_secret_key_is_tolerated_in_tests(tmp_path):
    assert create_app({"TESTING": True, "SECRET_KEY": "dev",
                       "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}).secret_key == "dev"


def test_console_closed_when_the_key_cannot_be_read(tmp_path):
    app = make_gateway(tmp_path, None, None)
    app.extensions["store"] = store.make_engine(f"sqlite:///{tmp_path / 'blank.db'}")
    resp = app.test_client().get("/admin/login")
    assert resp.status_code == 503
    assert "unavailable" in resp.get_data(as_text=True)


# --- signing in ------------------------------------------------------------------------------


def _cookie(resp: t.Any) -> str:
    cookies = [v for v in resp.headers.getlist("Set-Cookie") if v.startswith("gateway_console=")]
    assert cookies
    return cookies[-1]


def console_at(tmp_path: t.Any, sandbox: t.Any, pem: str, public_url: str) -> Console:
    """A console on a gateway whose PUBLIC_URL (the one host it answers for) is given."""
    app = make_gateway(tmp_path, sandbox.url, pem, PUBLIC_URL=public_url,
                       ADMIN_PASSWORD_METHOD=FAST_SCRYPT)
    with app.app_context(), store.transaction() as conn:
        admin_accounts.create_admin(conn, "root", PASSWORD)
    return Console(app.test_client())


def test_sign_in_sets_a_strict_httponly_cookie_scoped_to_admin(tmp_path, sandbox, rsa_private_pem):
    console = console_at(tmp_path, sandbox, rsa_private_pem, "http://127.0.0.1:8080")
    resp = console.login()
    assert resp.status_code == 303
    assert resp.headers["Location"] == "/admin/"
    cookie = _cookie(resp)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/admin" in cookie
    # loopback over plain http (local use): a Secure cookie would never come back
    assert "Secure" not in cookie
    assert console.client.get("/admin/").status_code == 200


@pytest.mark.parametrize("base_url", ["http://gateway.example.com", "https://127.0.0.1"])
def test_cookie_is_secure_outside_loopback_or_over_tls(tmp_path, sandbox, rsa_private_pem, base_url):
    console = console_at(tmp_path, sandbox, rsa_private_pem, base_url)
    page = console.client.get("/admin/login", base_url=base_url)
    token = _CSRF_RE.search(page.get_data(as_text=True)).group(1)
    assert "Secure" in _cookie(page)
    if base_url.startswith("http://"):
        assert "not served over HTTPS" in page.get_data(as_text=True)
    if base_url.startswith("https://"):
        resp = console.client.post("/admin/login", base_url=base_url, data={
            "csrf_token": token, "username": "root", "password": PASSWORD})
        assert resp.status_code == 303
        assert "Secure" in _cookie(resp)


@pytest.mark.parametrize(("host", "loopback"), [
    ("localhost", True), ("localhost:8080", True), ("127.0.0.1", True), ("127.0.0.2:80", True),
    ("[::1]", True), ("[::1]:8080", True), ("gateway.example.com", False), ("10.0.0.1:443", False),
    ("[2001:db8::1]", False), ("[bad", False), ("", False),
])
def test_loopback_hosts(host, loopback):
    assert admin._loopback(host) is loopback


def test_wrong_password_is_refused_and_audited(app, console):
    resp = console.login(password="not the password")
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.get_data(as_text=True)
    assert console.client.get("/admin/").status_code == 303
    assert ("admin_login_failed", None, 401) in audit_ops(app)


def test_unknown_user_gets_the_same_answer(console):
    resp = console.login(username="nobody")
    assert resp.status_code == 401
    assert "Wrong username or password" in resp.get_data(as_text=True)


def test_login_form_needs_its_csrf_token(console):
    resp = console.client.post("/admin/login", data={"username": "root", "password": PASSWORD})
    assert resp.status_code == 403
    assert console.client.get("/admin/").status_code == 303


def test_sign_in_replaces_the_session(console):
    before = console.form_token("/admin/login")
    console.login()
    after = console.form_token("/admin/")
    assert before != after


def test_sign_out(signed_in):
    token = signed_in.form_token("/admin/")
    assert signed_in.client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert signed_in.client.get("/admin/").status_code == 303


def test_password_change_ends_open_sessions(app, signed_in):
    with app.app_context(), store.transaction() as conn:
        admin_accounts.set_password(conn, "root", "a brand new passphrase")
    assert signed_in.client.get("/admin/").status_code == 303


def test_sessions_expire(app, signed_in):
    app.config["ADMIN_SESSION_LIFETIME"] = 60
    with signed_in.client.session_transaction("/admin/") as sess:
        sess["at"] = time.time() - 61
    assert signed_in.client.get("/admin/").status_code == 303


def test_login_attempts_are_limited_per_username(app, console):
    app.config["ADMIN_LOGIN_RATE_LIMIT_USER"] = "3/minute"
    statuses = [console.login(password="wrong wrong wrong").status_code for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    # even the right password waits: the limit is on the username
    limited = console.login()
    assert limited.status_code == 429
    assert limited.headers["Retry-After"]
    assert "Too many sign-in attempts" in limited.get_data(as_text=True)


def test_login_attempts_are_limited_per_address(app, console):
    app.config["ADMIN_LOGIN_RATE_LIMIT_IP"] = "4/minute"
    statuses = [console.login(username=f"user{i}").status_code for i in range(5)]
    assert statuses == [401, 401, 401, 401, 429]


def test_successful_sign_ins_do_not_spend_the_budget(app, console):
    app.config["ADMIN_LOGIN_RATE_LIMIT_USER"] = "2/minute"
    assert [console.login().status_code for _ in range(4)] == [303] * 4


def test_login_rejections_are_counted_in_metrics(app, console):
    app.config["ADMIN_LOGIN_RATE_LIMIT_USER"] = "1/minute"
    console.login(password="wrong wrong wrong")
    console.login(password="wrong wrong wrong")
    metrics = console.client.get("/metrics").get_data(as_text=True)
    assert 'gateway_rate_limit_rejections_total{operation="admin.login",partner=""} 1.0' in metrics


# --- partner keys get nowhere -------------------------------------------------------------------


ADMIN_ROUTES = [("GET", "/admin/"), ("GET", "/admin/audit"), ("GET", "/admin/partners/example/revoke"),
                ("POST", "/admin/partners/example/revoke"), ("GET", "/admin/partners/example/rotate"),
                ("POST", "/admin/partners/example/rotate")]


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_a_partner_key_never_opens_the_console(app, client, partner, root, method, path):
    resp = client.open(path, method=method, headers=partner.headers)
    assert resp.status_code in (303, 401, 403)
    if resp.status_code == 303:
        assert resp.headers["Location"] == "/admin/login"
    assert partner.key not in resp.get_data(as_text=True)
    assert partner.status("nope").status_code == 404  # the key still works: nothing was revoked


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
def test_signed_out_users_get_the_login_page(client, root, method, path):
    # with a valid CSRF token, so it is the missing sign-in that stops the POSTs
    console = Console(client)
    token = console.form_token("/admin/login")
    resp = client.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
    if method == "GET":
        assert resp.status_code == 303 and resp.headers["Location"] == "/admin/login"
    else:
        assert resp.status_code == 401
        assert "Please sign in" in resp.get_data(as_text=True)


# --- partners, revoke, rotate ------------------------------------------------------------


def test_partners_page_shows_status_last_use_and_counts(app, signed_in, partner):
    add_partner(app, "other")
    partner.create()
    partner.status("missing")
    page = signed_in.client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    row = html[html.index('id="partner-example"'):html.index('id="partner-other"')]
    cells = re.findall(r'<td class="num">(\d+)</td>', row)
    assert cells == ["1", "2", "2", "1"]  # live keys, requests 24 h, requests, errors
    assert "never" not in row and "active" in row
    other = html[html.index('id="partner-other"'):]
    assert "never" in other


def test_revoke_asks_for_confirmation_then_bites_on_the_next_call(app, signed_in, partner):
    assert partner.status("x").status_code == 404
    confirm = signed_in.client.get("/admin/partners/example/revoke")
    assert confirm.status_code == 200
    assert "Revoke example?" in confirm.get_data(as_text=True)
    assert partner.status("x").status_code == 404  # nothing happens on GET
    done = signed_in.submit("/admin/partners/example/revoke")
    assert done.status_code == 303
    assert "revoked (1 key(s))" in signed_in.client.get("/admin/").get_data(as_text=True)
    after = partner.status("x")
    assert after.status_code == 401
    assert after.json["code"] == "key_revoked"
    assert ("admin_revoke", "example", 200) in audit_ops(app)


def test_revoke_without_csrf_token_is_refused(app, signed_in, partner):
    resp = signed_in.client.post("/admin/partners/example/revoke", data={})
    assert resp.status_code == 403
    forged = signed_in.client.post("/admin/partners/example/revoke", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert partner.status("x").status_code == 404


def test_revoking_twice_explains(signed_in, partner):
    signed_in.submit("/admin/partners/example/revoke")
    page = signed_in.client.get("/admin/partners/example/revoke").get_data(as_text=True)
    assert "already revoked" in page


def test_unknown_partner_is_404(signed_in):
    assert signed_in.client.get("/admin/partners/ghost/revoke").status_code == 404
    assert signed_in.client.get("/admin/partners/ghost/rotate").status_code == 404


def test_rotate_shows_the_new_key_once(app, client, signed_in, partner):
    shown = signed_in.submit("/admin/partners/example/rotate", grace="1h")
    assert shown.status_code == 200
    assert shown.headers["Cache-Control"] == "no-store"
    new_key = re.search(r'<pre class="secret" id="new-key">(pgw_[^<]+)</pre>',
                        shown.get_data(as_text=True)).group(1)
    assert new_key != partner.key
    fresh = PartnerActions(client, "example", new_key)
    assert fresh.status("x").status_code == 404
    assert partner.status("x").status_code == 404  # the old key works for the grace period
    for page in ("/admin/", "/admin/audit", "/admin/partners/example/rotate"):
        assert new_key not in signed_in.client.get(page).get_data(as_text=True)
    assert ("admin_rotate_key", "example", 200) in audit_ops(app)


def test_rotate_with_no_grace_ends_the_old_key_now(client, signed_in, partner):
    signed_in.submit("/admin/partners/example/rotate", grace="0")
    assert partner.status("x").json["code"] == "key_expired"


def test_a_replayed_rotate_form_issues_no_second_key(app, signed_in, partner):
    page = signed_in.client.get("/admin/partners/example/rotate").get_data(as_text=True)
    form = {"csrf_token": _CSRF_RE.search(page).group(1), "once": _ONCE_RE.search(page).group(1),
            "grace": "24h"}
    assert signed_in.client.post("/admin/partners/example/rotate", data=form).status_code == 200
    replay = signed_in.client.post("/admin/partners/example/rotate", data=form)
    assert replay.status_code == 303
    assert "already used" in signed_in.client.get("/admin/").get_data(as_text=True)
    assert [op for op, _, _ in audit_ops(app)].count("admin_rotate_key") == 1


def test_rotate_needs_a_known_grace(signed_in, partner):
    resp = signed_in.submit("/admin/partners/example/rotate", grace="forever")
    assert resp.status_code == 303
    assert "no new key was issued" in signed_in.client.get("/admin/").get_data(as_text=True)


# --- audit --------------------------------------------------------------------------------------


def test_audit_trail_filters(app, signed_in, partner):
    add_partner(app, "other")
    partner.create()
    partner.status("missing")
    client = signed_in.client
    everything = client.get("/admin/audit").get_data(as_text=True)
    assert "/v1/envelopes/missing" in everything and "admin_login" in everything
    by_status = client.get("/admin/audit?status=4xx").get_data(as_text=True)
    assert "/v1/envelopes/missing" in by_status and "POST /v1/envelopes" not in by_status
    exact = client.get("/admin/audit?status=201").get_data(as_text=True)
    assert "POST /v1/envelopes" in exact and "/v1/envelopes/missing" not in exact
    assert "/v1/envelopes/missing" not in client.get("/admin/audit?partner=other").get_data(as_text=True)
    with app.app_context(), store.transaction() as conn:
        conn.execute(store.audit_events.update().values(at=time.time() - 7200))
    assert "/v1/envelopes/missing" not in client.get("/admin/audit?since=1h").get_data(as_text=True)
    assert "/v1/envelopes/missing" in client.get("/admin/audit?since=24h").get_data(as_text=True)


@pytest.mark.parametrize(("query", "message"), [("since=forever", "Unknown period"),
                                                 ("status=abc", "Status must look like")])
def test_audit_trail_explains_bad_filters(signed_in, query, message):
    resp = signed_in.client.get("/admin/audit?" + query)
    assert resp.status_code == 200
    assert message in resp.get_data(as_text=True)


def test_console_pages_carry_protective_headers(signed_in):
    resp = signed_in.client.get("/admin/")
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
    with signed_in.client.get("/admin/static/admin.css") as css:
        assert css.status_code == 200


def test_console_pages_use_no_external_assets(signed_in):
    for path in ("/admin/", "/admin/audit", "/admin/login"):
        html = signed_in.client.get(path).get_data(as_text=True)
        for url in re.findall(r'(?:src|href|action)="([^"]+)"', html):
            assert url.startswith("/"), (path, url)
