"""``archiver ui``: a local web page over the library API (the optional ``ui`` extra).

People who never open a terminal get a browser page on ``127.0.0.1``: a
guided backup (:mod:`archiver.ui.backup_routes`) and offline browsing of an
archive (:mod:`archiver.ui.browse`).  Nothing here is a second engine: the
pages call the same functions as ``archiver ls``/``search``/``show``.

The web stack (Starlette, uvicorn, Jinja2, nh3) is an optional extra so the
CLI stays light; :func:`missing_extra` tells the ``ui`` command what is not
installed, and it prints one line instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import shlex
import sys
from typing import Optional

EXTRA_MODULES = ("starlette", "uvicorn", "jinja2", "nh3", "multipart")


def install_hint() -> str:
    """The command that adds the extra to *this* archiver, run in the repository.

    archiver is not on PyPI (``pip install 'mailbox-archiver[ui]'`` finds
    nothing), so the hint installs the checkout's ``.[ui]`` into the
    environment that runs this archiver: pipx's when it is a pipx one.
    """
    if "pipx" in sys.prefix.replace("\\", "/").split("/"):
        return "pipx install --force '.[ui]'"
    return f"{shlex.quote(sys.executable)} -m pip install '.[ui]'"


def missing_extra() -> Optional[str]:
    """The first module of the ``ui`` extra that is not installed (None: all are)."""
    for name in EXTRA_MODULES:
        if importlib.util.find_spec(name) is None:
            return name
    return None
