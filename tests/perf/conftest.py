"""The PostgreSQL fixture of tests/services, for the round-trip counts."""

from tests.services.conftest import pg_url  # noqa: F401
