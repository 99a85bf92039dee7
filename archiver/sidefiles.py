"""Files other programs put beside an archive's mail, which are not mail.

Opening an archive in a mail program, or copying it with a desktop, leaves
files behind: Thunderbird's ``.msf`` summaries beside each mbox file, mutt's
and neomutt's dot-locks (``INBOX.lock``, ``.INBOX.lock``) and header caches
(``.mutt*``), Dovecot's control and index files in a Maildir folder it serves
(``dovecot-uidlist``, ``dovecot-keywords``, ``dovecot.index*``), and the
desktop's own (``.DS_Store``, macOS's ``._name`` AppleDouble files on FAT and
exFAT, Windows' ``Thumbs.db`` and ``desktop.ini``).  ``verify`` must not call
them "extra" mail, and ``reindex`` must not read them as folders or messages:
this is the one place that says which names those are.

A name is only passed over when the index does not know it: a folder whose own
name happens to end in ``.lock`` is still a folder.
"""

from __future__ import annotations

# Exact names (compared without case: FAT, exFAT and NTFS keep it loosely).
_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
# Name endings: Thunderbird's summaries; mutt's and neomutt's dot-locks (``.X.lock`` too).
_SUFFIXES = (".msf", ".lock")
# Name beginnings: mutt's caches, Dovecot's files (``dovecot-*``, ``dovecot.index*``),
# AppleDouble companions macOS writes on file systems without extended attributes.
_PREFIXES = (".mutt", "dovecot-", "dovecot.", "._")


def is_side_file(name: str) -> bool:
    """True for a file name (no directory) another program writes beside mail."""
    low = name.lower()
    return low in _NAMES or low.endswith(_SUFFIXES) or low.startswith(_PREFIXES)
