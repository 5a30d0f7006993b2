"""The quality benchmark's acceptance rule, and its summary over generator training seeds."""

from __future__ import annotations

import json

import pytest

from benchmarks.quality import beats_random_oversampling
from benchmarks.quality_seeds import main, summarise


def _arm(recall: float, bal: float) -> dict:
    return {"values": {"minority_recall": recall, "balanced_accuracy": bal, "auroc": 0.8}}


def _run(seed: int, s_fid: float, recall: float, bal: float, ros: tuple[float, float] = (0.70, 0.78)) -> dict:
    result = {"dataset": "breastmnist", "baselines": {"none": _arm(0.6, 0.75), "random_oversampling": _arm(*ros)},
              "families": {"dyngan": {"s_fid": {"value": s_fid}, "s_fid_unflagged": None, "rejection": None,
                                      "utility": {"synthetic": _arm(recall, bal)}}}}
    return {"args": {"seed": seed}, "results": [result]}


def test_the_rule_needs_the_gate_more_recall_and_no_lower_balanced_accuracy():
    assert beats_random_oversampling(_run(0, 0.93, 0.78, 0.80)["results"][0]) == ["dyngan"]
    assert beats_random_oversampling(_run(0, 0.89, 0.78, 0.80)["results"][0]) == []  # S_FID below 0.90
    assert beats_random_oversampling(_run(0, 0.93, 0.70, 0.80)["results"][0]) == []  # recall only equal
    assert beats_random_oversampling(_run(0, 0.93, 0.78, 0.77)["results"][0]) == []  # balanced accuracy lower


def test_summary_counts_the_runs_passed_and_averages_each_arm(tmp_path, capsys):
    runs = [_run(0, 0.93, 0.78, 0.80), _run(1, 0.80, 0.63, 0.75, ros=(0.75, 0.80)), _run(2, 0.91, 0.76, 0.79)]
    d = summarise(runs)["breastmnist"]
    assert d["seeds"] == [0, 1, 2]
    assert d["wins"]["dyngan"] == 2
    assert d["s_fid"]["dyngan"] == [0.93, 0.80, 0.91]
    assert d["arms"]["random_oversampling"]["minority_recall"] == pytest.approx([0.70, 0.75, 0.70])

    paths = []
    for i, r in enumerate(runs):
        paths.append(tmp_path / f"q{i}.json")
        paths[-1].write_text(json.dumps(r))
    assert main([str(p) for p in paths]) == 0
    out = capsys.readouterr().out
    assert "generator seeds 0, 1, 2" in out and "2/3" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main([str(bad)]) == 2
    assert "bad.json: cannot read a quality.json" in capsys.readouterr().err
