"""The registry's name → module map agrees with what each module registers, and listing the
names imports no family (so the CLI starts without torch)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from synthcohort.core.errors import InvalidInputError
from synthcohort.generators.registry import FAMILY_MODULES, available, get_generator


@pytest.mark.parametrize("name", sorted(FAMILY_MODULES))
def test_each_module_registers_the_name_it_is_listed_under(name):
    family = get_generator(name)
    assert family.name == name
    assert family.__module__ == FAMILY_MODULES[name]


def test_unknown_name_is_an_error_naming_the_field_and_the_known_names():
    with pytest.raises(InvalidInputError) as err:
        get_generator("vae")
    assert err.value.field == "generator"
    assert all(name in err.value.reason for name in available())


def test_building_the_cli_imports_no_torch():
    code = "import sys, synthcohort.cli as c; c.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
