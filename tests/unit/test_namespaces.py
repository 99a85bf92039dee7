"""Logical names per namespace, and two server folders never sharing one (issue 11)."""

from __future__ import annotations

from archiver.names import logical_name
from archiver.namespaces import (
    OTHER,
    PERSONAL,
    SHARED,
    Namespace,
    Namespaces,
    Recorded,
    choose,
    distinct,
    folder_name,
)
from archiver.sources.base import Folder

COURIER = Namespaces((Namespace("INBOX.", ".", PERSONAL),))
CYRUS = Namespaces((Namespace("INBOX.", ".", PERSONAL), Namespace("Other Users.", ".", OTHER),
                    Namespace("Shared Folders.", ".", SHARED)))
DOVECOT_SHARED = Namespaces((Namespace("", "/", PERSONAL), Namespace("shared/", "/", OTHER),
                             Namespace("public/", "/", SHARED)))


def _folder(name: str, ns: Namespaces, sep: str = ".", attrs: tuple[str, ...] = ()) -> Folder:
    comps, kind = folder_name(name, sep, ns)
    return Folder(name, name.encode(), sep, attrs, comps, kind)


def test_courier_child_named_inbox_is_not_the_inbox() -> None:
    assert logical_name("INBOX", ".", "INBOX.") == ("INBOX",)
    assert logical_name("INBOX.Inbox", ".", "INBOX.") == ("INBOX", "Inbox")
    assert logical_name("INBOX.Inbox.Sub", ".", "INBOX.") == ("INBOX", "Inbox", "Sub")
    assert logical_name("INBOX.inbox", ".", "INBOX.") == ("INBOX", "inbox")
    assert logical_name("INBOX.INBOX", ".", "INBOX.") == ("INBOX", "INBOX")
    assert logical_name("INBOX.Sent", ".", "INBOX.") == ("Sent",)  # unchanged
    assert logical_name("INBOX/Inbox", "/", "INBOX/") == ("INBOX", "Inbox")


def test_top_level_inbox_in_any_case_is_the_inbox_without_a_prefix() -> None:
    assert logical_name("Inbox", "/", "") == ("INBOX",)
    assert logical_name("inbox", ".", "INBOX.") == ("INBOX",)
    assert logical_name("INBOX/Inbox", "/", "") == ("INBOX", "Inbox")
    assert logical_name("Inbox/x", "/", "") == ("INBOX", "x")


def test_other_prefix_keeps_a_child_named_inbox_apart() -> None:
    assert logical_name("#mail/Inbox", "/", "#mail/") == ("#mail", "Inbox")
    assert logical_name("#mail/Work", "/", "#mail/") == ("Work",)


def test_other_users_and_shared_folders_get_a_marked_first_component() -> None:
    assert folder_name("Other Users.dora.Sent", ".", CYRUS) == (("#other", "dora", "Sent"), OTHER)
    assert folder_name("Shared Folders.news", ".", CYRUS) == (("#shared", "news"), SHARED)
    assert folder_name("Other Users", ".", CYRUS) == (("#other",), OTHER)
    assert folder_name("INBOX.Sent", ".", CYRUS) == (("Sent",), PERSONAL)
    assert folder_name("INBOX", ".", CYRUS) == (("INBOX",), PERSONAL)
    assert folder_name("shared/dora/INBOX", "/", DOVECOT_SHARED) == (
        ("#other", "dora", "INBOX"), OTHER)
    assert folder_name("shared", "/", DOVECOT_SHARED) == (("#other",), OTHER)
    assert folder_name("sharedstuff", "/", DOVECOT_SHARED) == (("sharedstuff",), PERSONAL)
    assert folder_name("Other Users.x", ".", Namespaces()) == (("Other Users", "x"), PERSONAL)


def test_the_personal_namespace_wins_over_a_shorter_foreign_prefix() -> None:
    ns = Namespaces((Namespace("Other Users.me.", ".", PERSONAL),
                     Namespace("Other Users.", ".", OTHER)))
    assert folder_name("Other Users.me.Sent", ".", ns) == (("Sent",), PERSONAL)
    assert folder_name("Other Users.dora.Sent", ".", ns)[1] == OTHER


def test_two_folders_with_one_logical_name_keep_the_first_and_report_the_second() -> None:
    a = Folder("Work", b"Work", "/", (), ("Work",))
    b = Folder("Work ", b"Work ", "/", (), ("Work",))  # as if a mapping merged them
    kept, refused = distinct([a, b], {})
    assert kept == [a]
    assert [f for f, _ in refused] == [b]
    assert "have the same name in the archive" in refused[0][1]
    assert "'Work '" in refused[0][1]


def test_the_folder_the_index_knows_keeps_its_name_on_a_rerun() -> None:
    a = Folder("Work", b"Work", "/", (), ("Work",))
    b = Folder("Work ", b"Work ", "/", (), ("Work",))
    kept, refused = distinct([a, b], {"Work": Recorded("Work ")})
    assert kept == [b] and [f for f, _ in refused] == [a]


def test_a_personal_folder_wins_over_another_namespace_and_none_mix_with_the_index() -> None:
    other = _folder("Other Users.dora", CYRUS)
    personal = Folder("#other.dora", b"#other.dora", ".", (), ("#other", "dora"))
    kept, refused = distinct([other, personal], {})
    assert kept == [personal] and [f for f, _ in refused] == [other]
    # the index holds "#other/dora" for a personal folder that is gone from the server now
    kept, refused = distinct([other], {"#other/dora": Recorded("#other.dora")})
    assert kept == [] and "already holds the personal folder" in refused[0][1]


def test_backup_takes_personal_folders_unless_all_namespaces() -> None:
    listed = [_folder("INBOX", CYRUS), _folder("INBOX.Sent", CYRUS),
              _folder("Other Users", CYRUS, attrs=("\\Noselect",)),
              _folder("Other Users.dora.Sent", CYRUS), _folder("Shared Folders.news", CYRUS)]
    choice = choose(listed, False, {})
    assert [f.name for f in choice.folders] == ["INBOX", "Sent"]
    assert choice.skipped == 2
    assert choice.note is not None and "use --all-namespaces" in choice.note
    assert choice.note.startswith("2 folders in other users' or shared namespaces")
    everything = choose(listed, True, {})
    assert [f.name for f in everything.folders] == [
        "INBOX", "Sent", "#other", "#other/dora/Sent", "#shared/news"]
    assert everything.note is None and not everything.problems


def test_courier_listing_gives_distinct_folders() -> None:
    listed = [_folder(n, COURIER) for n in ("INBOX", "INBOX.Inbox", "INBOX.Inbox.Sub",
                                            "INBOX.Sent")]
    choice = choose(listed, False, {})
    assert [f.name for f in choice.folders] == ["INBOX", "INBOX/Inbox", "INBOX/Inbox/Sub",
                                                 "Sent"]
    assert not choice.problems


CYRUS_DEBIAN = Namespaces((Namespace("INBOX.", ".", PERSONAL), Namespace("user.", ".", OTHER),
                           Namespace("", ".", SHARED)))


def test_cyrus_debian_defaults_put_shared_folders_under_the_empty_prefix() -> None:
    """Real Cyrus 3.6 with Debian's altnamespace: no answers NAMESPACE
    (("INBOX." ".")) (("user." ".")) (("" ".")): a folder outside INBOX. and user.
    (``shared.Notices``) is a shared folder, not a personal one."""
    assert folder_name("shared.Notices", ".", CYRUS_DEBIAN) == (
        ("#shared", "shared", "Notices"), SHARED)
    assert folder_name("user.dora.Sent", ".", CYRUS_DEBIAN) == (("#other", "dora", "Sent"), OTHER)
    assert folder_name("INBOX.Sent", ".", CYRUS_DEBIAN) == (("Sent",), PERSONAL)
    assert folder_name("INBOX", ".", CYRUS_DEBIAN) == (("INBOX",), PERSONAL)
    assert folder_name("sharedstuff", "/", DOVECOT_SHARED) == (("sharedstuff",), PERSONAL)
