"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from contracts.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The embedded deployment in this test's folder: in-memory broker, SQLite, a fresh key."""
    return Settings(
        broker_url="memory://",
        database_url=f"sqlite:///{tmp_path / 'db'}",
        secret_key=Fernet.generate_key().decode(),
        var_dir=tmp_path,
    )
