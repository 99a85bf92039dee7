"""Folder names: mUTF-7 round trips and the path mapping stays inside DEST."""

from __future__ import annotations

import os
import unicodedata
from pathlib import PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from archiver.names import (
    assign_path,
    decode_component,
    decode_mutf7,
    encode_component,
    encode_mutf7,
    fold_key,
    folder_path,
    logical_name,
)


def test_mutf7_known_values_match_rfc3501() -> None:
    assert encode_mutf7("受信箱") == b"&U9dP4Xux-"
    assert encode_mutf7("R&D") == b"R&-D"
    assert decode_mutf7(b"~peter/mail/&U,BTFw-/&ZeVnLIqe-") == "~peter/mail/台北/日本語"
    assert decode_mutf7(b"emoji &2D3c5w- box") == "emoji 📧 box"


def test_mutf7_malformed_input_is_kept_not_raised() -> None:
    assert decode_mutf7(b"broken &U9dP") == "broken &U9dP"
    assert decode_mutf7(b"bad &!!!-") == "bad &!!!-"
    assert decode_mutf7("already ünicode") == "already ünicode"


@given(st.text())
def test_mutf7_round_trips_any_text(name: str) -> None:
    name = name.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    assert decode_mutf7(encode_mutf7(name)) == name


def _inside(dest: str, rel: str) -> bool:
    full = os.path.normpath(os.path.join(dest, *rel.split("/")))
    return full.startswith(dest + os.sep)


HOSTILE = ["..", ".", "", "a/../b", "cur", "NEW", "tmp", ".archiver", "/etc/passwd",
           "a\x00b", "tab\there", "x" * 1000, "trailing.", "trailing ", "C:", "con",
           "a\\b", "100%", "%41", "%_x", "受信箱" * 100]


def test_hostile_components_stay_inside_and_are_plain_names() -> None:
    for comp in HOSTILE:
        enc = encode_component(comp)
        assert "/" not in enc and "\\" not in enc and "\x00" not in enc
        assert enc not in ("", ".", "..") and not enc.startswith(".")
        assert enc.lower() not in ("cur", "new", "tmp")
        assert len(enc.encode()) <= 255
        assert _inside("/dest", enc)


def test_reserved_and_dot_names_are_escaped_reversibly() -> None:
    for comp in ["..", "cur", "New", ".hidden", "a.", "%41", "a:b"]:
        assert decode_component(encode_component(comp)) == comp


def test_long_component_is_cut_with_a_hash_suffix() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert encode_component(a) != encode_component(b)
    assert len(encode_component(a).encode()) <= 200


@settings(max_examples=500)
@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=4))
def test_any_name_maps_inside_dest_and_round_trips(components: list[str]) -> None:
    rel = folder_path(components)
    assert _inside("/dest", rel)
    parts = PurePosixPath(rel).parts
    assert len(parts) <= len(components)  # fewer: a deep folder moved to the top (budget)
    if len(parts) == len(components):
        for comp, part in zip(components, parts):
            if "%_" not in part:  # not cut (the index keeps the names of cut ones)
                assert decode_component(part) == comp


def test_case_and_normalisation_twins_get_distinct_paths() -> None:
    taken: set[str] = set()
    paths = []
    for name in ["Work", "work", "WORK", unicodedata.normalize("NFC", "Café"),
                 unicodedata.normalize("NFD", "Café")]:
        p = assign_path((name,), taken)
        taken.add(p)
        paths.append(p)
    assert len({fold_key(p) for p in paths}) == len(paths)
    assert paths[0] == "Work"  # the first one keeps the plain name


def test_namespace_prefix_is_stripped_and_inbox_canonical() -> None:
    assert logical_name("INBOX.Sent", ".", "INBOX.") == ("Sent",)
    assert logical_name("INBOX", ".", "INBOX.") == ("INBOX",)
    assert logical_name("inbox", "/", "") == ("INBOX",)
    assert logical_name("a.b/c", "/", "") == ("a.b", "c")
    assert logical_name("受信箱/講義", "/", "") == ("受信箱", "講義")
