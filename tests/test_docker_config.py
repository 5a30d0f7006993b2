"""docker/: no Docker engine runs here, so check what can drift from the code: every
SYNTHCOHORT_* variable is a Settings field, every synthcohort service gets the settings it
needs, its command parses with the real CLI, and the images are built the way the README says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from synthcohort.cli import build_parser
from synthcohort.core.settings import Settings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
PREFIX = Settings.model_config["env_prefix"]
SETTINGS_VARS = {PREFIX + name.upper() for name in Settings.model_fields}
NEEDED = {PREFIX + "HOME", PREFIX + "DATABASE_URL", PREFIX + "BROKER_URL"}
VAR = re.compile(r"\b" + PREFIX + r"[A-Z0-9_]+")


def _installed_packages() -> list[str]:
    """Source folders pyproject.toml maps into the installed ``synthcohort`` namespace."""
    import tomllib

    pyproject = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())
    return sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values()))


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _synthcohort_services(compose: dict) -> dict[str, dict]:
    return {name: svc for name, svc in compose["services"].items()
            if str(svc.get("image", "")).startswith("synthcohort") or "build" in svc}


def test_every_synthcohort_variable_is_a_settings_field(compose):
    for name, svc in compose["services"].items():
        unknown = {k for k in _environment(svc) if k.startswith(PREFIX)} - SETTINGS_VARS
        assert not unknown, f"service {name}: {sorted(unknown)} are not fields of Settings"
    for path in (DOCKER / "compose.yaml", DOCKER / ".env.example", DOCKER / "Dockerfile.cpu", DOCKER / "Dockerfile.cuda"):
        unknown = set(VAR.findall(path.read_text())) - SETTINGS_VARS
        assert not unknown, f"{path.name}: {sorted(unknown)} are not fields of Settings"


def test_each_synthcohort_service_has_the_settings_it_needs(compose):
    services = _synthcohort_services(compose)
    assert set(services) == {"api", "worker-gpu", "worker-cpu"}
    for name, svc in services.items():
        env = _environment(svc)
        assert NEEDED <= set(env), f"service {name} lacks {sorted(NEEDED - set(env))}"
        assert env[PREFIX + "HOME"] == "/data"
        assert env[PREFIX + "DATABASE_URL"].startswith("postgresql+psycopg://") and "@postgres:" in env[PREFIX + "DATABASE_URL"]
        assert env[PREFIX + "BROKER_URL"].startswith("redis://redis:")
        # The data root is shared: the API serves what the workers write.
        assert any(str(v).endswith(":/data") for v in svc["volumes"]), f"service {name} has no /data volume"
    assert {"redis", "postgres"} <= set(compose["services"])
    assert _environment(services["api"])[PREFIX + "API_HOST"] == "0.0.0.0"


def test_service_commands_are_real_cli_commands(compose):
    parser = build_parser()
    services = _synthcohort_services(compose)
    expected = {"api": ["serve", "--no-worker"], "worker-gpu": ["worker", "--queues", "gpu"],
                "worker-cpu": ["worker", "--queues", "cpu"]}
    for name, svc in services.items():
        command = svc["command"]
        assert command == expected[name]
        args = parser.parse_args(command)  # argparse exits (SystemExit) on an unknown command or option
        assert callable(args.func)
    assert parser.parse_args(["serve", "--no-worker"]).no_worker is True
    assert parser.parse_args(["worker", "--queues", "gpu"]).queues == "gpu"


def test_gpu_worker_reserves_a_gpu_and_uses_the_cuda_image(compose):
    svc = compose["services"]["worker-gpu"]
    assert svc["build"]["dockerfile"] == "docker/Dockerfile.cuda"
    (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert _environment(svc)[PREFIX + "DEVICE"] == "cuda"
    for name in ("api", "worker-cpu"):
        assert compose["services"][name]["build"]["dockerfile"] == "docker/Dockerfile.cpu"
        assert "deploy" not in compose["services"][name]


def test_dockerfiles_build_as_documented():
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    cuda = (DOCKER / "Dockerfile.cuda").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", cpu, re.M)
    assert "--index-url https://download.pytorch.org/whl/cpu" in cpu
    assert re.search(r"^FROM nvidia/cuda:[\w.\-]+-runtime-", cuda, re.M)
    assert re.search(r"TORCH_INDEX=https://download.pytorch.org/whl/cu\d+", cuda)
    readme = (DOCKER.parent / "README.md").read_text()
    torch_pin = re.search(r"torch==([\w.]+)", readme)
    vision_pin = re.search(r"torchvision==([\w.]+)", readme)
    for text in (cpu, cuda):
        assert 'pip install ".[postgres]"' in text  # psycopg for the compose PostgreSQL URL
        assert '["synthcohort"]' in text.split("ENTRYPOINT", 1)[1].splitlines()[0]
        if torch_pin:
            assert f"TORCH_VERSION={torch_pin.group(1)}" in text
        if vision_pin:
            assert f"TORCHVISION_VERSION={vision_pin.group(1)}" in text
        for package in _installed_packages():  # every package `pip install .` needs is in the image
            assert f"COPY {package} ./{package}" in text
    healthcheck = re.search(r"HEALTHCHECK.*?\n(.*?)\n", cpu, re.S)
    assert healthcheck and "/v1/health" in healthcheck.group(1)
