"""Sinks write archived mail somewhere else: an IMAP server (:mod:`archiver.sinks.imap`).

Support modules: :mod:`archiver.sinks.journal` (what has landed on a target)
and :mod:`archiver.sinks.match` (is this message already on the target?).
"""
