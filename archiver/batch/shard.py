"""Which accounts this process takes: ``--shard K/N``, Slurm job arrays, Indexed Jobs.

An account belongs to shard K of N when ``int(sha256(user), 16) % N == K - 1``
(the user name exactly as written in ACCOUNTS, UTF-8).  The rule needs no
coordination: every shard reads the same ACCOUNTS file, takes its own part,
and the parts are disjoint and cover every account, whatever the order of the
rows or how many rows are added later (an added row never moves another).

Without ``--shard`` the environment decides, so one command runs unchanged
under a scheduler:

* a Slurm job array (``sbatch --array=0-9``): K = ``SLURM_ARRAY_TASK_ID`` -
  ``SLURM_ARRAY_TASK_MIN`` + 1, N = ``SLURM_ARRAY_TASK_COUNT``; a stepped
  array (``--array=0-20:2``, ``SLURM_ARRAY_TASK_STEP`` != 1) would leave
  shards unrun, so it is refused;
* a Kubernetes Indexed Job: K = ``JOB_COMPLETION_INDEX`` + 1 and N =
  ``--shard-count`` (the Job's ``completions``; Kubernetes does not put it in
  the environment);
* otherwise one shard holding everything (1/1).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from archiver.errors import UsageError
from archiver.i18n import _


@dataclass(frozen=True)
class Shard:
    k: int  # 1-based
    n: int

    @property
    def tag(self) -> str:
        """The shard's name in ``.batch`` file names (``all`` when unsharded)."""
        return "all" if self.n == 1 else f"shard-{self.k}-of-{self.n}"

    def takes(self, user: str) -> bool:
        return shard_of(user, self.n) == self.k

    def describe(self) -> str:
        return f"{self.k}/{self.n}"


ALL = Shard(1, 1)


def shard_of(user: str, n: int) -> int:
    """The 1-based shard of ``user`` among ``n``."""
    digest = hashlib.sha256(user.encode("utf-8", errors="surrogatepass")).hexdigest()
    return int(digest, 16) % n + 1


def parse_shard(text: str) -> Shard:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise UsageError(_("--shard '{value}' is not K/N (e.g. --shard 2/8: the second of "
                           "eight parts)").format(value=text))
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise UsageError(_("--shard {k}/{n}: K runs from 1 to N").format(k=k, n=n))
    return Shard(k, n)


def choose_shard(option: Optional[str], shard_count: Optional[int],
                 environ: Mapping[str, str]) -> Shard:
    """``--shard`` if given, else Slurm's or Kubernetes' variables, else everything."""
    if option is not None:
        return parse_shard(option)
    if environ.get("SLURM_ARRAY_TASK_ID"):
        return _slurm(environ)
    if environ.get("JOB_COMPLETION_INDEX"):
        return _indexed_job(environ["JOB_COMPLETION_INDEX"], shard_count)
    if shard_count is not None:
        raise UsageError(_("--shard-count goes with a Kubernetes Indexed Job "
                           "(JOB_COMPLETION_INDEX is not set): use --shard K/N to choose a "
                           "shard by hand"))
    return ALL


def _number(environ: Mapping[str, str], name: str) -> int:
    value = environ.get(name, "")
    if not value.strip().isdigit():
        raise UsageError(_("{name}={value!r} is not a whole number: run under the scheduler, "
                           "or give --shard K/N").format(name=name, value=value))
    return int(value)


def _slurm(environ: Mapping[str, str]) -> Shard:
    step = environ.get("SLURM_ARRAY_TASK_STEP", "1").strip() or "1"
    if step != "1":
        raise UsageError(_("a stepped Slurm array (SLURM_ARRAY_TASK_STEP={step}) would leave "
                           "shards unrun: submit --array=0-N without ':STEP' (use %LIMIT to "
                           "run fewer at once)").format(step=step))
    task = _number(environ, "SLURM_ARRAY_TASK_ID")
    low = _number(environ, "SLURM_ARRAY_TASK_MIN")
    n = _number(environ, "SLURM_ARRAY_TASK_COUNT")
    k = task - low + 1
    if not 1 <= k <= n:
        raise UsageError(_("Slurm array task {task} is not among {n} tasks from {low}: submit "
                           "a contiguous array (--array=0-{last})").format(
            task=task, n=n, low=low, last=max(n - 1, 0)))
    return Shard(k, n)


def _indexed_job(index: str, shard_count: Optional[int]) -> Shard:
    if shard_count is None:
        raise UsageError(_("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not "
                           "the number of shards: add --shard-count N (the Job's "
                           "completions)"))
    if not index.strip().isdigit():
        raise UsageError(_("JOB_COMPLETION_INDEX={value!r} is not a whole number").format(
            value=index))
    k = int(index) + 1
    if not 1 <= k <= shard_count:
        raise UsageError(_("JOB_COMPLETION_INDEX={index} is beyond --shard-count {n}: set "
                           "--shard-count to the Job's completions").format(
            index=index, n=shard_count))
    return Shard(k, shard_count)
