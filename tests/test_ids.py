"""Request ids: ULID layout (48-bit milliseconds, 80 random bits) in lower-case Crockford base32."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime, timedelta

from bot import domain

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def reference(value: int) -> str:
    """The encoding digit by digit, least significant first, as the ULID spec describes it."""
    digits = []
    for _ in range(26):
        digits.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(digits))


def test_the_encoding_matches_the_digit_by_digit_reference() -> None:
    rng = random.Random(7)
    for value in [0, 1, 2**128 - 1, *(rng.getrandbits(128) for _ in range(5000))]:
        assert "".join(domain._PAIRS[(value >> s) & 1023] for s in domain._SHIFTS) == reference(value)


def test_ids_sort_by_time_and_carry_the_millisecond() -> None:
    t0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    ids = [domain.new_id("req_", t0 + timedelta(milliseconds=ms)) for ms in (0, 1, 2, 1000, 86_400_000)]
    assert ids == sorted(ids)
    assert all(len(i) == 30 and set(i[4:]) <= set(CROCKFORD) for i in ids)
    decoded = 0
    for c in ids[0][4:14]:
        decoded = decoded * 32 + CROCKFORD.index(c)
    assert decoded == int(t0.timestamp() * 1000)


def test_ids_are_unique_and_a_forked_child_draws_its_own_randomness() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert len({domain.new_id("req_", now) for _ in range(20_000)}) == 20_000
    domain.new_id("req_", now)  # the parent holds buffered random bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, domain.new_id("req_", now).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child != domain.new_id("req_", now)


def _millis(rid: str) -> int:
    value = 0
    for c in rid[4:14]:
        value = value * 32 + CROCKFORD.index(c)
    return value


def test_ids_made_within_one_millisecond_sort_in_the_order_they_were_made() -> None:
    now = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
    ids = [domain.new_id("req_", now) for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000
    assert {_millis(i) for i in ids} == {int(now.timestamp() * 1000)}


def test_an_id_made_for_an_earlier_time_still_carries_its_own_millisecond() -> None:
    later = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
    earlier = later - timedelta(hours=1)
    domain.new_id("req_", later)
    rid = domain.new_id("req_", earlier)
    assert _millis(rid) == int(earlier.timestamp() * 1000)
