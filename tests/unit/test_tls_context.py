"""A ``tls.ca_file`` that is no PEM file of bounded size is refused before OpenSSL reads it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from contracts.settings import TlsSettings
from services.runtime.errors import ConfigError
from services.runtime.tls import tls_context


def _waited(signum: int, frame: object) -> None:
    raise AssertionError("the CA file was waited on")


def _pipe(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "ca.pem")
    return tmp_path / "ca.pem"


def _huge(tmp_path: Path) -> Path:
    with (tmp_path / "ca.pem").open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    return tmp_path / "ca.pem"


@pytest.mark.parametrize(("make", "says"), [(_pipe, "is a named pipe"), (_huge, "64 MiB")])
def test_a_ca_file_that_is_no_pem_file_is_refused_at_once(tmp_path, make, says):
    # A named pipe would hold up every connection of the mailbox (`mailbox test` too)
    tls = TlsSettings(ca_file=str(make(tmp_path)))
    signal.signal(signal.SIGALRM, _waited)
    signal.alarm(20)
    try:
        with pytest.raises(ConfigError, match=f"mailbox 'm': tls.ca_file .* {says}"):
            tls_context(tls, who="mailbox 'm'")
    finally:
        signal.alarm(0)
