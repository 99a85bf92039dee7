"""The folder escape holds Windows' and macOS's rules, checked on Linux where they cannot be
mounted (exFAT and NTFS are mounted in tests/integration/test_foreign_fs.py).

The oracle is tests/winpaths.py, written from the platforms' documentation,
not from archiver/names.py.
"""

from __future__ import annotations

import unicodedata

from hypothesis import example, given, settings
from hypothesis import strategies as st

from archiver.names import (
    PATH_BUDGET,
    assign_path,
    decode_component,
    encode_component,
    fold_key,
    folder_path,
    is_device_name,
)
from tests.winpaths import DEVICES, macos_key, units, win32_name_problem, windows_key

# names built to hit the rules: devices with extensions and odd case, refused
# characters, dots/spaces, case and normalisation twins, long and astral text
_PIECES = st.sampled_from(["CON", "con", "Nul", "nul.txt", "COM1", "lpt9.log", "AUX .x", "PRN.",
                           "a:b", "?", "*", "<>", '"', "|", "\\", ".", " ", "..", "cur", "%",
                           "%_", "Café", unicodedata.normalize("NFD", "Café"), "ß", "SS", "ı",
                           "I", "i", "ſ", "K", "\u212a", "受信箱", "📧", "x" * 90, "長" * 70])
_COMPONENT = st.lists(st.one_of(_PIECES, st.text(max_size=12)), min_size=1,
                      max_size=4).map("".join)
_NAME = st.lists(_COMPONENT, min_size=1, max_size=12).map(tuple)


def _assign_all(names: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Paths as a backup gives them: one by one, each distinct from those before."""
    taken: set[str] = set()
    folded: set[str] = set()
    out: dict[tuple[str, ...], str] = {}
    for name in names:
        if name in out:
            continue
        path = assign_path(name, taken, folded=folded)
        taken.add(path)
        folded.add(fold_key(path))
        out[name] = path
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(_NAME, min_size=1, max_size=12))
@example([("I",), ("ı",), ("i",), ("ſ",), ("S",), ("K",), ("\u212a",), ("ß",), ("SS",)])
@example([("Café",), (unicodedata.normalize("NFD", "Café"),), ("CAFÉ",)])
def test_any_folder_names_give_valid_distinct_windows_and_macos_paths(
        names: list[tuple[str, ...]]) -> None:
    paths = _assign_all(names)
    for name, path in paths.items():
        for part in path.split("/"):
            assert win32_name_problem(part) is None, (name, path, win32_name_problem(part))
            assert units(part) <= 255 and len(part.encode("utf-8", "surrogatepass")) <= 255
        assert units(path) <= PATH_BUDGET + 10, (name, path)  # + a twin's suffix
    # one directory per folder on Windows (upcase table) and macOS (NFD, case-insensitive)
    for key in (windows_key, macos_key):
        keys = [key(p) for p in paths.values()]
        assert len(set(keys)) == len(keys), key.__name__


@settings(max_examples=400, deadline=None)
@given(_NAME)
def test_each_path_maps_back_to_its_name_or_is_cut_visibly(name: tuple[str, ...]) -> None:
    path = folder_path(name)
    assert folder_path(name) == path  # a rerun gives the same path
    parts = path.split("/")
    if len(parts) == len(name):
        for component, part in zip(name, parts):
            if "%_" not in part:  # not cut: decodes to the server's name exactly
                assert decode_component(part) == component
            # else cut: the index and the snapshot keep the real name
    else:  # too deep for the budget: moved to a top-level %_<hash> directory
        assert any(p.startswith("%_") and len(p) == 18 for p in parts), path
    # a folder's children live inside its directory (the tree stays a tree), unless
    # the folder is the one moved to the top
    if len(name) > 1:
        parent = folder_path(name[:-1])
        moved = "/" not in path and path.startswith("%_") and len(path) == 18
        assert path.startswith(parent + "/") or moved, (path, parent)


def test_device_names_are_escaped_with_or_without_an_extension() -> None:
    for device in sorted(DEVICES):
        for name in (device, device.lower(), device.title(), f"{device}.txt",
                     f"{device.lower()}.tar.gz", f"{device} .log"):
            assert is_device_name(name)
            enc = encode_component(name)
            assert win32_name_problem(enc) is None, (name, enc)
            assert decode_component(enc) == name
    for fine in ("CONS", "console", "NULL.txt", "COM10", "LPT", "xCON", "AUX_", "Com1x.log"):
        assert not is_device_name(fine) and encode_component(fine) == fine


def test_a_long_deep_path_stays_within_the_budget_and_under_max_path() -> None:
    name = tuple(f"level{i:02d}-" + "長" * 20 for i in range(30))
    path = folder_path(name)
    longest_file = "/cur/4294967295.4294967295.archiver;2,DFPRST"
    dest = "C:\\Users\\Taro Yamada\\Documents\\mail\\"  # 35 characters
    assert units(path) <= PATH_BUDGET
    assert len(dest) + units(path) + 10 + len(longest_file) < 260
