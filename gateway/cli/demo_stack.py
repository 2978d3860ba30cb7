"""`gateway demo`: the DocuSign emulator, the gateway and the example partner site, on loopback.

One process, three threaded werkzeug servers, one throwaway folder (a temporary
directory, deleted on exit) holding the SQLite database and the demo policy, and a master
key that lives only in memory: the demo never touches the owner's real instance. It runs
what an owner would run by hand (`init`, `docusign configure --sandbox`, Connect on the
emulator pointing at the gateway with a fresh HMAC secret, `partners add example`,
`partners webhook-secret example`, `admin create`) and hands the partner key and the
webhook secret to the example site in-process: they are never printed or written. The
console password is generated and printed once, since the owner needs it to sign in.

The example partner's policy points its `webhook_url` at the site, and the gateway's
webhook sender runs from the start (not only after the first request), so the site's
page turns "Completed" from a signed webhook once the owner countersigns on the
emulator's control page.

`DemoStack` is also what the end-to-end tests start (on free ports).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.resources
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
import typing as t
from importlib.resources.abc import Traversable
from pathlib import Path

from cryptography.fernet import Fernet
from flask import Flask
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import make_server

from gateway.errors import CLIError

HOST = "127.0.0.1"
DEFAULT_SANDBOX_PORT = 8090
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_SITE_PORT = 8070
PARTNER = "example"
ADMIN_USER = "owner"
SITE_HOOK_PATH = "/hooks/signing"  # examples.partner_site.hooks.HOOK_PATH
# packaged with the gateway (pyproject package-data), so an installed `gateway demo` finds it
# wherever it runs; policies/example.toml in the repository is a copy a test keeps identical
_EXAMPLE_POLICY: Traversable = importlib.resources.files("gateway.cli") / "data" / f"{PARTNER}.toml"


class PortInUse(Exception):
    """A demo server could not bind its port."""

    def __init__(self, role: str, port: int) -> None:
        super().__init__(f"port {port} ({role}) is already in use")
        self.role = role
        self.port = port


class _Slot:
    """A WSGI app that is plugged in after its server is bound (its URL needs the port)."""

    def __init__(self) -> None:
        self.app: t.Any = None

    def __call__(self, environ: dict[str, t.Any], start_response: t.Callable[..., t.Any]) -> t.Any:
        if self.app is None:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"starting\n"]
        return self.app(environ, start_response)


class _QuietHandler(WSGIRequestHandler):
    """No access log: relay URLs carry tokens, and the demo's terminal stays readable."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Server:
    """A threaded werkzeug server in a daemon thread, on a socket bound here.

    werkzeug's own bind prints to stderr and exits the process when the port is taken;
    binding first turns that into an OSError the demo can explain in one line.
    """

    def __init__(self, app: t.Any, port: int) -> None:
        self.app = app
        self.port = port
        self._server: t.Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, self.port))
            sock.listen(128)
            # werkzeug duplicates the descriptor, so ours is closed right after
            self._server = make_server(HOST, self.port, self.app, threaded=True,
                                       request_handler=_QuietHandler, fd=sock.fileno())
        finally:
            sock.close()
        self.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=f"demo-server-{self.port}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None


def demo_policy(template: str, site_url: str) -> str:
    """The example policy with its return URL, frame ancestor and webhook URL on `site_url`."""
    text, n_ret = re.subn(r"(?m)^return_urls\s*=.*$", f'return_urls = ["{site_url}/signed"]',
                          template)
    text, n_anc = re.subn(r"(?m)^frame_ancestors\s*=.*$", f'frame_ancestors = ["{site_url}"]', text)
    if n_ret != 1 or n_anc != 1:
        raise CLIError("the example policy needs one return_urls and one frame_ancestors line")
    hook = f'webhook_url = "{site_url}{SITE_HOOK_PATH}"'
    text, n_hook = re.subn(r"(?m)^webhook_url\s*=.*$", lambda _: hook, text)
    if n_hook == 0:  # a top-level key: right after `partner = ...`, before any [table]
        text, n_hook = re.subn(r"(?m)^(partner\s*=.*)$", lambda m: f"{m.group(1)}\n{hook}",
                               text, count=1)
    if n_hook != 1:
        raise CLIError("the example policy needs one partner line")
    return text


@contextlib.contextmanager
def _instance_env(path: str) -> t.Iterator[None]:
    """create_app reads its instance folder from the environment: point it here, briefly."""
    old = os.environ.get("GATEWAY_INSTANCE_PATH")
    os.environ["GATEWAY_INSTANCE_PATH"] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GATEWAY_INSTANCE_PATH", None)
        else:
            os.environ["GATEWAY_INSTANCE_PATH"] = old


class DemoStack:
    """Emulator + gateway + example site, wired together. Ports 0 pick free ones."""

    def __init__(self, *, sandbox_port: int = DEFAULT_SANDBOX_PORT,
                 gateway_port: int = DEFAULT_GATEWAY_PORT, site_port: int = DEFAULT_SITE_PORT,
                 policy_template: Path | Traversable | None = None,
                 sandbox_config: t.Mapping[str, t.Any] | None = None,
                 gateway_config: t.Mapping[str, t.Any] | None = None,
                 site_config: t.Mapping[str, t.Any] | None = None) -> None:
        self.ports = {"emulator": sandbox_port, "gateway": gateway_port, "example site": site_port}
        self.policy_template: Path | Traversable = policy_template or _EXAMPLE_POLICY
        self.sandbox_config = dict(sandbox_config or {})
        self.gateway_config = dict(gateway_config or {})
        self.site_config = dict(site_config or {})
        #: the console's login (username, password), made up at start
        self.admin: tuple[str, str] | None = None
        self.workdir: str | None = None
        self._sender_stop: threading.Event | None = None
        self._sender: threading.Thread | None = None
        self.servers: dict[str, t.Any] = {}
        self.gateway_app: Flask | None = None
        self.sandbox_app: Flask | None = None
        self.site_app: Flask | None = None
        self._slots = {"gateway": _Slot(), "example site": _Slot()}

    def url(self, role: str) -> str:
        return str(self.servers[role].url)

    @property
    def sandbox_url(self) -> str:
        return self.url("emulator")

    @property
    def gateway_url(self) -> str:
        return self.url("gateway")

    @property
    def site_url(self) -> str:
        return self.url("example site")

    @property
    def console_url(self) -> str:
        return self.gateway_url + "/admin/"

    @property
    def control_url(self) -> str:
        """The emulator's page where the owner's countersigner signs (remotely, by email)."""
        return self.sandbox_url + "/_sandbox/"

    def start(self) -> DemoStack:
        """Bind all three ports first (nothing is configured if one is taken), then wire up."""
        try:
            template = self.policy_template.read_text(encoding="utf-8")
        except OSError as exc:
            raise CLIError(f"cannot read {self.policy_template}: {exc.strerror}") from None
        try:
            self._bind()
            self.workdir = tempfile.mkdtemp(prefix="gateway-demo-")
            key, webhook_secret = self._gateway(demo_policy(template, self.site_url))
            self._site(key, webhook_secret)
            self._start_sender()
        except BaseException:
            self.stop()
            raise
        return self

    def _bind(self) -> None:
        from sandbox import create_app as create_sandbox

        self.sandbox_app = create_sandbox(self.sandbox_config)
        apps = {"emulator": self.sandbox_app, **self._slots}
        for role, app in apps.items():
            server = _Server(app, self.ports[role])
            try:
                server.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise PortInUse(role, self.ports[role]) from None
                raise
            self.servers[role] = server

    def _gateway(self, policy: str) -> tuple[str, str]:
        """Build and configure the gateway; the example partner's key and webhook secret."""
        import sqlalchemy as sa

        from gateway import create_app
        from gateway import store
        from gateway import upstream
        from gateway.services import admin_accounts
        from gateway.services import connect_messages
        from gateway.services import partner_keys as keys
        from gateway.services import signing_keys
        from gateway.services import webhook_secrets
        from gateway.web.connect import WEBHOOK_PATH

        assert self.workdir is not None
        policy_dir = Path(self.workdir, "policies")
        policy_dir.mkdir()
        (policy_dir / f"{PARTNER}.toml").write_text(policy, encoding="utf-8")
        with _instance_env(os.path.join(self.workdir, "instance")):
            app = create_app({
                "DATABASE_URL": "sqlite:///" + os.path.join(self.workdir, "gateway.db"),
                "MASTER_KEY": Fernet.generate_key().decode("ascii"),
                "POLICY_DIR": str(policy_dir),
                "PUBLIC_URL": self.gateway_url,
                "RATELIMIT_STORAGE_URI": "memory://",
                **self.gateway_config,
            })
        self.gateway_app = app
        with app.app_context():
            store.init_db(store.get_engine())
            settings = upstream.configure_sandbox(self.sandbox_url)
            with store.transaction() as conn:
                keys.ensure_pepper(conn)
                signing_keys.ensure_keys(conn)
                upstream.save_settings(conn, settings, now=time.time())
                _, secret = connect_messages.add_secret(conn, now=time.time())
                partner_key = keys.add_partner(conn, PARTNER)
                partner_id = conn.execute(sa.select(store.partners.c.id)
                                          .where(store.partners.c.name == PARTNER)).scalar_one()
                webhook_secret = webhook_secrets.rotate(conn, partner_id, 0.0, time.time())
                password = secrets.token_urlsafe(18)
                admin_accounts.create_admin(conn, ADMIN_USER, password)
            self.admin = (ADMIN_USER, password)
            connect_messages.configure_sandbox_connect(self.sandbox_url,
                                               self.gateway_url + WEBHOOK_PATH, [secret])
        self._slots["gateway"].app = app
        return partner_key, webhook_secret

    def _site(self, partner_key: str, webhook_secret: str) -> None:
        from examples.partner_site import create_app as create_site

        self.site_app = create_site({"GATEWAY_URL": self.gateway_url, "GATEWAY_KEY": partner_key,
                                     "PARTNER": PARTNER, "SITE_URL": self.site_url,
                                     "WEBHOOK_SECRET": webhook_secret, **self.site_config})
        self._slots["example site"].app = self.site_app

    def _start_sender(self) -> None:
        """The webhook sender, now: not left to a first request, which may come late or never.

        The gateway's own first-request hook then finds it running (a job's thread is once
        per app and process), so there is one sender; `stop()` ends it.
        """
        from gateway.services import background
        from gateway.services import webhook_sender

        assert self.gateway_app is not None
        self._sender = background.start(self.gateway_app, webhook_sender.JOB)
        self._sender_stop = self.gateway_app.extensions["webhook_sender_stop"]

    def stop(self) -> None:
        """Stop the servers (site first) and the sender, close the database, delete the folder."""
        for role in ("example site", "gateway", "emulator"):
            server = self.servers.pop(role, None)
            if server is not None:
                server.stop()
        if self._sender_stop is not None and self._sender is not None:
            self._sender_stop.set()
            self._sender.join(timeout=15)  # a POST in flight ends within WEBHOOK_TIMEOUT
            self._sender = self._sender_stop = None
        if self.gateway_app is not None:
            sealer = self.gateway_app.extensions.get("audit_sealer_stop")
            if sealer is not None:
                sealer.set()
            self.gateway_app.extensions["store"].dispose()
            self.gateway_app = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> DemoStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
