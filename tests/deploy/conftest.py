"""Mailroom's image, built once per test run for every test that runs it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from podman_images import REPO, build, ensure_base_image, image_size

MAILROOM_IMAGE = "localhost/mailroom:latest"

Say = Callable[[str], None]


@pytest.fixture(scope="session")
def say(request: pytest.FixtureRequest) -> Say:
    """A line on the terminal, shown whether the tests pass or not."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def line(text: str) -> None:
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line(text)

    return line


@pytest.fixture(scope="session")
def mailroom_image(say: Say) -> str:
    """``localhost/mailroom:latest`` from deploy/Dockerfile, on the Debian base made here once
    per machine (podman's layer cache makes a rebuild of unchanged files quick)."""
    started = time.monotonic()
    made = ensure_base_image()
    build(MAILROOM_IMAGE, REPO, dockerfile=REPO / "deploy" / "Dockerfile")
    base = "made the Debian base image, then " if made else ""
    say(
        f"\n{base}built {MAILROOM_IMAGE} in {time.monotonic() - started:.0f} s: "
        f"{image_size(MAILROOM_IMAGE) / 1e6:.0f} MB"
    )
    return MAILROOM_IMAGE
