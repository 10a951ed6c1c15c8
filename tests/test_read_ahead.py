"""The landing readers' read-ahead: same items in the same order, errors where they happened,
and a worker that stops when the consumer does."""

import threading

import pytest

from closeconv.read_ahead import read_ahead


def test_items_come_in_order_whatever_the_depth():
    for depth in (1, 3, 100):
        assert list(read_ahead(iter(range(50)), depth)) == list(range(50))


def test_an_error_of_the_producer_is_raised_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise EOFError("truncated gzip")

    seen = []
    with pytest.raises(EOFError, match="truncated gzip"):
        for item in read_ahead(items(), 8):
            seen.append(item)
    assert seen == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer_and_closes_it():
    closed = threading.Event()

    def items():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    ahead = read_ahead(items(), 2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    assert closed.is_set()
    assert not any(t.name == "closeconv-read-ahead" and t.is_alive() for t in threading.enumerate())
