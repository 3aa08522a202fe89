"""The admin's side of ``mailroom oauth authorize``, for end-to-end tests."""

from __future__ import annotations

import subprocess

import requests
from harness import MAILROOM, Mailroom
from oauth_server import OAuthServer


def authorize(
    room: Mailroom, idp: OAuthServer, mailbox: str, *, paste: bool = False, check: bool = True
) -> str:
    """Run ``mailroom oauth authorize MAILBOX`` and be the browser it sends the admin to:
    consent at the fake IdP, then follow its redirect to the command's listener, or paste
    the redirected address (``paste``). Returns what the command said; with ``check`` it
    must succeed, else a refusal (before or after consent) is returned as said."""
    args = ["oauth", "authorize", mailbox, "--timeout", "30", *(["--paste"] if paste else [])]
    proc = subprocess.Popen(
        [*MAILROOM, *args],
        env=room.env,
        cwd=room.workdir,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        shown = ""
        while not (line := proc.stdout.readline()).startswith("https://"):
            if not line:  # refused before showing the URL
                out, err = proc.communicate(timeout=60)
                assert not check, f"no authorization URL in: {shown}{out}{err}"
                return shown + out + err
            shown += line
        with requests.Session() as browser:
            browser.trust_env = False
            consent = browser.get(line.strip(), verify=str(idp.ca_file), allow_redirects=False)
            back_to = consent.headers["Location"]
            if paste:
                proc.stdin.write(back_to + "\n")
                proc.stdin.flush()
            else:
                page = browser.get(back_to, timeout=10)
                assert not check or "Authorization received" in page.text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 or not check, err
    return shown + line + out + err
