"""Packed archives: one account's archive as one compressed, random-access file.

:mod:`format` is the container byte by byte (docs/FORMAT.md, "Packed archive"),
:mod:`writer` makes a pack, :mod:`reader` reads files and byte ranges from one,
:mod:`view` lets every reading command use a pack as an archive, :mod:`unpack`
gives the tree back and :mod:`check` is ``verify`` on a pack.
"""
