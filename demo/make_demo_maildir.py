"""Write the bundled demo mailbox, ``demo/Maildir``, used by ``make run`` and the e2e tests.

Usage::

    python demo/make_demo_maildir.py [MAILDIR]

The output is deterministic: dates, Message-IDs, MIME boundaries and every attachment are
fixed, so a second run produces byte-identical files and the committed mails only change
when this script does. The mails land in ``new/`` under their Maildir keys; ``cur/`` and
``tmp/`` are left empty but for a ``.gitkeep``. See ``demo/README.md`` for what Mailroom is
expected to do with each mail.

Only the standard library is used. Two mails are written as raw bytes because the
``email`` package would otherwise "fix" them: demo-11's broken MIME structure and demo-12's
ISO-8859-1 encoded words, which it would re-encode as UTF-8.
"""

from __future__ import annotations

import argparse
import email
import quopri
import struct
import sys
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.errors import StartBoundaryNotFoundDefect
from email.message import EmailMessage
from email.policy import SMTP, default
from email.utils import format_datetime
from pathlib import Path

DEFAULT_MAILDIR = Path(__file__).resolve().parent / "Maildir"
MAILBOX_ADDRESS = "support@demo.example"
CET = timezone(timedelta(hours=1))

HEATHER = "Heather Lee <heather@zylker.example>"
MARCUS = "Marcus Okafor <marcus.okafor@northwind.example>"
PRIYA = "Priya Raman <priya.raman@contoso.example>"
DANIEL = "Daniel Weber <daniel.weber@contoso.example>"
TOM = "Tom Becker <tom.becker@fabrikam.example>"
AIKO = "Aiko Tanaka <aiko.tanaka@adatum.example>"
LUCAS = "Lucas Martin <lucas.martin@tailspin.example>"
SOFIA = "Sofia Rossi <sofia.rossi@wingtip.example>"
SCANNER = "Lobby Scanner <scanner@litware.example>"
ELODIE_NAME_Q = "=?ISO-8859-1?Q?=C9lodie_Fournier?="
ELODIE_ADDR = "elodie.fournier@lamaison.example"

SUBJECT_01 = "Printer on the 3rd floor keeps jamming"
SUBJECT_02 = "VPN disconnects every few minutes"
SUBJECT_03 = "Question about invoice 2026-118"
SUBJECT_12 = "Réservation salle de réunion - problème d'accès"

# The demo settings allow 1 MB per attachment; 1.3 MB is over it however "MB" is counted.
LOG_SIZE = 1_300_000


def message_id(number: int, sender: str) -> str:
    """``<demo-NN@domain>``, with the sender's domain, as their mail client would make it."""
    domain = sender.rstrip(">").rsplit("@", 1)[1]
    return f"<demo-{number:02d}@{domain}>"


def sent_at(day: int, hour: int, minute: int) -> str:
    return format_datetime(datetime(2026, 11, day, hour, minute, tzinfo=CET))


def new_mail(number: int, sender: str, subject: str, date: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = MAILBOX_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = date
    msg["Message-ID"] = message_id(number, sender)
    return msg


def text(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def serialize(msg: EmailMessage) -> bytes:
    # The SMTP policy writes CRLF line endings, as mail is stored by real delivery agents.
    return msg.as_bytes(policy=SMTP)


def with_attachment(msg: EmailMessage, number: int, data: bytes, ctype: str, name: str) -> bytes:
    maintype, subtype = ctype.split("/")
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    # A fixed boundary keeps the output byte-identical; the stdlib would pick a random one.
    msg.set_boundary(f"----=_Part_demo_{number:02d}_boundary")
    return serialize(msg)


def raw_mail(headers: list[str], body: str) -> bytes:
    lines = headers + [""] + body.splitlines()
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


# --- attachments -------------------------------------------------------------------------


def pdf_invoice() -> bytes:
    """A one-page PDF 1.4 reading "Invoice 2026-118", with a correct cross-reference table."""
    page_text = (
        b"BT /F1 24 Tf 72 760 Td (Invoice 2026-118) Tj ET\n"
        b"BT /F1 12 Tf 72 730 Td (Contoso Ltd - consulting services, October 2026) Tj ET\n"
        b"BT /F1 12 Tf 72 712 Td (Total due: EUR 4,250.00) Tj ET\n"
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(page_text), page_text),
        b"<< /Title (Invoice 2026-118) /CreationDate (D:20261103100000+01'00') >>",
    ]
    return pdf_document(objects, root=1, info=6)


def pdf_document(objects: list[bytes], root: int, info: int) -> bytes:
    # The binary comment after the header tells transfer tools the file is not plain text.
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset  # each entry is exactly 20 bytes, as the spec asks
    out += b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\n" % (len(objects) + 1, root, info)
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def pe_executable() -> bytes:
    """A 1 KiB 32-bit Windows GUI executable: DOS header, PE header, one .text section."""
    dos_stub = bytes.fromhex("0e1fba0e00b409cd21b8014ccd21")
    dos_stub += b"This program cannot be run in DOS mode.\r\r\n$"
    dos_header = b"MZ" + struct.pack("<13H", 0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40, 0)
    dos_header = dos_header.ljust(0x3C, b"\0") + struct.pack("<I", 0x80)  # e_lfanew
    headers = (dos_header + dos_stub).ljust(0x80, b"\0") + b"PE\0\0" + coff_headers()
    code = bytes.fromhex("31c0c3")  # xor eax, eax; ret
    return headers.ljust(0x200, b"\0") + code.ljust(0x200, b"\0")


def coff_headers() -> bytes:
    file_header = struct.pack("<HHIIIHH", 0x14C, 1, 0x6A0B2C40, 0, 0, 0xE0, 0x0102)
    optional = struct.pack(
        "<HBBIIIIIIIIIHHHHHHIIIIHHIIIIII",
        0x10B, 14, 0, 0x200, 0, 0, 0x1000, 0x1000, 0x2000,  # PE32 magic, linker, code layout
        0x400000, 0x1000, 0x200,  # image base, section and file alignment
        6, 0, 0, 0, 6, 0, 0,  # OS, image and subsystem versions
        0x2000, 0x200, 0, 2, 0x8140,  # image size, header size, checksum, GUI subsystem
        0x100000, 0x1000, 0x100000, 0x1000, 0, 16,  # stack and heap, 16 data directories
    )  # fmt: skip
    directories = bytes(16 * 8)
    text_section = b".text\0\0\0" + struct.pack(
        "<IIIIIIHHI", 0x10, 0x1000, 0x200, 0x200, 0, 0, 0, 0, 0x60000020
    )
    return file_header + optional + directories + text_section


def png_image() -> bytes:
    """An 8x8 RGB PNG: a blue-to-orange gradient."""
    rows = b"".join(
        b"\0" + b"".join(bytes((x * 32, 64 + y * 16, 255 - x * 32)) for x in range(8))
        for y in range(8)
    )
    header = struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib_stored(rows))
        + png_chunk(b"IEND", b"")
    )


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zlib_stored(data: bytes) -> bytes:
    # One uncompressed deflate block: compressed output differs between zlib builds (zlib-ng
    # for one), which would make the committed mail depend on the machine that wrote it.
    block = b"\x01" + struct.pack("<HH", len(data), len(data) ^ 0xFFFF) + data
    return b"\x78\x01" + block + struct.pack(">I", zlib.adler32(data))


def server_log() -> str:
    """About 1.3 MB of web-server access log from a morning of upstream timeouts."""
    lines: list[str] = []
    size = 0
    while size < LOG_SIZE:
        line = log_line(len(lines))
        lines.append(line)
        size += len(line) + 2  # CRLF once in the mail
    return text(*lines)


def log_line(i: int) -> str:
    paths = ["/api/orders", "/api/orders/10231", "/api/customers/884", "/login", "/static/app.js"]
    when = datetime(2026, 11, 9, 6, 30, tzinfo=CET) + timedelta(seconds=i)
    failing = when.hour >= 7 and i % 3 == 0
    status, took, size = (502, 30.001, 157) if failing else (200, 0.012 + (i % 40) / 1000, 2048)
    agent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
    return (
        f"10.0.{i % 7}.{(i * 37) % 250 + 2} - - [{when:%d/%b/%Y:%H:%M:%S %z}] "
        f'"GET {paths[i % len(paths)]} HTTP/1.1" {status} {size + i % 97} "-" "{agent}" '
        f"rt={took:.3f} upstream=10.0.8.{11 + i % 3}:8080"
    )


# --- the mails -----------------------------------------------------------------------------


def mail_01() -> bytes:
    msg = new_mail(1, HEATHER, SUBJECT_01, sent_at(2, 8, 47))
    msg.set_content(
        text(
            "Hello,",
            "",
            "The HP LaserJet next to the kitchen on the 3rd floor (asset tag ZY-PR-0312)",
            "jams on almost every print job since Friday. The paper gets stuck at the back",
            "and the display shows error 13.B2. I already removed the stuck sheets and",
            "loaded a fresh ream, but it still happens after two or three pages.",
            "",
            "Could someone take a look? Our team prints delivery notes all day.",
            "",
            "Thanks,",
            "Heather Lee",
            "Logistics, Zylker",
        )
    )
    return serialize(msg)


def mail_02() -> bytes:
    msg = new_mail(2, MARCUS, SUBJECT_02, sent_at(2, 10, 5))
    msg.set_content(
        text(
            "<html><body>",
            "<p>Hi support team,</p>",
            "<p>Since yesterday's update my VPN connection drops every few minutes while",
            "I work from home. What I have tried so far:</p>",
            "<ul>",
            "<li>restarting the laptop and the router</li>",
            "<li>switching from Wi-Fi to a cable</li>",
            "<li>reinstalling the VPN client</li>",
            "</ul>",
            "<p>The client shows <b>error 809</b> each time. I followed the steps on the",
            '<a href="https://intranet.northwind.example/it/vpn">VPN help page</a>',
            "without success.</p>",
            "<p>Best regards,<br>Marcus Okafor</p>",
            "</body></html>",
        ),
        subtype="html",
    )
    return serialize(msg)


def mail_03() -> bytes:
    msg = new_mail(3, PRIYA, SUBJECT_03, sent_at(3, 9, 12))
    # Daniel is on copy, which is why his out-of-office answers in demo-10.
    msg["Cc"] = DANIEL
    msg.set_content(
        text(
            "Good morning,",
            "",
            "Attached is invoice 2026-118 that we received for October. The total is",
            "EUR 4,250.00, but our purchase order PO-7731 was for EUR 3,900.00. Could you",
            "check whether the extra support hours were approved, or send a corrected",
            "invoice?",
            "",
            "Kind regards,",
            "Priya Raman",
            "Accounts Payable, Contoso",
        )
    )
    return with_attachment(msg, 3, pdf_invoice(), "application/pdf", "invoice-2026-118.pdf")


def mail_04() -> bytes:
    msg = new_mail(4, HEATHER, f"Re: {SUBJECT_01}", sent_at(3, 14, 30))
    msg["In-Reply-To"] = message_id(1, HEATHER)
    msg["References"] = message_id(1, HEATHER)
    msg.set_content(
        text(
            "Quick update: it now also jams when printing single pages from the tray 1.",
            "A colleague noticed a small piece of torn paper near the fuser door that we",
            "cannot reach.",
            "",
            "Heather",
            "",
            "On Mon, 2 Nov 2026 at 08:47, Heather Lee wrote:",
            "> The HP LaserJet next to the kitchen on the 3rd floor (asset tag ZY-PR-0312)",
            "> jams on almost every print job since Friday.",
        )
    )
    return serialize(msg)


def mail_05() -> bytes:
    # Only the subject tag ties this mail to request #2: the client dropped the thread headers.
    msg = new_mail(5, MARCUS, f"Re: [Request ##2##] {SUBJECT_02}", sent_at(4, 8, 55))
    msg.set_content(
        text(
            "Hi,",
            "",
            "Some more detail: the drops happen exactly every 10 minutes, also on the",
            "office guest network. My colleague with the older client version is fine.",
            "",
            "Marcus",
        )
    )
    return serialize(msg)


def mail_06() -> bytes:
    msg = new_mail(6, TOM, "Installer for the new label printer driver", sent_at(4, 11, 20))
    msg.set_content(
        text(
            "Hello IT,",
            "",
            "the vendor sent me this driver installer for the Zebra label printer in the",
            "warehouse. I don't have admin rights, so could you install it on WH-PC-04?",
            "",
            "Thanks,",
            "Tom Becker",
        )
    )
    return with_attachment(msg, 6, pe_executable(), "application/x-msdownload", "setup.exe")


def mail_07() -> bytes:
    msg = new_mail(7, AIKO, "Onboarding checklist for new starters", sent_at(5, 9, 40))
    msg.set_content(
        text(
            "Hi,",
            "",
            "we have three new starters on Monday 16 November. Please prepare laptops and",
            "accounts for them; the names and roles are in the attached notes.",
            "",
            "Best,",
            "Aiko Tanaka",
            "People Operations",
        )
    )
    return with_attachment(msg, 7, b"", "text/plain", "notes.txt")


def mail_08() -> bytes:
    msg = new_mail(8, LUCAS, "Docking station no longer charges my laptop", sent_at(6, 13, 15))
    msg.set_content(
        text(
            "Hello,",
            "",
            "my docking station stopped charging the laptop this morning; the monitors",
            "still work. I attached a photo of the status light.",
            "",
            "Lucas Martin",
        )
    )
    # A real PNG declared as text/plain: what a mislabelled or disguised file looks like.
    return with_attachment(msg, 8, png_image(), "text/plain", "photo.txt")


def mail_09() -> bytes:
    msg = new_mail(9, SOFIA, "Web shop returns 502 errors since 7:00", sent_at(9, 9, 3))
    msg.set_content(
        text(
            "Hi team,",
            "",
            "since about 7:00 this morning roughly a third of the requests to the web shop",
            "end with 502 Bad Gateway. The full access log of web-02 is attached.",
            "",
            "Sofia Rossi",
            "E-commerce, Wingtip",
        )
    )
    msg.add_attachment(server_log(), filename="server.log", cte="7bit")  # lines exceed 78
    msg.set_boundary("----=_Part_demo_09_boundary")
    return serialize(msg)


def mail_10() -> bytes:
    msg = new_mail(10, DANIEL, f"Automatic reply: {SUBJECT_03}", sent_at(10, 9, 13))
    msg["In-Reply-To"] = message_id(3, PRIYA)
    msg["References"] = message_id(3, PRIYA)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Autoreply"] = "yes"
    msg.set_content(
        text(
            "I am out of the office until 20 November with limited access to email.",
            "For urgent invoice questions please contact ap@contoso.example.",
            "",
            "Daniel Weber",
        )
    )
    return serialize(msg)


def mail_11() -> bytes:
    # The declared boundary never occurs: the scanner wrote its parts with another one.
    headers = [
        f"From: {SCANNER}",
        f"To: {MAILBOX_ADDRESS}",
        "Subject: Scanned document from LOBBY-MFP",
        f"Date: {sent_at(11, 7, 58)}",
        f"Message-ID: {message_id(11, SCANNER)}",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="never-used-boundary"',
    ]
    body = text(
        "This is a multi-part message in MIME format.",
        "",
        "--scan-part-0001",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        "Scanned document attached (1 page).",
        "--scan-part-0001--",
    )
    return raw_mail(headers, body)


def mail_12() -> bytes:
    headers = [
        f"From: {ELODIE_NAME_Q} <{ELODIE_ADDR}>",
        f"To: {MAILBOX_ADDRESS}",
        f"Subject: {encoded_words(SUBJECT_12, 'ISO-8859-1')}",
        f"Date: {sent_at(12, 16, 22)}",
        f"Message-ID: {message_id(12, ELODIE_ADDR)}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
    ]
    body = text(
        "Bonjour,",
        "",
        "Depuis ce matin, mon badge n'ouvre plus la salle de réunion",
        "« Étoile » au 2e étage. J'ai une réservation demain à 9 h",
        "avec des clients ; pourriez-vous vérifier mes droits d'accès ?",
        "",
        "Merci d'avance,",
        "Élodie Fournier",
    )
    return raw_mail(headers, quopri.encodestring(body.encode("iso-8859-1")).decode("ascii"))


def encoded_words(value: str, charset: str, width: int = 68) -> str:
    """RFC 2047 Q-encoding, split into encoded words of at most ``width`` characters.

    68 keeps a ``Subject:`` line within the 78 characters RFC 5322 recommends.
    """
    prefix, suffix = f"=?{charset}?Q?", "?="
    words, current = [], ""
    for byte in value.encode(charset):
        char = chr(byte)
        safe = char.isascii() and (char.isalnum() or char in "!*+-/")  # RFC 2047 5(3)
        piece = "_" if char == " " else char if safe else f"={byte:02X}"
        if len(prefix + current + piece + suffix) > width:
            words.append(prefix + current + suffix)
            current = ""
        current += piece
    words.append(prefix + current + suffix)
    return "\r\n ".join(words)  # folded: one encoded word per line


MAILS: dict[str, Callable[[], bytes]] = {
    "demo-01-plain-text": mail_01,
    "demo-02-html-only": mail_02,
    "demo-03-pdf": mail_03,
    "demo-04-reply": mail_04,
    "demo-05-tag-reply": mail_05,
    "demo-06-exe": mail_06,
    "demo-07-empty-attachment": mail_07,
    "demo-08-renamed-image": mail_08,
    "demo-09-oversize": mail_09,
    "demo-10-auto-reply": mail_10,
    "demo-11-broken-mime": mail_11,
    "demo-12-latin1-subject": mail_12,
}
BROKEN = {"demo-11-broken-mime"}


# --- writing and checking ------------------------------------------------------------------


def write_maildir(root: Path, mails: dict[str, bytes]) -> None:
    # Clear old output first, so a renamed or dropped mail does not linger in the demo.
    for sub in ("cur", "new", "tmp"):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            if stale.is_file():
                stale.unlink()
    for sub in ("cur", "tmp"):
        (root / sub / ".gitkeep").write_bytes(b"")
    for key, data in mails.items():
        (root / "new" / key).write_bytes(data)


def problems(key: str, data: bytes) -> list[str]:
    """What is wrong with one built mail; an empty list when it is as intended."""
    found = [] if b"\n" not in data.replace(b"\r\n", b"") else ["bare LF line ending"]
    msg = email.message_from_bytes(data, policy=default)
    defects = [type(d).__name__ for part in msg.walk() for d in part.defects]
    defects += [type(d).__name__ for part in msg.walk() for _, v in part.items() for d in v.defects]
    if key in BROKEN:
        if not any(isinstance(d, StartBoundaryNotFoundDefect) for d in msg.defects):
            found.append("expected StartBoundaryNotFoundDefect")
    elif defects:
        found.append(f"defects: {', '.join(defects)}")
    return found


def check(mails: dict[str, bytes]) -> list[str]:
    report = [f"{key}: {p}" for key, data in mails.items() for p in problems(key, data)]
    subject = email.message_from_bytes(mails["demo-12-latin1-subject"], policy=default)["subject"]
    if subject != SUBJECT_12:
        report.append(f"demo-12-latin1-subject: subject decodes to {subject!r}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("maildir", nargs="?", type=Path, default=DEFAULT_MAILDIR)
    args = parser.parse_args(argv)
    mails = {key: build() for key, build in MAILS.items()}
    report = check(mails)
    if report:
        print("\n".join(report), file=sys.stderr)
        return 1
    write_maildir(args.maildir, mails)
    print(f"wrote {len(mails)} mails to {args.maildir / 'new'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
