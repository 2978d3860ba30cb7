"""WSGI entry point: `gunicorn app:app` (or `gateway serve`).

It refuses to start without a usable master key: a gateway that cannot decrypt its
DocuSign credentials would only answer 500s.
"""

from gateway import create_app
from gateway.cli.serving import preflight

app = create_app()
with app.app_context():
    preflight(app, workers=1)
