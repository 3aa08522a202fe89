"""Behaviour every BlobStore must have: the in-memory fake and the store's blobs alike.

Handlers of every stage are unit-tested on ``InMemoryBlobStore``; these tests hold it to
what the store does on SQLite and PostgreSQL, through ``SqlBlobStore`` (one transaction per
call) and ``BlobsInTransaction`` (inside the caller's), and hold the poller's batch to it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from services.poller.rounds import BatchWrites
from services.runtime.ports import BlobStore
from services.runtime.store import BLOB_PIECE, BlobsInTransaction, SqlBlobStore, Store
from services.runtime.testing import InMemoryBlobStore

RAW = b"From: ann@example.org\r\nSubject: Printer\r\n\r\nGr\xfc\xdfe\x00\xff\r\n"


class BlobStoreContract:
    @pytest.fixture
    def blobs(self) -> Iterator[BlobStore]:
        raise NotImplementedError("an implementation's test class provides blobs")

    def test_a_blob_is_named_by_the_sha256_of_its_bytes_and_read_back_exactly(self, blobs):
        sha = blobs.put(RAW)

        assert sha == hashlib.sha256(RAW).hexdigest()
        got = blobs.get(sha)
        assert got == RAW and type(got) is bytes

    def test_storing_the_same_bytes_again_gives_the_same_name(self, blobs):
        first = blobs.put(RAW)
        again = blobs.put(bytes(RAW))

        assert again == first
        assert blobs.get(first) == RAW

    def test_different_bytes_get_different_names(self, blobs):
        names = {blobs.put(RAW), blobs.put(RAW + b"\r\n"), blobs.put(RAW.upper())}

        assert len(names) == 3
        assert {len(blobs.get(n)) for n in names} == {len(RAW), len(RAW) + 2}

    def test_an_empty_blob_is_a_blob(self, blobs):
        sha = blobs.put(b"")

        assert sha == hashlib.sha256(b"").hexdigest()
        assert blobs.get(sha) == b""

    def test_a_large_blob_is_kept_whole(self, blobs):
        big = bytes(range(256)) * (4 * 1024 * 4)  # 4 MiB, every byte value

        assert blobs.get(blobs.put(big)) == big

    def test_a_blob_read_in_several_pieces_is_read_back_whole(self, blobs):
        big = bytes(range(256)) * (2 * BLOB_PIECE // 256) + b"tail"  # two pieces and a bit

        assert blobs.get(blobs.put(big)) == big

    def test_a_blob_keeps_the_bytes_it_was_given_when_the_callers_buffer_changes(self, blobs):
        buffer = bytearray(RAW)
        sha = blobs.put(buffer)  # type: ignore[arg-type]
        buffer[:4] = b"XXXX"

        assert blobs.get(sha) == RAW

    @pytest.mark.parametrize(
        "name",
        [hashlib.sha256(b"never stored").hexdigest(), "", "../../etc/passwd", "0" * 64 + "%"],
    )
    def test_a_missing_blob_is_a_key_error(self, blobs, name):
        blobs.put(RAW)

        with pytest.raises(KeyError):
            blobs.get(name)

    def test_a_name_in_capitals_is_not_the_blob(self, blobs):
        # Names are the lower-case hex digests ``put`` returns, compared exactly.
        sha = blobs.put(RAW)

        with pytest.raises(KeyError):
            blobs.get(sha.upper())


# -- the in-memory fake used by unit tests --------------------------------------------------


class TestInMemoryBlobStore(BlobStoreContract):
    @pytest.fixture
    def blobs(self) -> Iterator[BlobStore]:
        yield InMemoryBlobStore()


# -- the poller's batch, whose blobs are read back before it is written -----------------------


class TestPollerBatch(BlobStoreContract):
    @pytest.fixture
    def blobs(self) -> Iterator[BlobStore]:
        yield BatchWrites()


# -- the store, on SQLite and PostgreSQL --------------------------------------------------


class TestSqlBlobStore(BlobStoreContract):
    @pytest.fixture
    def blobs(self, store: Store) -> Iterator[BlobStore]:
        yield SqlBlobStore(store)

    def test_a_blob_is_there_for_every_process_once_put(self, store: Store):
        sha = SqlBlobStore(store).put(RAW)

        other_process = SqlBlobStore(Store(store.url))
        assert other_process.get(sha) == RAW


class TestBlobsInTransaction(BlobStoreContract):
    @pytest.fixture
    def blobs(self, store: Store) -> Iterator[BlobStore]:
        with store.transaction() as conn:
            yield BlobsInTransaction(conn)

    def test_blobs_put_in_a_transaction_that_failed_are_not_kept(self, store: Store):
        with pytest.raises(RuntimeError), store.transaction() as conn:
            sha = BlobsInTransaction(conn).put(RAW)
            raise RuntimeError("the stage crashed before its commit")

        with pytest.raises(KeyError):
            SqlBlobStore(store).get(sha)
