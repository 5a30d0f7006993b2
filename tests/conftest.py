"""Shared test fixtures: an isolated data root per test, and the real data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# Service and API fixtures (databases, brokers, a served stack, the app with keys) for every test
# module, so that none has to import them by name.
pytest_plugins = ("tests.service_fixtures", "tests.api_fixtures")

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


@pytest.fixture(scope="session")
def breast_train(shared_data):
    """Every real BreastMNIST training image (0 malignant, 1 normal/benign), [0, 1], channel first."""
    from synthcohort.generators.base import TrainingData

    with np.load(shared_data / "medmnist" / "breastmnist.npz") as z:
        images = z["train_images"][:, None].astype(np.float32) / 255.0
        labels = z["train_labels"][:, 0].astype(np.int64)
    return TrainingData(images, labels, class_names=("malignant", "benign"))


@pytest.fixture(scope="session")
def breast_malignant(breast_train):
    """The malignant training images alone, as a one-class set."""
    from synthcohort.generators.base import TrainingData

    images = breast_train.images[breast_train.labels == 0]
    return TrainingData(images, np.zeros(len(images), np.int64), class_names=("malignant",))
