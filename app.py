"""WSGI entry point: `gunicorn app:app` (or `gateway serve`)."""

from gateway import create_app

app = create_app()
