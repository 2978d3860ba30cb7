"""pytest plugin: every eSignature REST exchange with an emulator, checked against DocuSign's OpenAPI.

Registered for the whole suite by one line in ``tests/conftest.py``
(``pytest_plugins = ["tests.fidelity.plugin"]``).

How: Flask's ``request_finished`` signal fires for every request any Flask app in
this process finishes (errors rendered by handlers included). The receiver keeps
only emulator apps (``app.extensions["sandbox"]``) and REST paths (``/restapi/``),
so the gateway, the example partner site, the emulator's account server
(``/oauth/*``: not in the swagger), signing pages and control API are out of scope.
No code is patched: every emulator made in this process, by any fixture, the demo
or the fleet helpers, is covered. Emulators in subprocesses (``gateway demo`` run
as a command) are not.

For each exchange it checks (see :mod:`tests.fidelity.openapi`): the response
against the operation's definition (``errorDetails`` for 4xx/5xx), and, unless the
test opts out, the query parameter names and the request body. Violations are
collected from the server threads and fail the test that caused them at its
teardown, one line per violation with the JSON path and the definition.

Request checks are off for the emulator's own tests (``tests/sandbox/``), which send
malformed bodies on purpose to test its refusals, and for a test marked
``@pytest.mark.docusign_lenient_request("why")``, which sends something DocuSign
accepts although its definitions do not allow it. Responses are always checked.
"""

from __future__ import annotations

import json
import threading
import typing as t
from pathlib import Path

import pytest
from flask import Flask
from flask import g
from flask import got_request_exception
from flask import request
from flask import request_finished

from tests.fidelity.openapi import check_exchange

EMULATOR_OWN_TESTS = Path(__file__).resolve().parents[1] / "sandbox"
MARKER = "docusign_lenient_request"


class _Guard:
    """Shared between the test thread and the emulators' server threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.check_requests = True
        self.problems: list[str] = []
        self.exchanges = 0
        # (method, path, query names, request body, status, response body) while a test records
        self.recording: list[tuple[str, str, list[str], t.Any, int, t.Any]] | None = None

    def add(self, problems: list[str], exchange: tuple[str, str, list[str], t.Any, int, t.Any]) -> None:
        with self.lock:
            self.exchanges += 1
            self.problems.extend(problems)
            if self.recording is not None:
                self.recording.append(exchange)

    def drain(self) -> list[str]:
        with self.lock:
            out, self.problems = self.problems, []
            return out


GUARD = _Guard()


def _json_or_none(raw: bytes) -> t.Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _is_emulator_rest(app: t.Any) -> bool:
    return "sandbox" in getattr(app, "extensions", {}) and request.path.startswith("/restapi/")


def _on_exception(sender: Flask, exception: BaseException, **_: t.Any) -> None:
    """A ``drop`` fault under the test client raises ConnectionResetError: no answer to check."""
    if _is_emulator_rest(sender) and isinstance(exception, ConnectionResetError):
        g.docusign_openapi_no_answer = True


def _on_request_finished(sender: Flask, response: t.Any, **_: t.Any) -> None:
    """Check one finished emulator REST exchange (runs in the emulator's thread)."""
    if not _is_emulator_rest(sender) or g.get("docusign_openapi_no_answer"):
        return
    if response.status_code == 500 and not response.get_data():
        return  # a ``drop`` fault over a real socket: the connection was shut, nothing was sent
    body = answer = None
    try:
        if request.method in ("POST", "PUT", "PATCH"):
            body = _json_or_none(request.get_data(cache=True))
        answer = response.get_json(silent=True) if response.is_json else None
        problems = check_exchange(request.method, request.path, list(request.args), body,
                                  response.status_code, answer, check_request=GUARD.check_requests)
    except Exception as exc:  # noqa: BLE001 - a validator bug must not break the emulator
        problems = [f"{request.method} {request.path}: the OpenAPI check itself failed: {exc!r}"]
    GUARD.add(problems, (request.method, request.path, list(request.args), body,
                         response.status_code, answer))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(reason): this test sends the emulator a request DocuSign accepts although "
        "its OpenAPI definitions do not allow it; the request is not checked (responses are)",
    )
    request_finished.connect(_on_request_finished, weak=False)
    got_request_exception.connect(_on_exception, weak=False)


def pytest_unconfigure(config: pytest.Config) -> None:
    request_finished.disconnect(_on_request_finished)
    got_request_exception.disconnect(_on_exception)


@pytest.fixture(autouse=True)
def _docusign_openapi_guard(request: pytest.FixtureRequest) -> t.Iterator[_Guard]:
    """Fail the test at teardown if any emulator REST exchange broke DocuSign's definitions."""
    own_tests = request.node.path.is_relative_to(EMULATOR_OWN_TESTS)
    GUARD.check_requests = not own_tests and request.node.get_closest_marker(MARKER) is None
    try:
        yield GUARD
    finally:
        problems = GUARD.drain()
        GUARD.check_requests = True
        GUARD.recording = None
    if problems:
        shown = "\n  ".join(dict.fromkeys(problems))  # once each, in order
        pytest.fail(
            f"{len(problems)} DocuSign OpenAPI violation(s) in emulator REST traffic "
            f"(tests/fidelity/plugin.py, definitions in tests/data/docusign-openapi/):\n  {shown}",
            pytrace=False,
        )
