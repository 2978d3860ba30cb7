"""Run the emulator: in a background thread (tests, ``gateway demo``) or in the foreground."""

from __future__ import annotations

import socket
import threading
import typing as t

from werkzeug.serving import LISTEN_QUEUE
from werkzeug.serving import BaseWSGIServer
from werkzeug.serving import WSGIRequestHandler
from werkzeug.serving import get_sockaddr
from werkzeug.serving import make_server
from werkzeug.serving import select_address_family

if t.TYPE_CHECKING:
    from types import TracebackType

    from flask import Flask


POLL_INTERVAL = 0.05


class _QuietHandler(WSGIRequestHandler):
    """A request handler that does not print an access-log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def _make_server(
    host: str, port: int, app: t.Any, handler: type[WSGIRequestHandler] | None = None
) -> BaseWSGIServer:
    """A threaded werkzeug server on a socket we bind ourselves.

    werkzeug's own bind prints to stderr and calls ``sys.exit(1)`` when the port
    is taken; binding first turns that into a plain :class:`OSError` for the caller.
    """
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(LISTEN_QUEUE)
        # werkzeug duplicates the descriptor, so ours is closed right after
        return make_server(host, port, app, threaded=True, request_handler=handler, fd=sock.fileno())
    finally:
        sock.close()


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class BackgroundServer:
    """A threaded werkzeug server for ``app`` running in a daemon thread.

    Use as a context manager, or call :meth:`start` and :meth:`stop`::

        with BackgroundServer(create_app()) as server:
            requests.get(server.url + "/_sandbox/info")

    :param app: any WSGI app (usually :func:`sandbox.create_app`'s)
    :param host: interface to bind
    :param port: port to bind; 0 picks a free one (see :attr:`url`)
    :param quiet: suppress the per-request access log
    """

    def __init__(
        self, app: Flask | t.Any, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.quiet = quiet
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("server is not running")
        return _url(self.host, self._server.port)

    def start(self) -> BackgroundServer:
        """Bind the socket and start serving in a daemon thread."""
        if self._server is not None:
            raise RuntimeError("server already started")
        handler = _QuietHandler if self.quiet else None
        self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=handler)
        self.port = self._server.port
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            # a short poll keeps stop() fast (shutdown waits for one poll)
            kwargs={"poll_interval": POLL_INTERVAL},
            name=f"sandbox-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close the listening socket and join the thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(host: str, port: int, config: dict[str, t.Any] | None = None) -> None:
    """Serve the emulator in the foreground until Ctrl-C.

    :param host: interface to bind, e.g. ``127.0.0.1``
    :param port: TCP port, e.g. 8090
    :param config: overrides passed to :func:`sandbox.create_app`
    :raises OSError: if the address cannot be bound (port in use, ...)
    """
    from . import create_app
    from .constants import DEMO_ACCOUNT_ID
    from .constants import DEMO_INTEGRATION_KEY
    from .constants import DEMO_USER_ID

    app = create_app(config)
    server = _make_server(host, port, app)
    url = _url(host, server.port)
    print(f"DocuSign sandbox listening on {url}  (Ctrl-C to stop)", flush=True)
    print(f"  integration key {DEMO_INTEGRATION_KEY}", flush=True)
    print(f"  user id         {DEMO_USER_ID}", flush=True)
    print(f"  account id      {DEMO_ACCOUNT_ID}", flush=True)
    print(f"  control API     {url}/_sandbox/info", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("DocuSign sandbox stopped.", flush=True)
