"""archiver.restore.normal: the sizes a server may report and the normal form, against references.

The references are the rewrites written out plainly (tests/dovecot.served_form
is Dovecot's, checked against the real server in test_fixtures); the
Profiler computes the same from counts, in one streamed pass.
"""

from __future__ import annotations

import hashlib
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from archiver.restore.normal import IDENT_BYTES, head_ident, normal_form, profile
from tests.dovecot import served_form

FUZZ = settings(max_examples=1000, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# messages made of the bytes that matter: CR, LF, NUL and a few others
MESSAGES = st.one_of(
    st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"\0", b"a", b"b", b" ", b"\x80"]),
             max_size=60).map(b"".join),
    st.binary(max_size=200),
)


def lf_to_crlf(data: bytes) -> bytes:
    return re.sub(rb"(?<!\r)\n", b"\r\n", data)


def every_end_crlf(data: bytes) -> bytes:
    return re.sub(rb"\r\n|\r|\n", b"\r\n", data)


def courier(data: bytes) -> bytes:
    return data if data.endswith(b"\n") else data + b"\r\n"


REWRITES = {
    "kept": lambda d: d,
    "bare LF -> CRLF": lf_to_crlf,
    "final CRs dropped, bare LF -> CRLF": lambda d: lf_to_crlf(d.rstrip(b"\r")),
    "Dovecot": served_form,
    "every line end CRLF": every_end_crlf,
}


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    out, start = [], 0
    for p in points:
        out.append(data[start:p])
        start = p
    out.append(data[start:])
    return out


@FUZZ
@given(MESSAGES, st.lists(st.integers(0, 1000), max_size=8))
@example(b"a\r\r\nb\r", [2, 3])
@example(b"x\r\n\r", [1, 2, 3])
def test_profile_is_the_same_however_the_bytes_are_chunked(data: bytes, cuts: list[int]) -> None:
    assert profile(splits(data, cuts)) == profile([data])


@FUZZ
@given(MESSAGES)
@example(b"A\r\nB\nC\rD\n\rE")
@example(b"a\rb\r\r\n")
@example(b"")
def test_sizes_are_those_of_every_server_rewrite_with_and_without_a_final_crlf(
        data: bytes) -> None:
    want = set()
    for rewrite in REWRITES.values():
        form = rewrite(data)
        want |= {len(form), len(courier(form))}
    p = profile([data])
    assert p.sizes == want
    assert p.size == len(data) and p.sha256 == hashlib.sha256(data).hexdigest()


@FUZZ
@given(MESSAGES)
@example(b"From: x\rSubject: y\r\rbody\r")
@example(b"a\r\r\nb")
@example(b"a\r\r\r\r\r\nb\r\r\n")
def test_normal_form_survives_every_rewrite(data: bytes) -> None:
    norm = hashlib.sha256(normal_form(data)).hexdigest()
    assert profile([data]).norm == norm
    for name, rewrite in REWRITES.items():
        if name == "every line end CRLF" and b"\r\r\n" in data:
            continue  # the documented exception: CR CR LF is one line end or two
        for form in (rewrite(data), courier(rewrite(data))):
            assert profile([form]).norm == norm, (name, form)
    served = served_form(data)
    assert normal_form(served) == normal_form(data)


@FUZZ
@given(MESSAGES, st.integers(1, 300))
def test_head_identity_from_the_targets_first_bytes_matches_the_archived_one(
        data: bytes, head_bytes: int) -> None:
    served = served_form(data)
    head = served[:head_bytes]
    complete = len(head) >= len(served)
    if not complete and len(normal_form(head)) <= IDENT_BYTES:
        # the identity needs IDENT_BYTES of normal form or the whole message
        data = data * (IDENT_BYTES // max(1, len(data)) + 1) + b"x" * IDENT_BYTES
        served = served_form(data)
        head = served[:max(head_bytes, 4 * IDENT_BYTES)]
        complete = len(head) >= len(served)
        if not complete and len(normal_form(head)) <= IDENT_BYTES + 2:
            return
    assert head_ident(head, complete) == profile([data]).head
