"""The background jobs of a serving process: one daemon thread per job, app and process.

The webhook sender and the audit sealer each run a round every few seconds. A job's
thread starts on the process's first request, not in `create_app`: the owner's one-shot
commands build an app too, and a gunicorn worker forks after import (threads do not
survive a fork). Across the fleet a lease (`store.leases`) keeps each job to one holder;
the thread hands its lease back when it stops or the process exits. A failing round
logs its traceback once per outage, then one line a round, and the loop goes on; it
ends if its SQLite file was deleted (a throwaway instance, e.g. the demo's).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import typing as t
from dataclasses import dataclass

from flask import Flask

from gateway import store
from gateway.store import leases

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """A periodic job: `step(app)` runs one round inside an app context."""

    name: str  # the thread's name; `<name>_stop` in app.extensions stops it
    switch: str  # the setting that turns it on (None: on unless TESTING)
    interval: str  # the setting with the seconds between rounds
    step: t.Callable[[Flask], t.Any]
    lease: str  # the lease row its rounds claim
    owner: str  # this process's lease owner id


def enabled(app: Flask, switch: str) -> bool:
    """A job's switch: None means on unless TESTING; strings like "false" turn it off."""
    value = app.config.get(switch)
    if value is None:
        return not app.config.get("TESTING")
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _database_file_gone(app: Flask) -> bool:
    with app.app_context():
        url = store.get_engine().url
    return (url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
            and not os.path.exists(url.database))


def _release(app: Flask, job: Job) -> None:
    try:
        with app.app_context():
            leases.release(job.lease, job.owner)
    except Exception:  # noqa: BLE001 - stopping either way
        log.debug("could not release the %s lease", job.name, exc_info=True)


def run_forever(app: Flask, job: Job, stop: threading.Event, interval: float) -> None:
    """A round every `interval` seconds until `stop` is set."""
    failing = False
    while not stop.is_set():
        try:
            with app.app_context():
                job.step(app)
            failing = False
        except Exception as exc:  # noqa: BLE001 - a loop that must outlive a bad round
            if _database_file_gone(app):
                return
            if not failing:
                log.exception("%s: round failed", job.name)
            else:
                log.warning("%s: still failing: %s", job.name, type(exc).__name__)
            failing = True
        stop.wait(interval)
    _release(app, job)


_started: dict[tuple[int, str], tuple[int, threading.Thread]] = {}
_start_lock = threading.Lock()


def start(app: Flask, job: Job) -> threading.Thread:
    """Start the job's thread for this app and process, unless it already runs."""
    with _start_lock:
        found = _started.get((id(app), job.name))
        if found and found[0] == os.getpid() and found[1].is_alive():
            return found[1]
        stop = threading.Event()
        thread = threading.Thread(target=run_forever, name=job.name, daemon=True,
                                  args=(app, job, stop, float(app.config[job.interval])))
        _started[(id(app), job.name)] = (os.getpid(), thread)
        app.extensions[f"{job.name.replace('-', '_')}_stop"] = stop
        thread.start()
        # a daemon thread dies with its worker without running its end: hand the lease
        # back at exit, so the next holder need not wait it out
        atexit.register(_release, app, job)
        return thread


def init_app(app: Flask, job: Job) -> None:
    """With the job's switch on, start its thread on the process's first request."""
    if not enabled(app, job.switch):
        return

    def _start_job() -> None:
        found = _started.get((id(app), job.name))  # no lock on the hot path once it runs
        if not (found and found[0] == os.getpid() and found[1].is_alive()):
            start(app, job)

    app.before_request(_start_job)
