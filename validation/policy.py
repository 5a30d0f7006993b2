"""Who may change the gate, and when a sample is released: the service's policy on validation.

Both rules live beside what they govern (``ValidationConfig``, the sample states) so that the
API, which checks a request when it arrives, and the worker, which applies it, share one
definition. Each setting's own declaration (``requester=`` in ``validation.config.setting``)
says what a non-admin may do with it; nothing here lists fields, so a new field cannot be
forgotten.
"""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from synthcohort.core.errors import InvalidInputError
from synthcohort.store.db import SampleState, Verdict
from synthcohort.validation.config import RequesterMay, ValidationConfig


def requester_may(name: str) -> RequesterMay:
    """The declaration of one ``ValidationConfig`` field (KeyError for an undeclared one)."""
    extra = ValidationConfig.model_fields[name].json_schema_extra
    if not isinstance(extra, dict) or extra.get("requester") not in ("set", "raise", "lower", "admin"):
        raise KeyError(f"ValidationConfig.{name} declares no requester rule; use validation.config.setting")
    return extra["requester"]  # type: ignore[return-value]


def _rank(name: str, value: Any) -> Any:
    """A value's place on its field's scale: itself for a number or a flag; for a choice
    (``Literal``), its position among the choices, which a field lists from loose to strict."""
    annotation = ValidationConfig.model_fields[name].annotation
    if get_origin(annotation) is Literal:
        return get_args(annotation).index(value)
    return value


def loosening(raw: dict[str, Any], cfg: ValidationConfig) -> tuple[str, str] | None:
    """(field, why) for the first override in ``raw`` (validated as ``cfg``) that needs an admin,
    or None when none does."""
    default = ValidationConfig()
    for name in raw:
        rule = requester_may(name)
        value, standard = getattr(cfg, name), getattr(default, name)
        if rule == "set" or value == standard:
            continue
        if rule == "admin":
            return name, f"changes how the gate measures (the service uses {standard!r})"
        if (rule == "raise" and _rank(name, value) < _rank(name, standard)) or (
                rule == "lower" and _rank(name, value) > _rank(name, standard)):
            return name, f"{value!r} is looser than the service's {standard!r}"
    return None


def validation_config(raw: dict[str, Any] | None, *, admin: bool) -> ValidationConfig | None:
    """The request's validation overrides as a config, or None for the service's defaults.
    A stricter gate or a smaller budget is anyone's choice; a looser gate, or a change to the
    instrument, would let a requester pass their own cohort, so it needs an admin."""
    if not raw:
        return None
    cfg = ValidationConfig.from_dict(raw)
    found = None if admin else loosening(raw, cfg)
    if found:
        name, why = found
        raise InvalidInputError(f"{why}; only an admin key may loosen a validation gate", field=f"validation.{name}")
    return cfg


def sample_state(verdict: str, flags: list[Any]) -> SampleState:
    """The release rule: a failed cohort holds everything (and no review can release it);
    otherwise unflagged samples are released and flagged ones wait for a reviewer."""
    if verdict == Verdict.failed.value or flags:
        return SampleState.held
    return SampleState.released
