"""``archiver batch`` and ``archiver batch-report``: many accounts into one ROOT.

A thin layer over :mod:`archiver.batch`: the options become a
:class:`~archiver.batch.runner.BatchOptions`, the admin password is read once
(``--master-password-file``, ``$ARCHIVER_MASTER_PASSWORD``, else a prompt),
and the result becomes the table on stderr, the ``--json`` object on stdout
and the exit status.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click

from archiver.cli.common import (
    _connections,
    err,
    folder_options,
    namespace_option,
    new_archive_options,
)
from archiver.cli.translated import TranslatedCommand
from archiver.i18n import _


@click.command(cls=TranslatedCommand)
@click.argument("accounts", type=click.Path(path_type=Path))
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--source", metavar="URL",
              help="Server for the rows without a source (imaps://HOST[:PORT] or a preset); "
                   "each row's user is the login.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=4, show_default=True, metavar="N",
              help="Accounts archived at the same time (one process each).")
@click.option("--max-connections", type=click.IntRange(1, 1000), metavar="M",
              help="At most M connections to one server across all jobs (each job gets "
                   "--connections, default 1 then).")
@click.option("--shard", metavar="K/N",
              help="Only the accounts with sha256(user) mod N = K-1 (default: from Slurm's "
                   "SLURM_ARRAY_TASK_* or Kubernetes' JOB_COMPLETION_INDEX).")
@click.option("--shard-count", type=click.IntRange(1, 100000), metavar="N",
              help="N for a Kubernetes Indexed Job (its completions).")
@click.option("--refresh", is_flag=True,
              help="Also run the accounts already archived ok (to pick up new mail).")
@click.option("--master-user", metavar="NAME",
              help="Log in to every account as this admin (Dovecot master user): no user "
                   "passwords needed.")
@click.option("--master-separator", default="*", show_default=True, metavar="SEP",
              help="What joins user and admin in the master login (the server's "
                   "auth_master_user_separator).")
@click.option("--master-login", type=click.Choice(["separator", "authzid"]),
              default="separator", show_default=True, metavar="MODE",
              help="How the admin logs in: separator (as USER*NAME) or authzid (SASL PLAIN "
                   "with the user as authorization identity, RFC 4616).")
@click.option("--master-password-file", type=click.Path(path_type=Path),
              help="Read the admin's password from the first line of FILE (else "
                   "$ARCHIVER_MASTER_PASSWORD, else a prompt).")
@click.option("--cafile", type=click.Path(path_type=Path),
              help="Trust this CA certificate (PEM) for the server's TLS certificate.")
@click.option("--insecure", is_flag=True,
              help="Do not verify the server's certificate (prints a warning).")
@click.option("--plaintext", is_flag=True,
              help="Allow imap:// (pop3://) without STARTTLS (STLS): the password "
                   "travels unencrypted.")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0,
              show_default=True, help="Seconds to wait for the server on any operation.")
@click.option("--connections", default="auto", show_default=True, metavar="N|auto",
              callback=lambda ctx, param, value: _connections(value),
              help="IMAP connections fetching folders side by side (1-8; migrate: also "
                   "uploading, on the target); auto: 3 over a network link with a "
                   "noticeable round trip, 1 on a LAN or loopback.")
@click.option("--compress", type=click.Choice(["auto", "on", "off"]), default="auto",
              show_default=True,
              help="IMAP COMPRESS=DEFLATE when the server offers it; auto: only over a "
                   "link with a noticeable round trip.")
@folder_options
@namespace_option
@click.option("--format", "fmt", type=click.Choice(["maildir", "mbox"]), default=None,
              help="Archive format of new accounts (a row's format column wins).")
@new_archive_options
@click.option("--trace", is_flag=True,
              help="Keep each account's notes and protocol trace in ROOT/.batch/logs/USER.log "
                   "(slower, and the trace holds message text).")
@click.option("--quiet", "-q", is_flag=True, help="No line per account and no table.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def batch(accounts: Path, root: Path, source: Optional[str], jobs: int,
          max_connections: Optional[int], shard: Optional[str], shard_count: Optional[int],
          refresh: bool, master_user: Optional[str], master_separator: str, master_login: str,
          master_password_file: Optional[Path], cafile: Optional[Path], insecure: bool,
          plaintext: bool, timeout: float, connections: int, compress: str,
          include: tuple[str, ...], exclude: tuple[str, ...], all_namespaces: bool,
          fmt: Optional[str], portable_names: bool, no_space_check: bool, trace: bool,
          quiet: bool, as_json: bool) -> None:
    """Archive every account listed in ACCOUNTS into ROOT/<user>, several at a time.

    \b
    ACCOUNTS is a CSV file (header: user, and any of source, password_file,
    dest, format, note) or a TOML file ([defaults] and [[account]] tables).
    Rerun the same command to go on: accounts already ok are skipped.  State,
    reports, manifests and logs are kept in ROOT/.batch/ (docs/STAFF.md).
    """
    from archiver.batch.accounts import load_accounts
    from archiver.batch.runner import (
        BackupFlags,
        BatchOptions,
        MasterLogin,
        check_passwords,
        run_batch,
    )
    from archiver.batch.shard import choose_shard

    which = choose_shard(shard, shard_count, os.environ)
    rows = load_accounts(accounts.expanduser(), source)
    master = (MasterLogin(master_user, master_separator, master_login)
              if master_user else None)
    check_passwords(rows, master, os.environ)
    if cafile is not None and not cafile.expanduser().is_file():
        from archiver.errors import UsageError

        raise UsageError(_("CA file {file} not found: check the path given to "
                           "{option}").format(file=cafile, option="--cafile"))
    password = _master_password(master, master_password_file) if master else None
    if insecure:
        err(_("WARNING: --insecure: the server's certificate is NOT checked; anyone on the "
              "network path could read your mail and password"))
    flags = BackupFlags(cafile=cafile, insecure=insecure, plaintext=plaintext, timeout=timeout,
                        compress=compress, connections=connections, format=fmt,
                        include=include, exclude=exclude, all_namespaces=all_namespaces,
                        no_space_check=no_space_check, portable_names=portable_names)
    options = BatchOptions(jobs=jobs, max_connections=max_connections, refresh=refresh,
                           flags=flags, master=master, master_password=password, trace=trace,
                           echo=(lambda line: None) if quiet or as_json else err)
    result = run_batch(rows, root.expanduser(), which, options)
    report = result.report
    if as_json:
        click.echo(json.dumps(_summary(result), ensure_ascii=False))
    elif not quiet:
        for line in report.table():
            err(line)
        err(_("report: {files}").format(files=", ".join(report.files)))
    if result.message:
        err(_("archiver: stopped: {message}").format(message=result.message))
    if result.exit_code:
        sys.exit(result.exit_code)


def _summary(result: Any) -> dict[str, Any]:
    """``batch --json``: one object, also when the batch stopped."""
    report = result.report
    status = {0: "ok", 3: "partial"}.get(result.exit_code, "error")
    if result.stopped == "interrupted":
        status = "interrupted"
    out: dict[str, Any] = {"status": status, "exit": result.exit_code,
                           "shard": report.shard, "accounts": len(report.rows),
                           "ran": result.ran, "skipped": result.skipped,
                           "counts": report.counts(), "totals": report.totals(),
                           "slowest": [r.user for r in report.slowest()],
                           "reports": report.files}
    if result.message:
        out["error"] = result.message
    if result.stopped == "admin":
        out["reason"] = "admin-refused"
    return out


def _master_password(master: Any, password_file: Optional[Path]) -> str:
    """The admin password, once for the whole batch."""
    from archiver.account import OptionNames, read_password

    names = OptionNames(user="--master-user", password_file="--master-password-file",
                        password_env="ARCHIVER_MASTER_PASSWORD")
    return read_password(password_file.expanduser() if password_file else None, names,
                         lambda p: click.prompt(p, hide_input=True, err=True),
                         _("the admin {name}").format(name=master.user))


@click.command(cls=TranslatedCommand)
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option("--csv", "csv_file", type=click.Path(path_type=Path), metavar="FILE",
              help="Also write the report as CSV to FILE ('-': stdout).")
def batch_report(root: Path, as_json: bool, csv_file: Optional[Path]) -> None:
    """Rebuild the report of ROOT from every shard's state and the archives themselves.

    \b
    Needs no server: the folders, messages and bytes of each account are
    read from its archive; the status from the state files in ROOT/.batch/.
    Exit 0 when every account is ok, 3 otherwise.
    """
    from archiver.batch.layout import Layout
    from archiver.batch.report import rebuild
    from archiver.errors import EXIT_PARTIAL, UsageError

    root = root.expanduser()
    if not Layout(root).state_dir.is_dir():
        raise UsageError(_("{root} has no batch state ({path} is missing): give the ROOT an "
                           "'archiver batch' wrote to").format(
            root=root, path=Layout(root).state_dir))
    report = rebuild(root)
    if csv_file is not None:
        if str(csv_file) == "-":
            click.echo(report.csv_text(), nl=False)
        else:
            from archiver.durable import atomic_write

            atomic_write(csv_file, report.csv_text().encode("utf-8"))
    if as_json:
        out = report.as_dict()
        out["status"] = "ok" if report.all_ok else "partial"
        click.echo(json.dumps(out, ensure_ascii=False))
    elif str(csv_file) != "-":
        for line in report.table():
            click.echo(line)
    if not report.all_ok:
        sys.exit(EXIT_PARTIAL)
