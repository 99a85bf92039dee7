#!/usr/bin/env python3
"""scripts/bench_pack.py -- how small is a pack, how fast is it made, and how fast does
one message read from it?

A benchmark, not a test.  Run it with the project's virtualenv (as root on the
project's machine, like scripts/bench.py)::

    .venv/bin/python scripts/bench_pack.py                       # the shared small corpus
    .venv/bin/python scripts/bench_pack.py --maildir DIR --json out.json

What it does
------------
1. Starts a throwaway Dovecot (tests/dovecot.py) with one user and copies a
   Dovecot Maildir++ account into it: by default the shared bench corpus
   (``/var/tmp/mailbench/small/server/pristine/mail/alice``: 2,000 mostly
   Japanese messages in 30 folders, see /work/shared/bench/README.md);
   ``doveadm force-resync`` and ``index`` let Dovecot see it.
2. ``archiver backup`` into a Maildir archive and an mbox archive.
3. For each: the archive's bytes (every file), ``tar -c DIR | zstd -19
   --long=27`` (size and time: the target is pack <= 1.1x that),
   ``archiver pack`` (size, time), ``archiver unpack`` (time, and a check
   that the tree is byte-identical), and the time to read one message from
   the pack: ``--reads`` random messages read through the same store ``show``
   and ``restore`` use, in one warm process (the process start and the index
   read are excluded; reported separately as "open"), median and p99.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ARCHIVER = REPO / ".venv" / "bin" / "archiver"
DEFAULT_MAILDIR = Path("/var/tmp/mailbench/small/server/pristine/mail/alice")
_DOVECOT_OWN = ("dovecot.", "dovecot-uidlist", "dovecot-uidvalidity")


def copy_account(src: Path, dst: Path, uid: int, gid: int) -> int:
    """Copy a Maildir++ account's folders and messages (not Dovecot's indexes)."""
    n = 0
    for dirpath, _dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        target = dst / rel
        target.mkdir(parents=True, exist_ok=True)
        os.chown(target, uid, gid)
        for name in filenames:
            if name.startswith(_DOVECOT_OWN):
                continue
            shutil.copy2(Path(dirpath) / name, target / name)
            os.chown(target / name, uid, gid)
            n += rel.name == "cur"
    return n


def tree_bytes(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += (Path(dirpath) / name).stat().st_size
    return files, size


def tar_zstd(root: Path, out: Path) -> tuple[int, float]:
    t0 = time.monotonic()
    with open(out, "wb") as fh:
        tar = subprocess.Popen(["tar", "-C", str(root.parent), "-c", root.name],
                               stdout=subprocess.PIPE)
        subprocess.run(["zstd", "-19", "--long=27", "-q", "-c"], stdin=tar.stdout, stdout=fh,
                       check=True)
        assert tar.stdout is not None
        tar.stdout.close()
        assert tar.wait() == 0
    return out.stat().st_size, time.monotonic() - t0


def run(args: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in kB, from /usr/bin/time) of one archiver command."""
    t0 = time.monotonic()
    res = subprocess.run(["/usr/bin/time", "-f", "RSS %M", str(ARCHIVER), *args],
                         capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"archiver {args[0]} failed ({res.returncode}): {res.stderr}")
    rss = [int(line.split()[1]) for line in res.stderr.splitlines() if line.startswith("RSS ")]
    return seconds, rss[-1] if rss else 0


def same_tree(a: Path, b: Path) -> bool:
    def listing(root: Path) -> dict[str, bytes]:
        out = {}
        for dirpath, _d, names in os.walk(root):
            for name in names:
                p = Path(dirpath) / name
                rel = p.relative_to(root).as_posix()
                if rel != ".archiver/lock":
                    out[rel] = p.read_bytes()
        return out
    return listing(a) == listing(b)


def read_times(pack: Path, n: int, seed: int) -> dict[str, float]:
    """Seconds per message read through the pack's store, warm process, random order."""
    from archiver.offline.catalog import catalog
    from archiver.reading import open_archive
    from archiver.stores import open_store

    t0 = time.perf_counter()
    archive = open_archive(pack)
    items = catalog(archive)
    store = open_store(archive.dest, archive.format)
    t_open = time.perf_counter() - t0
    rng = random.Random(seed)
    times = []
    for item in rng.choices(items, k=n):
        t = time.perf_counter()
        store.read_message(item.entry)
        times.append(time.perf_counter() - t)
    times.sort()
    return {"reads": n, "open_ms": round(t_open * 1e3, 1),
            "median_ms": round(statistics.median(times) * 1e3, 2),
            "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1e3, 2),
            "max_ms": round(times[-1] * 1e3, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--maildir", type=Path, default=DEFAULT_MAILDIR,
                    help="a Dovecot Maildir++ account to archive (default: the shared "
                         "bench's small corpus)")
    ap.add_argument("--formats", default="maildir,mbox")
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if not a.maildir.is_dir():
        sys.exit(f"bench_pack.py: {a.maildir} is not a Maildir: run "
                 "/work/shared/bench/run-all.sh small first, or give --maildir")
    from tests.dovecot import DovecotServer

    work = Path(tempfile.mkdtemp(prefix="archiver-bench-pack-", dir="/var/tmp"))
    server = DovecotServer(work / "dovecot")
    result: dict[str, object] = {"corpus": str(a.maildir), "cpus": os.cpu_count()}
    try:
        server.start()
        user = server.new_user("pack")
        with server.session(user) as c:
            c.select_folder("INBOX", readonly=True)  # makes the Maildir root
        n = copy_account(a.maildir, server.maildir(user), server.mail_uid, server.mail_gid)
        server.doveadm("force-resync", "-u", user.name, "*")
        server.doveadm("index", "-u", user.name, "*")
        print(f"bench_pack: {n} messages copied into {user.name}", flush=True)
        pw = work / "pw"
        pw.write_text(user.password + "\n")
        pw.chmod(0o600)
        for fmt in a.formats.split(","):
            dest = work / f"archive-{fmt}"
            t_backup, _rss = run(["backup", f"imaps://{user.name}@127.0.0.1:{server.imaps_port}",
                            str(dest), "--cafile", str(server.cafile), "--password-file",
                            str(pw), "--format", fmt, "--quiet"])
            files, size = tree_bytes(dest)
            tz_size, t_tz = tar_zstd(dest, work / f"{fmt}.tar.zst")
            pack = work / f"{fmt}.pack"
            t_pack, rss_pack = run(["pack", str(dest), str(pack), "--quiet"])
            out = work / f"unpacked-{fmt}"
            t_unpack, rss_unpack = run(["unpack", str(pack), str(out), "--quiet"])
            identical = same_tree(dest, out)
            reads = read_times(pack, a.reads, a.seed)
            p = pack.stat().st_size
            row = {"backup_s": round(t_backup, 1), "files": files, "archive_bytes": size,
                   "tar_zstd19_long27_bytes": tz_size, "tar_zstd_s": round(t_tz, 1),
                   "pack_bytes": p, "pack_s": round(t_pack, 1),
                   "pack_vs_tar_zstd": round(p / tz_size, 3),
                   "pack_vs_archive": round(p / size, 3),
                   "unpack_s": round(t_unpack, 1), "pack_peak_rss_kb": rss_pack,
                   "unpack_peak_rss_kb": rss_unpack, "unpack_identical": identical,
                   "read_one_message": reads}
            result[fmt] = row
            print(f"bench_pack [{fmt}]: {files} files, {size / 1e6:.1f} MB; tar|zstd -19 "
                  f"--long=27 {tz_size / 1e6:.2f} MB in {t_tz:.1f} s; pack {p / 1e6:.2f} MB "
                  f"in {t_pack:.1f} s, peak RSS {rss_pack // 1024} MB ({p / tz_size:.3f}x "
                  f"tar|zstd, {p / size:.3f}x the archive); unpack {t_unpack:.1f} s (peak RSS "
                  f"{rss_unpack // 1024} MB), identical={identical}; one message: "
                  f"median {reads['median_ms']} ms, p99 {reads['p99_ms']} ms, max "
                  f"{reads['max_ms']} ms (open {reads['open_ms']} ms)", flush=True)
    finally:
        server.stop()
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
