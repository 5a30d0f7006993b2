"""Presets (small-data, binary-data): when they apply, how they merge with the user's config, what is recorded."""

from __future__ import annotations

import json
import typing

import numpy as np
import pytest

from synthcohort.cli import main
from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.presets import BINARY_DATA, PRESET_NAMES, SMALL_DATA, is_binary, resolve_preset
from synthcohort.generators.registry import available, get_generator


def test_auto_applies_to_small_2d_classes_without_a_user_config():
    small = dict(class_train_images=147, spatial_dims=2, image_size=(28, 28))
    assert resolve_preset("auto", "stylegan2", user_config=None, **small) == ("small-data", SMALL_DATA["stylegan2"])
    assert resolve_preset("auto", "stylegan2", user_config={}, **small)[0] == "small-data"
    assert resolve_preset("auto", "stylegan2", user_config={"batch_size": 8}, **small) == ("none", {})
    assert resolve_preset("auto", "wgan-gp", user_config=None, class_train_images=5000, spatial_dims=2,
                          image_size=(28, 28)) == ("none", {})
    assert resolve_preset("auto", "wgan-gp", user_config=None, class_train_images=100, spatial_dims=3,
                          image_size=(32, 48, 32)) == ("none", {})
    assert resolve_preset("auto", "wgan-gp", user_config=None, class_train_images=100, spatial_dims=2,
                          image_size=(128, 128)) == ("none", {})
    # asked for explicitly, it applies under a user config too (the caller merges the user's on top)
    assert resolve_preset("small-data", "dyngan", user_config={"batch_size": 8}, **small)[0] == "small-data"
    assert resolve_preset("none", "dyngan", user_config=None, **small) == ("none", {})
    with pytest.raises(InvalidInputError) as err:
        resolve_preset("tiny", "dyngan", user_config=None, **small)
    assert err.value.field == "preset" and "tiny" in str(err.value)


def test_binary_images_get_a_bernoulli_decoder_under_a_user_config_too():
    BIN, GREY = np.zeros((2, 1, 4, 4, 4)), np.linspace(0, 1, 128).reshape(2, 1, 4, 4, 4)
    big3d = dict(class_train_images=259, spatial_dims=3, image_size=(28, 28, 28))
    bern = {"ae_likelihood": "bernoulli"}
    assert resolve_preset("auto", "latent-diffusion", user_config={"ae_steps": 1500}, images=BIN,
                          **big3d) == ("binary-data", bern)
    assert resolve_preset("auto", "latent-diffusion", user_config=None, images=GREY, **big3d) == ("none", {})
    assert resolve_preset("auto", "diffusion", user_config=None, images=BIN, **big3d) == ("none", {})
    assert resolve_preset("none", "latent-diffusion", user_config=None, images=BIN, **big3d) == ("none", {})
    small2d = dict(class_train_images=147, spatial_dims=2, image_size=(28, 28))
    assert resolve_preset("auto", "latent-diffusion", user_config=None, images=BIN,
                          **small2d) == ("small-data+binary-data", {**SMALL_DATA["latent-diffusion"], **bern})
    assert resolve_preset("small-data", "wgan-gp", user_config=None, images=BIN,
                          **small2d) == ("small-data", SMALL_DATA["wgan-gp"])


def test_is_binary_reads_values_not_dtypes():
    rng = np.random.default_rng(0)
    shapes = (rng.random((70, 1, 8, 8, 8)) > 0.9).astype(np.float32) * 255  # two values, any scale
    assert is_binary(shapes) and is_binary(shapes.astype(bool)) and is_binary(np.zeros((3, 4)))
    intensity = shapes.copy()
    intensity[69, 0, 0, 0, 0] = 17.0  # one third value in the last chunk
    assert not is_binary(intensity)
    assert not is_binary(rng.random((5, 1, 8, 8)).astype(np.float32))
    assert not is_binary(np.zeros((0, 1, 8, 8)))


def test_every_preset_is_a_valid_config_of_its_family():
    assert set(SMALL_DATA) == set(available())
    for name, fields in BINARY_DATA.items():
        cfg = get_generator(name).Config(**fields)
        assert all(getattr(cfg, k) == v for k, v in fields.items())
    for name, fields in SMALL_DATA.items():
        cfg = get_generator(name).Config(**fields)
        assert all(getattr(cfg, k) == (tuple(v) if isinstance(v, list) else v) for k, v in fields.items())


def test_api_accepts_the_same_preset_names():
    from synthcohort.api.schemas import CohortCreate, ModelCreate

    for schema in (ModelCreate, CohortCreate):
        assert typing.get_args(schema.model_fields["preset"].annotation) == PRESET_NAMES
    assert ModelCreate.model_fields["preset"].default == "auto" == CohortCreate.model_fields["preset"].default


def test_train_records_the_preset_and_the_user_config_wins(shared_data, capsys, synthcohort_home):
    assert main(["datasets", "import", str(shared_data / "medmnist" / "breastmnist.npz"), "--classes",
                 "malignant,benign"]) == 0
    dataset_id = capsys.readouterr().out.strip().splitlines()[-1]

    def train(*extra: str) -> dict:
        assert main(["train", "--dataset", dataset_id, "--class", "malignant", "--generator", "wgan-gp", "--steps",
                     "1", "--device", "cpu", *extra]) == 0
        model_id = capsys.readouterr().out.strip()
        return json.loads((synthcohort_home / "models" / model_id / "model.json").read_text())

    auto = train()  # 147 malignant 28×28 images, no config: small-data
    assert auto["preset"] == "small-data"
    assert all(auto["config"][k] == v for k, v in SMALL_DATA["wgan-gp"].items())
    own = train("--config", json.dumps({"g_channels": 8, "d_channels": 8, "n_critic": 1}))
    assert own["preset"] == "none" and own["config"]["g_channels"] == 8
    both = train("--preset", "small-data", "--config", json.dumps({"g_channels": 8, "d_channels": 8}))
    assert both["preset"] == "small-data" and both["config"]["g_channels"] == 8
    assert both["config"]["lr"] == SMALL_DATA["wgan-gp"]["lr"]
    with pytest.raises(SystemExit) as bad:  # argparse: one line, exit 2
        main(["train", "--dataset", dataset_id, "--class", "malignant", "--generator", "wgan-gp", "--preset", "big"])
    assert bad.value.code == 2 and "--preset" in capsys.readouterr().err


def test_train_on_binary_volumes_records_the_bernoulli_decoder(shared_data, capsys, synthcohort_home):
    """AdrenalMNIST3D holds 0/1 shapes: latent diffusion trains them with a Bernoulli decoder unless the
    user names the likelihood; intensity data keeps the L1 (Laplace) decoder."""
    assert main(["datasets", "import", str(shared_data / "medmnist" / "adrenalmnist3d.npz")]) == 0
    dataset_id = capsys.readouterr().out.strip().splitlines()[-1]
    tiny = {"channels": [8, 8], "attention_levels": [False, False], "norm_num_groups": 4, "head_channels": 4,
            "ae_channels": [4, 4], "ae_norm_num_groups": 4, "ae_steps": 1, "batch_size": 2}

    def train(config: dict, *extra: str) -> dict:
        assert main(["train", "--dataset", dataset_id, "--class", "hyperplasia", "--generator", "latent-diffusion",
                     "--steps", "1", "--device", "cpu", "--config", json.dumps(config), *extra]) == 0
        model_id = capsys.readouterr().out.strip()
        return json.loads((synthcohort_home / "models" / model_id / "model.json").read_text())

    auto = train(tiny)
    assert auto["preset"] == "binary-data" and auto["config"]["ae_likelihood"] == "bernoulli"
    own = train({**tiny, "ae_likelihood": "laplace"})
    assert own["preset"] == "binary-data" and own["config"]["ae_likelihood"] == "laplace"
    assert train(tiny, "--preset", "none")["config"]["ae_likelihood"] == "laplace"
