"""Shared test fixtures: an isolated data root per test, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SYNTHCOHORT_TEST_DATA", REPO.parent / "shared" / "data"))

# Caches out of $HOME, set before torch/matplotlib are imported by any test module.
os.environ.setdefault("TORCH_HOME", str(REPO / ".pytest_cache" / "torch"))
os.environ.setdefault("MPLCONFIGDIR", str(REPO / ".pytest_cache" / "matplotlib"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def synthcohort_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own data root (SYNTHCOHORT_HOME) and fresh settings."""
    from synthcohort.core.settings import get_settings

    home = tmp_path / "synthcohort-home"
    monkeypatch.setenv("SYNTHCOHORT_HOME", str(home))
    for var in ("SYNTHCOHORT_DATABASE_URL", "SYNTHCOHORT_BROKER_URL", "SYNTHCOHORT_RESULT_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data sets. In CI they must be there; elsewhere a missing folder skips."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"real test data missing at {SHARED_DATA}")
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture()
def hippocampus_subset(shared_data, tmp_path):
    """A function n → a folder with the first n hippocampus image/label pairs (copies: the
    store may not be pointed at ../shared/data for tests that change the folder)."""
    import shutil

    def make(n: int) -> Path:
        root = tmp_path / f"hippo-{n}"
        (root / "images").mkdir(parents=True)
        (root / "labels").mkdir()
        for f in sorted((shared_data / "hippocampus" / "images").iterdir())[:n]:
            shutil.copy(f, root / "images" / f.name)
            shutil.copy(shared_data / "hippocampus" / "labels" / f.name, root / "labels" / f.name)
        return root

    return make
