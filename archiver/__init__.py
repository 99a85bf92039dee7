"""archiver: take a whole mailbox off an IMAP or POP3 server into plain local files."""

__version__ = "0.1.0"
