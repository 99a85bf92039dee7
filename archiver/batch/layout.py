"""Where a batch keeps its files: ``ROOT/.batch/`` and nothing else.

``ROOT/<user>/`` is an ordinary archive (what ``archiver backup`` makes);
the batch's own files sit beside the accounts in one hidden directory:

* ``state/<tag>.jsonl`` -- each shard's state (``all`` unsharded,
  ``shard-K-of-N`` otherwise): one file per shard, so shards sharing ROOT on
  one file system never write the same file;
* ``reports/<time>[-shard-K-of-N].csv|.json`` -- one pair per run;
* ``manifests/<user>.sha256`` -- the audit manifest of an account;
* ``logs/<user>.out`` (the child's ``--json`` line) and ``.err`` (its
  stderr) of the account's last attempt, and with ``--trace``
  ``logs/<user>.log`` (the child's ``--log``: notes and protocol trace).

A user name becomes a file name with :func:`archiver.names.encode_component`
(the folder rule): no separator, no ``..``, nothing Windows refuses, and
never a leading dot -- so no account can be called ``.batch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archiver.names import encode_component

BATCH_DIR = ".batch"


def user_file_name(user: str) -> str:
    """A user name as one safe path component (``alice@example.com`` stays as it is)."""
    return encode_component(user)


@dataclass(frozen=True)
class Layout:
    """The paths of one ROOT."""

    root: Path

    @property
    def batch_dir(self) -> Path:
        return self.root / BATCH_DIR

    @property
    def state_dir(self) -> Path:
        return self.batch_dir / "state"

    @property
    def reports_dir(self) -> Path:
        return self.batch_dir / "reports"

    @property
    def manifests_dir(self) -> Path:
        return self.batch_dir / "manifests"

    @property
    def logs_dir(self) -> Path:
        return self.batch_dir / "logs"

    def state_file(self, tag: str) -> Path:
        return self.state_dir / f"{tag}.jsonl"

    def manifest(self, user: str) -> Path:
        return self.manifests_dir / f"{user_file_name(user)}.sha256"

    def log(self, user: str, suffix: str) -> Path:
        return self.logs_dir / f"{user_file_name(user)}.{suffix}"

    def default_dest(self, user: str) -> Path:
        return self.root / user_file_name(user)

    def make(self) -> None:
        """Create ``.batch`` and its sub-directories (several shards may at once)."""
        for d in (self.state_dir, self.reports_dir, self.manifests_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
