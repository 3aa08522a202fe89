"""Headless Chromium from the distribution, driven by Playwright (its own browser download
cannot work here: ``executable_path`` points at the system's)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "e2e")]

#: Screenshots of the main views, linked from the README.
SCREENSHOTS = HERE.parents[1] / "docs" / "screenshots"


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise RuntimeError(
            "no chromium on PATH: `make test` installs it (scripts/install-system-deps.sh)"
        )
    return found


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True)
    yield browser
    browser.close()
