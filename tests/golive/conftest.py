"""Fixtures for the owner's pre-flight checks."""

from __future__ import annotations

import typing as t

import pytest
from click.testing import CliRunner

from tests.golive.helpers import run


@pytest.fixture
def configured(owner: CliRunner, sandbox: t.Any) -> CliRunner:
    """An owner's shell wired to the emulator (a key registered, consent granted)."""
    run(owner, "init")
    run(owner, "docusign", "configure", "--sandbox", sandbox.url)
    return owner
