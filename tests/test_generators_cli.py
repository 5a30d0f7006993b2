"""`synthcohort train` / `synthcohort sample` end to end on real BreastMNIST, through the
dataset store's own import command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthcohort.cli import main
from synthcohort.imaging.sample_dir import read_sample_dir


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_sample_writes_a_reproducible_sample_directory(shared_data, capsys, tmp_path, synthcohort_home):
    code, out, _ = _run(capsys, "datasets", "import", str(shared_data / "medmnist" / "breastmnist.npz"),
                        "--classes", "malignant,benign")
    assert code == 0
    dataset_id = out.strip().splitlines()[-1]
    assert dataset_id.startswith("ds-")

    config = json.dumps({"batch_size": 8, "g_channels": 8, "d_channels": 8, "n_critic": 1, "log_every": 1})
    code, out, err = _run(capsys, "train", "--dataset", dataset_id, "--class", "malignant", "--generator",
                          "wgan-gp", "--steps", "2", "--seed", "1", "--config", config, "--device", "cpu")
    assert code == 0, err
    model_id = out.strip()
    assert model_id.startswith("mdl-") and len(model_id) == 16
    record = json.loads((synthcohort_home / "models" / model_id / "model.json").read_text())
    assert record["class_name"] == "malignant" and record["dataset_id"] == dataset_id
    assert record["steps"] == record["step"] == 2 and record["status"] == "complete"
    assert record["config"]["n_critic"] == 1 and len(record["checkpoint_sha256"]) == 64

    for name in ("a", "b"):
        code, _, err = _run(capsys, "sample", "--model", model_id, "--n", "5", "--seed", "3",
                            "--out", str(tmp_path / name))
        assert code == 0, err
    code, _, _ = _run(capsys, "sample", "--model", model_id, "--n", "5", "--seed", "4", "--out", str(tmp_path / "c"))
    a, b, c = (read_sample_dir(tmp_path / k) for k in "abc")
    assert a.images.shape == (5, 1, 28, 28) and a.masks is None
    assert sorted(p.name for p in (tmp_path / "a" / "images").iterdir()) == [f"{i:06d}.png" for i in range(5)]
    assert [r["class"] for r in a.rows] == ["malignant"] * 5
    assert all(r["model_id"] == model_id and r["seed"] == "3" for r in a.rows)
    for i in range(5):  # same seed, same files, byte for byte
        name = f"images/{i:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert not np.array_equal(a.images, c.images)


@pytest.mark.parametrize("argv, field", [
    (["train", "--dataset", "ds-0000", "--class", "x", "--generator", "wgan-gp"], "dataset_id"),
    (["sample", "--model", "mdl-000000000000", "--n", "1", "--seed", "0", "--out", "x"], "model_id"),
    (["sample", "--model", "not-a-model", "--n", "1", "--seed", "0", "--out", "x"], "model_id"),
])
def test_bad_ids_are_one_line_errors_with_exit_2(capsys, argv, field):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("synthcohort: error: ") and field in err


def test_unknown_generator_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--dataset", "ds-x", "--class", "x", "--generator", "gan"])
    assert exc.value.code == 2
    assert "wgan-gp" in capsys.readouterr().err


def test_bad_config_names_the_field(capsys, synthcohort_home):
    from synthcohort.store.ingest import import_demo

    ds = import_demo(2, seed=0, size=16)
    code, _, err = _run(capsys, "train", "--dataset", ds.id, "--class", "lesion", "--generator", "diffusion",
                        "--config", '{"sampling_step": 3}')
    assert code == 2 and "config" in err and "sampling_step" in err
    code, _, err = _run(capsys, "train", "--dataset", ds.id, "--class", "lesion", "--generator", "diffusion",
                        "--config", '{"channels": [8, 16], "attention_levels": [false]}')
    assert code == 2 and "config" in err and "attention_levels" in err
    code, _, err = _run(capsys, "train", "--dataset", ds.id, "--class", "lesion", "--generator", "diffusion",
                        "--config", "{not json")
    assert code == 2 and "config: not valid JSON" in err
    code, _, err = _run(capsys, "train", "--dataset", ds.id, "--class", "tumour", "--generator", "diffusion")
    assert code == 2 and "tumour" in err


def test_a_training_stopped_by_sigterm_is_interrupted_and_resumes(shared_data, capsys, synthcohort_home):
    """SIGTERM (a timeout, a scheduler) mid-training: exit 143, the record says ``interrupted`` at
    the checkpoint it can resume from, ``models list`` shows it, and the same command resumes."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    from synthcohort.generators.training import new_model_id, read_record

    code, out, _ = _run(capsys, "datasets", "import", str(shared_data / "medmnist" / "breastmnist.npz"),
                        "--classes", "malignant,benign")
    dataset_id = out.strip().splitlines()[-1]
    model_id = new_model_id()
    config = json.dumps({"batch_size": 8, "g_channels": 8, "d_channels": 8, "n_critic": 1, "log_every": 1})
    argv = ["train", "--dataset", dataset_id, "--class", "malignant", "--generator", "wgan-gp", "--seed", "1",
            "--config", config, "--device", "cpu", "--model-id", model_id, "--checkpoint-every", "3"]
    ckpt = synthcohort_home / "models" / model_id / "checkpoint.pt"
    # the setting wins over OMP_NUM_THREADS (synthcohort.core.threads); the record says what torch used
    env = {**os.environ, "SYNTHCOHORT_HOME": str(synthcohort_home), "OMP_NUM_THREADS": "2",
           "SYNTHCOHORT_TORCH_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "synthcohort", *argv, "--steps", "100000"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ckpt.is_file() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert ckpt.is_file(), proc.communicate(timeout=5)
        running = read_record(model_id)
        assert running.status == running.state == "training" and running.process["pid"] == proc.pid
        assert running.torch_threads == 1
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    rec = read_record(model_id)
    assert rec.status == rec.state == "interrupted" and rec.interrupted_by == "SIGTERM"
    assert rec.step > 0 and rec.step % 3 == 0 and rec.checkpoint_sha256
    assert f"{model_id} interrupted by SIGTERM at checkpoint step {rec.step} of 100000" in err
    assert f"--model-id {model_id}" in err
    assert isinstance(rec.code_version, dict) and rec.code_version["synthcohort"]

    code, out, _ = _run(capsys, "models", "list")
    line = next(row for row in out.splitlines() if row.startswith(model_id))
    assert code == 0 and "interrupted" in line and f"{rec.step}/100000" in line

    # a record left at "training" by a process that is gone (SIGKILL, power cut) reads as interrupted
    vanished = rec.model_copy(update={"status": "training",
                                      "process": {"host": socket.gethostname(), "pid": proc.pid}})
    assert vanished.state == "interrupted"

    code, out, err = _run(capsys, *argv, "--steps", str(rec.step + 2))  # the same command resumes
    assert code == 0, err
    done = read_record(model_id)
    assert done.status == "complete" and done.step == rec.step + 2 and done.created_at == rec.created_at
