"""exchangelib's XML parser is fed a SOAP answer in large chunks, not one byte at a time."""

from __future__ import annotations

import requests

from services.poller.sources.ews_protocol import READ_CHUNK, _read_in_chunks


def answer(size: int) -> requests.Response:
    response = requests.Response()
    response._content = b"x" * size
    response._content_consumed = True
    return response


def test_a_large_answer_is_parsed_in_chunks_and_arrives_whole():
    response = _read_in_chunks(answer(3 * READ_CHUNK + 5))

    chunks = list(response.iter_content())

    assert [len(c) for c in chunks] == [READ_CHUNK, READ_CHUNK, READ_CHUNK, 5]
    assert b"".join(chunks) == b"x" * (3 * READ_CHUNK + 5)


def test_a_caller_that_names_a_chunk_size_still_gets_it():
    response = _read_in_chunks(answer(10))

    assert [len(c) for c in response.iter_content(4)] == [4, 4, 2]
