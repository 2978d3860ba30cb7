"""Fixtures for the PostgreSQL / Redis tests; the helpers live in `tests/services/fleet.py`."""

from __future__ import annotations

import typing as t

import pytest

from tests.services.fleet import pg_schema


@pytest.fixture
def pg_url() -> t.Iterator[str]:
    """A SQLAlchemy URL for a fresh PostgreSQL schema, dropped after the test."""
    with pg_schema() as url:
        yield url
