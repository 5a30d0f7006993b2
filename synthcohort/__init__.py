"""synthcohort: validated synthetic cohorts of rare classes in medical imaging.

One installed namespace, in floors that import only downwards (ARCHITECTURE.md):
``synthcohort.core`` (plumbing) → ``imaging`` → ``store`` → ``generators`` / ``validation`` →
``workers`` / ``api`` → the front door in this folder (``cli``, ``demo``, ``client``,
``cohort_dataset``). The front door's names are imported lazily here, so that ``import
synthcohort`` (which every submodule import runs first) stays cheap and pulls in nothing above
the module asked for.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from synthcohort.core.version import __version__

__all__ = ["Client", "CohortDataset", "Settings", "get_settings", "__version__"]

_LAZY = {
    "Client": "synthcohort.client",
    "CohortDataset": "synthcohort.cohort_dataset",
    "get_settings": "synthcohort.core.settings",
    "Settings": "synthcohort.core.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'synthcohort' has no attribute {name!r}")
