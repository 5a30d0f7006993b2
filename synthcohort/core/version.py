"""Which code made a record: the installed distribution's version and the commit it was built from.

setuptools-scm writes the commit into the version at build time (``0.1.1.dev3+gcb7424a``, with
``.dYYYYMMDD`` when the tree had uncommitted changes), so a wheel installed anywhere still knows it.
An editable install's metadata is as old as its last ``pip install -e``; when the package runs
from a git checkout (a worktree too), the checkout's own HEAD is asked instead, since that is
the code actually running.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTION = "synthcohort"
_LOCAL_COMMIT = re.compile(r"\+g([0-9a-f]{7,40})(?:\.d\d{8})?$")


def _installed_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = _installed_version()


def _checkout_commit() -> tuple[str, bool] | None:
    """(HEAD, dirty) of the git checkout this file lies in, or None outside one / without git."""
    here = Path(__file__).resolve().parent
    try:
        # this very file must be tracked there: a wheel in a venv inside some checkout is not
        subprocess.run(["git", "-C", str(here), "ls-files", "--error-unmatch", Path(__file__).name],
                       capture_output=True, timeout=10, check=True)
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return (head, bool(status.strip())) if re.fullmatch(r"[0-9a-f]{40}", head) else None


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"synthcohort": version, "git_commit": sha or None, "dirty": bool or None, "source": …}``.

    ``source`` says where the commit came from: ``checkout`` (git HEAD of the running tree),
    ``build`` (written into the version when the wheel was built) or ``unknown``.
    """
    checkout = _checkout_commit()
    if checkout is not None:
        return {"synthcohort": __version__, "git_commit": checkout[0], "dirty": checkout[1], "source": "checkout"}
    match = _LOCAL_COMMIT.search(__version__)
    if match:
        return {"synthcohort": __version__, "git_commit": match.group(1), "dirty": ".d" in __version__.split("+")[1],
                "source": "build"}
    return {"synthcohort": __version__, "git_commit": None, "dirty": None, "source": "unknown"}
