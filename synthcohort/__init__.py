"""synthcohort: validated synthetic cohorts of rare classes in medical imaging.

The package is the front door: settings, the CLI, and the Python client. Heavy
modules (torch, the API) are imported lazily so that ``import synthcohort`` is cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "synthcohort.client",
    "CohortDataset": "synthcohort.cohort_dataset",
    "get_settings": "synthcohort.settings",
    "Settings": "synthcohort.settings",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'synthcohort' has no attribute {name!r}")
