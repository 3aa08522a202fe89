"""SecretBox: secrets and error logs are encrypted at rest with one key."""

from __future__ import annotations

import os
import signal
import stat

import pytest
from cryptography.fernet import Fernet

from services.runtime.crypto import SecretBox, create_key_file
from services.runtime.errors import ConfigError


def test_what_is_encrypted_decrypts_to_the_same_bytes():
    box = SecretBox(Fernet.generate_key())
    data = "Passwort: Grüße".encode() + b"\x00\xff"

    token = box.encrypt(data)

    assert data not in token
    assert box.decrypt(token) == data


def test_a_sealed_setting_is_prefixed_and_unseals_to_the_secret():
    box = SecretBox(Fernet.generate_key())

    sealed = box.seal("hunter2")

    assert sealed.startswith("enc:")
    assert "hunter2" not in sealed
    assert box.unseal(sealed) == "hunter2"


def test_a_value_that_was_never_sealed_unseals_as_itself():
    box = SecretBox(Fernet.generate_key())

    assert box.unseal("plain value") == "plain value"


def test_a_new_key_file_is_readable_only_by_its_owner(tmp_path):
    # Given no key and no key file yet
    key_file = tmp_path / "secret.key"

    # When a key file is made and a box opened with it
    create_key_file(key_file)
    box = SecretBox.from_key_or_file(None, key_file)

    # Then a key file exists with mode 0600 and the box works
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert box.decrypt(box.encrypt(b"log")) == b"log"


def test_a_missing_key_file_is_an_error_and_is_not_replaced(tmp_path):
    key_file = tmp_path / "secret.key"

    with pytest.raises(ConfigError, match="secret.key is missing: restore it from a backup"):
        SecretBox.from_key_or_file(None, key_file)

    assert not key_file.exists()


def test_an_existing_key_file_is_reused(tmp_path):
    # Given a secret encrypted by a first process
    key_file = tmp_path / "secret.key"
    create_key_file(key_file)
    token = SecretBox.from_key_or_file(None, key_file).encrypt(b"refresh token")
    key = key_file.read_bytes()

    # When a second process starts with the same key file
    create_key_file(key_file)
    again = SecretBox.from_key_or_file(None, key_file)

    # Then the key is unchanged and the secret decrypts
    assert key_file.read_bytes() == key
    assert again.decrypt(token) == b"refresh token"


def test_a_given_key_is_used_and_no_key_file_is_written(tmp_path):
    key = Fernet.generate_key()
    key_file = tmp_path / "secret.key"

    box = SecretBox.from_key_or_file(key.decode(), key_file)

    assert not key_file.exists()
    assert SecretBox(key).decrypt(box.encrypt(b"x")) == b"x"


def test_data_encrypted_with_another_key_is_a_config_error():
    token = SecretBox(Fernet.generate_key()).encrypt(b"secret")
    other = SecretBox(Fernet.generate_key())

    with pytest.raises(ConfigError, match="a key that is not in MAILROOM_SECRET_KEY"):
        other.decrypt(token)


def test_keys_rotate_new_first_old_still_decrypts():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = SecretBox(old).encrypt(b"before the rotation")
    rotated = SecretBox(new + b"," + old)

    assert rotated.decrypt(token) == b"before the rotation"
    assert SecretBox(new).decrypt(rotated.encrypt(b"after")) == b"after"
    with pytest.raises(ConfigError):
        SecretBox(new).decrypt(token)


def test_a_corrupted_token_is_a_config_error():
    box = SecretBox(Fernet.generate_key())

    with pytest.raises(ConfigError):
        box.decrypt(b"not a token")


@pytest.mark.parametrize(
    "key",
    ["not-a-key", "too-short==", Fernet.generate_key().decode()[:-4]],
    ids=["not-base64", "too-short", "truncated"],  # fixed ids: a random key differs per process
)
def test_an_invalid_secret_key_says_how_to_make_one(tmp_path, key):
    with pytest.raises(ConfigError) as caught:
        SecretBox.from_key_or_file(key, tmp_path / "secret.key")

    message = str(caught.value)
    assert "MAILROOM_SECRET_KEY" in message
    assert "Fernet.generate_key()" in message


def _waited(signum: int, frame: object) -> None:
    raise AssertionError("the key file was waited on or read for ever")


def _pipe(tmp_path):
    os.mkfifo(tmp_path / "secret.key")
    return tmp_path / "secret.key"


def _folder(tmp_path):
    (tmp_path / "secret.key").mkdir()
    return tmp_path / "secret.key"


def _huge(tmp_path):
    with (tmp_path / "secret.key").open("wb") as f:
        f.truncate(10 * 1024 * 1024)
    return tmp_path / "secret.key"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_pipe, "is a named pipe, not a file"),
        (_folder, "is a folder, not a file"),
        (_huge, "is over 64 KiB"),
    ],
)
def test_a_key_file_that_is_no_small_file_is_refused_at_once(tmp_path, make, says):
    signal.signal(signal.SIGALRM, _waited)
    signal.alarm(20)
    try:
        with pytest.raises(ConfigError, match=says):
            SecretBox.from_key_or_file(None, make(tmp_path))
    finally:
        signal.alarm(0)


def test_a_key_file_without_a_valid_key_is_named_not_the_variable(tmp_path):
    (tmp_path / "secret.key").write_text("helpdesks: []\n")

    with pytest.raises(ConfigError, match="the key file .*secret.key holds no valid key"):
        SecretBox.from_key_or_file(None, tmp_path / "secret.key")


def test_a_fingerdigestis_the_same_for_the_same_data_and_key_only():
    key = Fernet.generate_key()
    box, same, other = (
        SecretBox(key),
        SecretBox(key + b"," + Fernet.generate_key()),
        SecretBox(Fernet.generate_key()),
    )

    digest = box.fingerprint(b"hunter2")

    assert digest == same.fingerprint(b"hunter2")
    assert digest != box.fingerprint(b"hunter3")
    assert digest != other.fingerprint(b"hunter2")
    assert "hunter2" not in digest
