"""A bare Flask no-op route: the floor that gunicorn + Flask cost before the gateway does anything.

Served by the benchmarks with the same gunicorn settings as `gateway serve` (gthread, same
workers and threads): `gunicorn -k gthread -w N --threads T bench.bare:app`.
"""

from __future__ import annotations

from flask import Flask
from flask import jsonify
from flask.typing import ResponseReturnValue

app = Flask(__name__)


@app.get("/v1/envelopes/<envelope_id>")
def noop(envelope_id: str) -> ResponseReturnValue:
    """Answer a small JSON body, like the status read, with no work behind it."""
    return jsonify({"envelope_id": envelope_id, "status": "sent"})
