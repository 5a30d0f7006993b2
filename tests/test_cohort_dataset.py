"""CohortDataset: downloaded once and cached, (image, label) tensors in [0, 1] channel first for
every export format, MONAI transforms, DataLoader batching, and the MONAI datalist."""

from __future__ import annotations

import http.server
import io
import threading
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from synthcohort.client import Client
from synthcohort.cohort_dataset import CohortDataset
from synthcohort.core.errors import InvalidInputError, NotFoundError
from synthcohort.imaging.sample_dir import write_sample_dir
from synthcohort.store.cohort_export import ReleasedSample, stream_archive

PROVENANCE = {"dataset_id": "ds-test", "classes": ["normal", "rare"], "modality": "CT"}


def _cohort_2d(folder: Path, n: int = 6):
    rng = np.random.default_rng(4)
    images = rng.random((n, 1, 12, 10), dtype=np.float32)
    masks = (rng.random((n, 1, 12, 10)) > 0.5).astype(np.uint8)
    rows = write_sample_dir(folder, images, class_name="rare", seed=2, model_id="mdl-d", masks=masks)
    return _released(rows), np.rint(images * 255) / 255, masks


def _released(rows):
    return [ReleasedSample(int(r["index"]), r["file"], r["mask_file"] or None, r["class"], int(r["seed"]),
                           r["model_id"], "e" * 64, {}) for r in rows]


def _extracted(samples_dir: Path, released, fmt: str, out: Path) -> Path:
    data = b"".join(stream_archive(samples_dir, released, fmt=fmt, archive="zip", provenance=PROVENANCE))
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        z.extractall(out)
    return out


class _ArchiveServer(http.server.BaseHTTPRequestHandler):
    """Serves ``/v1/cohorts/<id>/download`` from archives built with stream_archive; counts them."""

    def do_GET(self) -> None:
        url = urlparse(self.path)
        cohort_id = url.path.split("/")[3]
        fmt = parse_qs(url.query)["format"][0]
        self.server.downloads.append((cohort_id, fmt))
        samples_dir, released = self.server.cohorts[cohort_id]
        data = b"".join(stream_archive(samples_dir, released, fmt=fmt, archive="zip", provenance=PROVENANCE))
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def archive_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ArchiveServer)
    server.cohorts, server.downloads = {}, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_downloads_once_then_reads_the_cache(archive_server, tmp_path, synthcohort_home):
    released, images, _ = _cohort_2d(tmp_path / "samples")
    archive_server.cohorts["coh-a"] = (tmp_path / "samples", released)
    client = Client(f"http://127.0.0.1:{archive_server.server_port}", "key")

    first = CohortDataset("coh-a", client=client)
    assert first.path == synthcohort_home / "cache" / "cohorts" / "coh-a-png"  # default root
    assert archive_server.downloads == [("coh-a", "png")]
    second = CohortDataset("coh-a", client=client)
    offline = CohortDataset("coh-a", client=Client("http://127.0.0.1:9", "key", retries=0), download=False)
    assert archive_server.downloads == [("coh-a", "png")]  # neither downloaded again
    for ds in (first, second, offline):
        assert len(ds) == 6
        image, label = ds[2]
        assert image.dtype == torch.float32 and image.shape == (1, 12, 10) and label == 1
        np.testing.assert_allclose(image.numpy(), images[2], atol=1e-6)
    CohortDataset("coh-a", client=client, refresh=True)
    CohortDataset("coh-a", client=client, format="nifti")
    assert archive_server.downloads == [("coh-a", "png"), ("coh-a", "png"), ("coh-a", "nifti")]
    with pytest.raises(NotFoundError):
        CohortDataset("coh-b", client=client, download=False)


@pytest.mark.parametrize("fmt", ["png", "nifti", "dicom", "npz"])
def test_every_format_gives_the_same_tensors(tmp_path, fmt):
    released, images, masks = _cohort_2d(tmp_path / "samples")
    ds = CohortDataset.from_directory(_extracted(tmp_path / "samples", released, fmt, tmp_path / "out"),
                                      return_mask=True)
    assert ds.format == fmt and len(ds) == 6 and ds.classes == {0: "normal", 1: "rare"}
    tol = 1e-6 if fmt != "dicom" else 0.5 / 65535 + 1e-6
    for i in range(len(ds)):
        image, label, mask = ds[i]
        assert image.dtype == torch.float32 and tuple(image.shape) == (1, 12, 10) and label == 1
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert np.abs(image.numpy() - images[i]).max() <= tol
        np.testing.assert_array_equal(mask.numpy(), masks[i])


def test_3d_volumes_are_channel_first(tmp_path):
    vols = np.random.default_rng(5).random((2, 1, 4, 6, 5), dtype=np.float32)
    rows = write_sample_dir(tmp_path / "s", vols, class_name="rare", seed=1, model_id="m", spacing=(3.0, 1.0, 1.0))
    for fmt in ("nifti", "dicom"):
        ds = CohortDataset.from_directory(_extracted(tmp_path / "s", _released(rows), fmt, tmp_path / fmt))
        image, label = ds[1]
        assert tuple(image.shape) == (1, 4, 6, 5) and label == 1 and ds.spatial_dims == 3
        assert np.abs(image.numpy() - vols[1]).max() <= 0.5 / 65535 + 1e-6


def test_monai_transforms_and_dataloader_batches(tmp_path):
    from monai.transforms import Compose, RandFlip, ScaleIntensity

    released, images, _ = _cohort_2d(tmp_path / "samples")
    transform = Compose([RandFlip(prob=0.5, spatial_axis=0), ScaleIntensity()])
    transform.set_random_state(seed=0)  # after Compose: Compose reseeds its members from MONAI's global seed
    ds = CohortDataset.from_directory(_extracted(tmp_path / "samples", released, "png", tmp_path / "out"),
                                      transform=transform)
    loader = DataLoader(ds, batch_size=4, shuffle=False)
    batches = list(loader)
    assert [tuple(b[0].shape) for b in batches] == [(4, 1, 12, 10), (2, 1, 12, 10)]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.ones(6, dtype=torch.int64))
    flipped = 0
    for i, image in enumerate(torch.cat([torch.as_tensor(b[0]) for b in batches])):
        scaled = (images[i] - images[i].min()) / (images[i].max() - images[i].min())
        assert float(image.min()) == pytest.approx(0.0) and float(image.max()) == pytest.approx(1.0)
        if np.allclose(image.numpy(), scaled[:, ::-1, :], atol=1e-5):
            flipped += 1
        else:
            np.testing.assert_allclose(image.numpy(), scaled, atol=1e-5)
    assert 0 < flipped < 6  # RandFlip(prob=0.5) flipped some (seeded) and not others


@pytest.mark.parametrize("fmt", ["png", "nifti"])
def test_datalist_loads_with_monai_loadimaged(tmp_path, fmt):
    from monai.data import Dataset
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

    released, images, _ = _cohort_2d(tmp_path / "samples")
    ds = CohortDataset.from_directory(_extracted(tmp_path / "samples", released, fmt, tmp_path / "out"))
    assert all(Path(item["image"]).is_file() and Path(item["mask"]).is_file() for item in ds.datalist)
    monai_ds = Dataset(data=ds.datalist, transform=Compose([LoadImaged(keys=["image", "mask"]),
                                                            EnsureChannelFirstd(keys=["image", "mask"])]))
    item = monai_ds[3]
    assert item["label"] == 1
    pixels = np.asarray(item["image"]).squeeze()
    if fmt == "png":  # MONAI's PIL reader gives (W, H) and keeps the 0..255 scale
        assert pixels.shape == (10, 12)
        np.testing.assert_allclose(pixels, images[3, 0].T * 255.0, atol=1e-3)
    else:  # a 1-slice volume (H, W, 1)
        assert pixels.shape == (12, 10)
        np.testing.assert_allclose(pixels, images[3, 0], atol=1e-6)
    mask = np.asarray(item["mask"]).squeeze()
    assert set(np.unique(mask).tolist()) <= ({0.0, 255.0} if fmt == "png" else {0.0, 1.0})


def test_bad_directories_and_tampering_are_refused(tmp_path):
    with pytest.raises(NotFoundError):
        CohortDataset.from_directory(tmp_path)
    released, _, _ = _cohort_2d(tmp_path / "samples")
    out = _extracted(tmp_path / "samples", released, "npz", tmp_path / "out")
    with pytest.raises(InvalidInputError) as err:
        CohortDataset.from_directory(out).datalist
    assert err.value.field == "format"
    (out / "manifest.csv").write_text("tampered\n")
    with pytest.raises(InvalidInputError) as err:
        CohortDataset.from_directory(out)
    assert err.value.path.endswith("manifest.csv")
    assert len(CohortDataset.from_directory(out, verify=False)) == 6
