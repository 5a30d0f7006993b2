"""The rule for who may change a validation setting, derived from each field's own declaration."""

from __future__ import annotations

from typing import get_args

import pytest

from synthcohort.core.errors import InvalidInputError
from synthcohort.core.settings import get_settings
from synthcohort.store.db import SampleState
from synthcohort.validation.config import ValidationConfig
from synthcohort.validation.policy import loosening, requester_may, sample_state, validation_config

DEFAULT = ValidationConfig()


def _looser(name: str):
    """A valid value of ``name`` on the permissive side of its declaration (any change for 'admin')."""
    rule, value = requester_may(name), getattr(DEFAULT, name)
    if value is None:  # an optional budget whose default is the classifier's recipe: any value changes it
        ValidationConfig(**{name: 2})
        return 2
    if isinstance(value, bool):
        return False if rule == "raise" else (not value if rule == "admin" else True)
    if isinstance(value, str):  # a choice, listed loose → strict: one step looser, if there is one
        choices = get_args(ValidationConfig.model_fields[name].annotation)
        i = choices.index(value)
        return choices[max(i - 1, 0)] if rule == "raise" else choices[min(i + 1, len(choices) - 1)]
    if rule == "raise":  # stricter when higher: go lower
        candidate = value / 2 if isinstance(value, float) else value - 1
    elif rule == "lower":  # stricter when lower: go higher, inside the field's bounds
        candidate = (value + 1.0) / 2 if isinstance(value, float) else value + 1
    else:
        candidate = value + 1
    ValidationConfig(**{name: candidate})  # must be a value the config itself accepts
    return candidate


@pytest.mark.parametrize("name", list(ValidationConfig.model_fields))
def test_every_field_declares_its_rule_and_a_requester_cannot_loosen_it(name):
    rule = requester_may(name)  # KeyError for a field without a declaration: a new field cannot be forgotten
    value = _looser(name)
    if rule == "set" or value == getattr(DEFAULT, name):
        return  # free, or already at its loosest (require_utility_gain defaults to off)
    with pytest.raises(InvalidInputError, match="only an admin") as err:
        validation_config({name: value}, admin=False)
    assert err.value.field == f"validation.{name}"
    assert getattr(validation_config({name: value}, admin=True), name) == value


def test_the_weakening_settings_of_the_probe_are_refused_one_by_one():
    """Issue 20's probe: settings outside the old threshold list that weakened the gate."""
    probe = {"utility": False, "dc_k": 200, "bins_alpha": 1e-12, "encoder_epochs": 1, "saturated_fraction": 1.0,
             "max_bins": 2}
    for name, value in probe.items():
        with pytest.raises(InvalidInputError, match="only an admin"):
            validation_config({name: value}, admin=False)


def test_stricter_gates_and_budgets_are_anyones_choice():
    cfg = validation_config({"similarity_threshold": 0.95, "copy_quantile": 0.2, "outlier_quantile": 0.9,
                             "bootstrap": 50, "tsne": False, "utility": True, "seed": 0}, admin=False)
    assert (cfg.similarity_threshold, cfg.copy_quantile, cfg.outlier_quantile, cfg.bootstrap) == (0.95, 0.2, 0.9, 50)
    assert validation_config(None, admin=False) is None and validation_config({}, admin=False) is None
    assert loosening({"seed": 3}, ValidationConfig(seed=3)) is not None  # choosing the split is fishing


def test_the_decision_rule_may_only_be_made_stricter(monkeypatch):
    """``decision`` is a choice listed loose → strict: point → lower_bound is anyone's, the way back
    an admin's; a strict deployment's default binds requesters."""
    assert loosening({"decision": "lower_bound"}, ValidationConfig(decision="lower_bound")) is None
    monkeypatch.setenv("SYNTHCOHORT_VALIDATION_DECISION", "lower_bound")
    get_settings.cache_clear()
    assert ValidationConfig().decision == "lower_bound"
    assert loosening({"decision": "point"}, ValidationConfig(decision="point")) == (
        "decision", "'point' is looser than the service's 'lower_bound'")
    with pytest.raises(InvalidInputError, match="only an admin") as exc:
        validation_config({"decision": "point"}, admin=False)
    assert exc.value.field == "validation.decision"
    assert validation_config({"decision": "point"}, admin=True).decision == "point"


def test_an_undeclared_field_is_an_error():
    with pytest.raises(KeyError):
        requester_may("no_such_field")


@pytest.mark.parametrize(("verdict", "flags", "state"), [
    ("passed", [], SampleState.released),
    ("needs_review", [{"kind": "near_copy"}], SampleState.held),
    ("failed", [], SampleState.held),
])
def test_release_rule(verdict, flags, state):
    assert sample_state(verdict, flags) is state
