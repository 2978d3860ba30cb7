"""Issue 16 finding 9, at the front proxy: the errors nginx answers itself (bad HTTP, too
long, too large, gateway down) are problem+json too, and the gateway's own answers pass.

A real nginx (deploy/nginx.conf, its upstreams pointed at loopback) runs when installed;
the static checks run everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import typing as t
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request
from werkzeug.wrappers import Response

from tests.conftest import ROOT
from tests.conftest import service_or_skip
from tests.security.throwaway import free_port

CONF = (ROOT / "deploy" / "nginx.conf").read_text()
NGINX_ERRORS = (400, 404, 413, 414, 431, 502, 503, 504)


def _locations() -> dict[int, dict[str, t.Any]]:
    found = {}
    for status, body in re.findall(r"return (\d{3}) '(\{.*?\})';", CONF):
        found[int(status)] = json.loads(body.replace("$request_id", "rid"))
    return found


def test_every_error_nginx_makes_has_a_problem_page() -> None:
    pages = _locations()
    for status in NGINX_ERRORS:
        problem = pages[status]
        assert problem["status"] == status
        assert re.fullmatch(r"[a-z_]+", problem["code"])
        assert problem["type"].endswith(":" + problem["code"])
        assert set(problem) == {"type", "title", "status", "detail", "code", "request_id"}
    mapped = dict(re.findall(r"error_page (\d{3}) =(\d{3}) /\.problem/\d{3};", CONF))
    assert {int(v) for v in mapped.values()} == set(NGINX_ERRORS)
    assert mapped["494"] == "431"
    # the gateway's own answers are never replaced
    assert not re.search(r"^\s*proxy_intercept_errors\s+on", CONF, re.M)


def test_nginx_refuses_what_gunicorn_would_answer_in_html() -> None:
    from gunicorn.config import Config

    cfg = Config()
    size = re.search(r"large_client_header_buffers\s+\d+\s+(\d+)k;", CONF)
    assert size is not None
    buffer = int(size.group(1)) * 1024
    # a line must fit one buffer with its CRLF
    assert buffer - 2 <= cfg.limit_request_line
    assert buffer - 2 <= cfg.limit_request_field_size


def _upstream_app(environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
    request = Request(environ)
    if request.path == "/gateway-problem":
        body = json.dumps({"type": "urn:partner-gateway:problem:malformed_json", "title": "x",
                           "status": 400, "detail": "from the gateway", "code": "malformed_json",
                           "request_id": "r"})
        return Response(body, status=400, mimetype="application/problem+json")(environ, start_response)
    return Response("{}", mimetype="application/json")(environ, start_response)


@pytest.fixture
def nginx(tmp_path: Path) -> t.Iterator[str]:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    holder: list[str] = []

    def found() -> None:
        if not binary:
            raise RuntimeError("nginx is not installed")
        holder.append(binary)

    service_or_skip("nginx", found)
    upstream = make_server("127.0.0.1", 0, _upstream_app, threaded=True)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    dead_port = free_port()  # nothing listens here: the second upstream is "down"
    port = free_port()
    conf = CONF.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    conf = re.sub(r"(\s*server gateway1:8080;)\s*server gateway2:8080;",
                  f"\n        server 127.0.0.1:{upstream.server_port};", conf)
    conf = conf.replace("keepalive 32;", "keepalive 32;\n    }\n    upstream down {\n"
                        f"        server 127.0.0.1:{dead_port};")
    conf = conf.replace("location / {", "location /down/ {\n            proxy_pass http://down;\n"
                        "        }\n\n        location / {", 1)
    for directive in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        conf = conf.replace("http {", f"http {{\n    {directive}_temp_path {tmp_path}/{directive};", 1)
    (tmp_path / "nginx.conf").write_text(conf)
    log = tmp_path / "nginx.log"
    process = subprocess.Popen(
        [holder[0], "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", str(log),
         "-g", f"pid {tmp_path}/nginx.pid; daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        if process.poll() is not None:
            raise AssertionError(log.read_text() if log.exists() else "nginx died")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)
    upstream.shutdown()


def problem(resp: requests.Response, status: int) -> dict[str, t.Any]:
    assert resp.status_code == status, resp.text[:300]
    assert resp.headers["Content-Type"] == "application/problem+json"
    body = t.cast(dict[str, t.Any], resp.json())
    assert body["status"] == status and re.fullmatch(r"[0-9a-f]{32}", body["request_id"])
    return body


def raw(base: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def test_nginx_answers_its_own_errors_as_problems(nginx: str) -> None:
    assert requests.get(nginx + "/v1/templates", timeout=10).status_code == 200
    problem(requests.get(nginx + "/metrics", timeout=10), 404)
    problem(requests.get(nginx + "/v1/" + "a" * 5000, timeout=10), 414)
    problem(requests.get(nginx + "/v1/templates", headers={"X-Big": "b" * 5000}, timeout=10), 431)
    problem(requests.post(nginx + "/v1/envelopes", data=b"x" * 70_000, timeout=10), 413)
    down = problem(requests.get(nginx + "/down/x", timeout=30), 502)
    assert down["code"] == "gateway_unavailable"
    status, headers, body = raw(nginx, b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n")
    assert status == 400 and headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["code"] == "bad_request"


def test_the_gateways_own_errors_pass_through(nginx: str) -> None:
    resp = requests.get(nginx + "/gateway-problem", timeout=10)
    assert resp.status_code == 400
    assert resp.json()["detail"] == "from the gateway"
