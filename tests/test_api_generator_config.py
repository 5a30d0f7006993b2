"""Finding 5 of issue 20: a generator ``config`` is checked at POST against the family's bounded
pydantic config (with the preset the worker would merge under it), and against a memory
estimate: 422 naming ``config.<field>``, no job and no record. The API process stays torch-free
(tests/test_packaging.py); here the real app answers through TestClient on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from synthcohort.generators.configs import CONFIGS, estimate_training_bytes, parse_config
from tests.api_fixtures import Api

BAD = [({"nonsense": 1}, "config.nonsense"), ({"batch_size": -3}, "config.batch_size"),
       ({"batch_size": 100000000}, "config.batch_size"), ({"betas": [0.5, 1.5]}, "config.betas.1"),
       ({"class_weights": "loud"}, "config.class_weights")]


def _bodies(ds: str, config: dict) -> list[tuple[str, dict]]:
    return [("/v1/models", {"dataset_id": ds, "class_name": "malignant", "generator": "wgan-gp", "steps": 5,
                            "config": config}),
            ("/v1/cohorts", {"dataset_id": ds, "class_name": "malignant", "generator": "wgan-gp",
                             "train_steps": 5, "count": 64, "config": config})]


def test_bad_generator_config_is_422_naming_the_field_and_leaves_nothing(api: Api, dataset_id: str) -> None:
    for config, field in BAD:
        for path, body in _bodies(dataset_id, config):
            r = api.post(path, "alice", body)
            assert r.status_code == 422, r.text
            assert r.json()["field"] == field, r.json()
    assert api.counts()["jobs"] == 0 and api.counts()["models"] == 0 and api.counts()["cohorts"] == 0


def test_config_above_the_worker_memory_is_422_and_a_fitting_one_202(api: Api, dataset_id: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from synthcohort.core.settings import get_settings

    monkeypatch.setenv("SYNTHCOHORT_WORKER_MEMORY_BYTES", str(1024**3))
    get_settings.cache_clear()
    huge = {"batch_size": 60000, "g_channels": 256, "d_channels": 256}
    for path, body in _bodies(dataset_id, huge):
        r = api.post(path, "alice", body)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "config" and "SYNTHCOHORT_WORKER_MEMORY_BYTES" in r.json()["detail"]
    assert api.counts()["jobs"] == 0
    # the preset (small class, no user config) and a tiny user config both fit
    for config in ({}, {"batch_size": 8, "g_channels": 8, "d_channels": 8}):
        for path, body in _bodies(dataset_id, config):
            assert api.post(path, "alice", body).status_code == 202
    assert api.counts()["jobs"] == 4


def test_latent_diffusion_config_is_checked_at_post(api: Api, dataset_id: str) -> None:
    body = {"dataset_id": dataset_id, "class_name": "malignant", "generator": "latent-diffusion", "steps": 5}
    for config, field in (({"ae_steps": 0}, "config.ae_steps"), ({"kl_weight": -1}, "config.kl_weight"),
                          ({"ae_channels": [8] * 9}, "config.ae_channels")):
        r = api.post("/v1/models", "alice", {**body, "config": config})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == field, r.json()
    assert api.counts()["jobs"] == 0
    r = api.post("/v1/models", "alice", {**body, "config": {"ae_steps": 2, "batch_size": 4}})
    assert r.status_code == 202, r.text
    assert api.counts()["jobs"] == 1 and api.counts()["models"] == 1


def test_every_family_config_refuses_unknown_fields_and_its_defaults_fit_the_default_limit() -> None:
    from synthcohort.core.settings import Settings
    from synthcohort.generators.presets import SMALL_DATA
    from synthcohort.generators.registry import FAMILY_MODULES

    assert set(CONFIGS) == set(FAMILY_MODULES)  # a new family declares its config here
    limit = Settings.model_fields["worker_memory_bytes"].default
    for family in CONFIGS:
        with pytest.raises(Exception) as err:
            parse_config(family, {"nonsense": 1})
        assert err.value.field == "config.nonsense"
        for fields in ({}, SMALL_DATA[family]):
            cfg = parse_config(family, fields)
            assert 0 < estimate_training_bytes(family, cfg, channels=3, image_size=(64, 64)) < limit
        # the estimate grows with the batch: a POST with a huge batch is refused, a small one not
        small, big = (estimate_training_bytes(family, parse_config(family, {"batch_size": b}), channels=1,
                                              image_size=(28, 28)) for b in (8, 8000))
        assert small < limit < big, (family, small, big)


def test_the_families_build_from_the_checked_config_classes() -> None:
    from synthcohort.generators.registry import get_generator

    for family, cls in CONFIGS.items():
        assert get_generator(family).Config is cls


@pytest.mark.parametrize("family, size, fields", [
    # MONAI's 3D U-Net at the hippocampus grid, attention over 16×24×16 tokens: fused, a step stays
    # under the estimate (about 1.6 GiB); an explicit attention map alone took 3.9 GiB here, so this
    # also fails if generators.nets.denoiser_unet stops fusing it
    ("diffusion", (32, 48, 32), {"batch_size": 1}),
    # StyleGAN2's modulated convolutions keep per-sample weights (the estimate was 6 × too low)
    ("stylegan2", (28, 28), {"batch_size": 4}),
])
def test_the_memory_estimate_covers_a_real_training_step(family, size, fields) -> None:
    """The API refuses what is estimated above the worker's memory, so an estimate below the real
    need lets through a job that the worker then dies of: a real step's peak (its own process)
    must stay under the estimate."""
    from benchmarks.training_memory import run_case

    r = run_case(family, size, fields, threads=1, steps=2)
    assert "error" not in r, r
    assert r["measured"] > 0 and r["estimated"] >= r["measured"], r
