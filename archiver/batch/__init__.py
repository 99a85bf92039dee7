"""``archiver batch``: many accounts, one process each, resumable, reported, sharded.

IT staff archive hundreds of departed accounts at once.  The pieces:

* :mod:`archiver.batch.accounts` -- the ACCOUNTS file (CSV or TOML), checked
  row by row before anything runs, and where each account's archive goes;
* :mod:`archiver.batch.shard` -- which accounts this process takes
  (``--shard K/N``, a Slurm job array, a Kubernetes Indexed Job);
* :mod:`archiver.batch.state` -- the append-only state file of a shard in
  ``ROOT/.batch/state/``, which makes a rerun skip what is done;
* :mod:`archiver.batch.runner` -- the scheduler: one ``archiver backup``
  child per account, ``--jobs`` at a time, ``--max-connections`` per server,
  back-off when the server is busy, the admin login's refusal budget, Ctrl-C;
* :mod:`archiver.batch.report` -- the CSV/JSON reports and the table, also
  rebuilt from the archives alone (``archiver batch-report``);
* :mod:`archiver.batch.manifest` -- the ``sha256sum -c`` manifest per account.

Everything the batch writes lives under ``ROOT/.batch/`` (:class:`Layout`),
never inside an account's directory, so an account's archive stays exactly
what ``archiver backup`` makes.
"""

from archiver.batch.layout import Layout

__all__ = ["Layout"]
