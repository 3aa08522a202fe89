"""Decoded bytes of one MIME part, decoded once and without extra copies of big payloads."""

from __future__ import annotations

import binascii
from email import policy
from email.message import Message

from services.parser.headers import first_raw
from services.parser.lenient_policy import LenientPolicy


def subparts(part: Message) -> list[Message]:
    """The parts inside a multipart or an attached message; a leaf has none."""
    if not part.is_multipart():
        return []
    return [p for p in part.get_payload() if isinstance(p, Message)]


# Writes an attached mail back out with its headers as they came, never refolded: refolding
# runs the header parser again, which is where the stdlib's bugs live. Each part's type is
# read as the parser read it: the writer of a part it took for a mail wants the mail.
_VERBATIM = LenientPolicy().clone(refold_source="none", linesep="\r\n")
# The older policy writes a header holding raw 8-bit bytes without parsing it again.
_VERBATIM_OLD = policy.compat32.clone(linesep="\r\n")
UUENCODED = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})


def transfer_encoding(part: Message) -> str:
    return first_raw(part, "Content-Transfer-Encoding").strip().lower()


def payload(part: Message) -> bytes:
    """Decoded bytes of a leaf part; message/* parts other than rfc822 as written.

    Base64, the encoding of nearly every big attachment, is decoded straight from the
    parsed text; the stdlib's own decoding makes several full-size copies on the way.
    """
    if part.is_multipart():
        # e.g. message/delivery-status: a list of header blocks, kept as text.
        return b"".join(message_bytes(sub) for sub in subparts(part))
    encoding = transfer_encoding(part)
    if encoding == "base64":
        fast = _base64(part.get_payload())
        if fast is not None:
            return fast
    if encoding in UUENCODED:
        return encoded_bytes(part)  # the caller finds the file in it; see uuencode.py
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def encoded_bytes(part: Message) -> bytes:
    """The payload still transfer-encoded (uuencoded text is ASCII; anything else in it is
    already damaged, and read as UTF-8)."""
    text = part.get_payload()
    if not isinstance(text, str):
        return b""
    try:
        return text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _base64(text: object) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return binascii.a2b_base64(text)
    except ValueError:  # not ASCII, or bad padding: the stdlib's lenient decoder takes over
        return None


def release(part: Message) -> None:
    """Drop the encoded payload of a part already decoded, so it is not held any longer."""
    part.set_payload("")


def message_bytes(inner: Message) -> bytes:
    """An attached mail written back out as bytes."""
    try:
        return inner.as_bytes(policy=_VERBATIM)
    except UnicodeEncodeError:  # stdlib bug: 8-bit text in an inner multipart without parts
        return inner.as_string(policy=_VERBATIM_OLD).encode("utf-8", "surrogateescape")
