"""Encryption at rest for secrets and error logs (Fernet: AES-128-CBC with HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from contracts.file_kinds import file_kind
from services.runtime.errors import ConfigError

ENCRYPTED_PREFIX = "enc:"


class SecretBox:
    """Encrypts with the first key and decrypts with any of them, so keys can be rotated:
    put the new key first, keep the old ones after it until nothing needs them."""

    def __init__(self, key: bytes) -> None:
        keys = [k.strip() for k in key.replace(b"\n", b",").split(b",") if k.strip()]
        try:
            self._fernet = MultiFernet([Fernet(k) for k in keys])
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "MAILROOM_SECRET_KEY is not a valid key: make one with `python -c "
                "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
            ) from exc
        # Fingerprints have a key of their own, derived from the first key, so that no digest
        # ever made with it could be mistaken for one of Fernet's own uses of the key.
        self._fingerprint_key = hmac.new(keys[0], b"mailroom fingerprint", hashlib.sha256).digest()

    @classmethod
    def from_key_or_file(cls, key: str | None, key_file: Path) -> SecretBox:
        """Use ``key`` when given, else the key file. A missing key file is an error: a new
        key would not read what the old one encrypted (``create_key_file`` makes the first)."""
        if key:
            return cls(key.encode())
        try:
            data = _read_key_file(key_file)
        except FileNotFoundError:
            raise ConfigError(
                f"the key file {key_file} is missing: restore it from a backup, or set "
                "MAILROOM_SECRET_KEY to the key; a new store gets its key from "
                "`mailroom config apply SETTINGS`"
            ) from None
        except OSError as exc:
            raise ConfigError(f"cannot read the key file {key_file}: {exc.strerror}") from None
        try:
            return cls(data)
        except ConfigError:
            raise ConfigError(
                f"the key file {key_file} holds no valid key: restore it from a backup, or "
                "set MAILROOM_SECRET_KEY to the key"
            ) from None

    def fingerprint(self, data: bytes) -> str:
        """A keyed digest of ``data`` (HMAC-SHA256): the same for the same data under the same
        first key, and telling nothing about the data to whoever lacks the key."""
        return hmac.new(self._fingerprint_key, data, hashlib.sha256).hexdigest()

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        """Raises ``ConfigError`` when the token was made with another key."""
        try:
            return self._fernet.decrypt(token)
        except InvalidToken as exc:
            raise ConfigError(
                "cannot decrypt: the data was encrypted with a key that is not in "
                "MAILROOM_SECRET_KEY (or the key file); add the old key after the new one"
            ) from exc

    def seal(self, text: str) -> str:
        """A secret setting as stored: prefixed ciphertext."""
        return ENCRYPTED_PREFIX + self.encrypt(text.encode()).decode()

    def unseal(self, value: str) -> str:
        if not value.startswith(ENCRYPTED_PREFIX):
            return value
        return self.decrypt(value[len(ENCRYPTED_PREFIX) :].encode()).decode()


#: Far more than a key file holds (44 bytes a key, a few during a rotation).
MAX_KEY_FILE_BYTES = 64 * 1024


def _read_key_file(key_file: Path) -> bytes:
    """The key file's text; a named pipe, device or huge file is refused, never waited on or
    read for ever (``MAILROOM_SECRET_KEY_FILE=/dev/zero``)."""
    fd = os.open(key_file, os.O_RDONLY | os.O_NONBLOCK)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ConfigError(f"the key file {key_file} is {file_kind(mode)}, not a file")
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(MAX_KEY_FILE_BYTES + 1)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise ConfigError(
            f"the key file {key_file} is over 64 KiB, far more than keys take: check that "
            "MAILROOM_SECRET_KEY_FILE names the key file"
        )
    return data.strip()


def create_key_file(path: Path) -> None:
    """Write a new key (mode 0600) where no reader can see it half-written; the first process
    wins. Its folder must exist."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
        os.link(tmp, path)  # fails if another process created the key first: keep theirs
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
