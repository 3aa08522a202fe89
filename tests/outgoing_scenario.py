"""A help desk that sends its notices over SMTP, and a mail that makes it send some.

The mail carries ``setup.exe``, which the help desk does not accept: the attachment is
stripped and the sender (``ann@example.org``) and the support reps get an email each.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

SENDER = "ann@example.org"
REPS = "reps@example.com"


def write_mail_with_an_exe(maildir: Path, key: str = "exe-1") -> None:
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    mail = EmailMessage()
    mail["From"] = f"Ann Example <{SENDER}>"
    mail["To"] = "support@example.com"
    mail["Subject"] = "Installer for the label printer"
    mail["Message-ID"] = f"<{key}@example.org>"
    mail["Date"] = "Tue, 03 Mar 2026 09:00:00 +0000"
    mail.set_content("The installer is attached.\n")
    executable = b"MZ" + bytes(1022)
    mail.add_attachment(
        executable, maintype="application", subtype="x-msdownload", filename="setup.exe"
    )
    (maildir / "new" / key).write_bytes(mail.as_bytes())


def settings(
    maildir: Path, smtp_port: int, *, first_retry_s: float = 0.2, **helpdesk: Any
) -> dict[str, Any]:
    """One help desk polling ``maildir`` every 3 s; failed emails are retried after
    ``first_retry_s``, then at most 2 s apart."""
    desk = {
        "id": "default",
        "notifications": {"support_reps": [REPS], "admins": ["admin@example.com"]},
        "outgoing": {
            "host": "127.0.0.1",
            "port": smtp_port,
            "from_address": "helpdesk@example.com",
            "retry": {"first_delay_seconds": first_retry_s, "max_delay_minutes": 2 / 60},
        },
        "mailboxes": [
            {
                "name": "support",
                "protocol": "maildir",
                "path": str(maildir),
                "addresses": ["support@example.com"],
                "fetch_every_minutes": 0.05,
            }
        ],
        **helpdesk,
    }
    return {"helpdesks": [desk]}


def emails(notifications: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The email notifications by their one recipient."""
    return {n["to"][0]: n for n in notifications if n["channel"] == "email"}
