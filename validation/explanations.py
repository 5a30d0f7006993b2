"""What a validation report means, in plain words: the verdict and its reasons, what to do next,
what each gate measures and how to read each picture.

Written once here so that the archived ``report.html`` and the review page (which reads
``report.json``: ``details.explanation`` and ``details.captions``) say the same thing.
"""

from __future__ import annotations

from typing import Any

from synthcohort.validation.verdict import FAILED, NEEDS_REVIEW, NOT_DECISIVE, DecisionRule, Metric

# gate → (a short title, what it measures)
GATE_WORDS: dict[str, tuple[str, str]] = {
    "s_fid": ("Similarity to real images",
              "how close the synthetic images are to real images of the class, as the real-vs-real distance over "
              "the synthetic-vs-real distance (1 means as close as real images are to each other)"),
    "coverage_ratio": ("Variety",
                       "how much of the variety of real images the synthetic images cover, relative to a second "
                       "set of real images"),
    "entropy_ratio": ("Spread over kinds of image",
                      "how evenly the synthetic images spread over the kinds of real image; low means many "
                      "near-identical images (mode collapse)"),
    "dice_ratio": ("Teaches segmentation like real data",
                   "how well a segmenter trained on the synthetic images and their masks outlines the structure in "
                   "real hold-out images, relative to one trained on real images (1 means as well)"),
    "utility_gain_minority_recall": ("Usefulness for training",
                                     "how much adding the synthetic images raises a classifier's recall of the "
                                     "rare class on real test images"),
}

FLAG_WORDS: dict[str, str] = {
    "near_copy": "too close to a training image (it may copy a patient)",
    "outlier": "unlike any real image of the class",
    "broken": "broken (noise, blank, saturated or out of range)",
    NOT_DECISIVE: "held: a gate could not decide at this cohort size",
}

PICTURE_CAPTIONS: dict[str, str] = {
    "tsne.png": "Each dot is one image, placed so that similar images lie close (t-SNE): synthetic dots should "
                "mix with the real ones, not clump apart from them or leave real regions empty.",
    "grid_real.png": "Real training images of the class, drawn at random: what the generator learned from.",
    "grid_synthetic.png": "Synthetic images drawn at random from the cohort: compare shape, texture and contrast "
                          "with the real grid beside it.",
    "ortho_real.png": "Real training volumes of the class, three orthogonal slices each through the centre of the "
                      "mask (red outline); the title gives the axis and slice position.",
    "ortho_synthetic.png": "Synthetic volumes, three orthogonal slices each through the centre of the mask they were "
                           "generated for (red outline): the structure should fill the outline in every direction.",
    "spread.png": "How much the volumes differ from one another at each voxel (standard deviation over samples), "
                  "real above synthetic: a synthetic map much darker than the real one means many near-identical "
                  "volumes (mode collapse).",
}

UTILITY_CEILING = 1.0


def saturated_utility(table: dict[str, dict[str, Any]]) -> list[str]:
    """The utility metrics on which every arm reaches the ceiling (1.0): there the test cannot
    tell whether the synthetic images help, however good or bad they are."""
    if not table:
        return []
    # specificity at 1.0 in every arm says no arm calls a majority image minority: no ceiling of usefulness
    names = sorted({m for arm in table.values() for m in (arm.get("values") or {})} - {"specificity"})
    out = []
    for name in names:
        values = [(arm.get("values") or {}).get(name) for arm in table.values()]
        if all(v is not None and v == v and v >= UTILITY_CEILING - 1e-9 for v in values):
            out.append(name)
    return out


def _num(x: float | None) -> str:
    return "—" if x is None or x != x else f"{x + 0.0:.3g}"  # + 0.0: -0.0 reads 0


def gate_sentence(name: str, m: Metric, rule: DecisionRule = "point") -> str:
    """One gate in words: its title, value, pass mark and, when it fails or cannot decide, what
    it measures and why."""
    title, meaning = GATE_WORDS.get(name, (name, ""))
    if not m.threshold:
        return f"{title}: {_num(m.value)} (this gate was turned off for the cohort)."
    ci = f" (95 % CI {_num(m.ci[0])}–{_num(m.ci[1])})" if m.ci is not None else ""
    outcome = m.outcome(rule)
    if outcome == "undecided":
        more = f"; about {m.n_to_decide} samples would let it decide" if m.n_to_decide else ""
        return (f"{title}: {_num(m.value)}{ci}, below the pass mark {_num(m.threshold)}, but the interval reaches "
                f"it: at {m.n} samples the test cannot tell{more}. It measures {meaning}.")
    if outcome == "fail" and m.passed:
        return (f"{title}: {_num(m.value)}{ci}; this deployment requires the lower end of the interval to reach "
                f"the pass mark {_num(m.threshold)}, and it does not.")
    if m.passed:
        return f"{title}: {_num(m.value)}{ci}, at or above the pass mark {_num(m.threshold)}."
    return f"{title}: {_num(m.value)}{ci}, below the pass mark {_num(m.threshold)}; it measures {meaning}."


def explain(verdict: str, metrics: dict[str, Metric], samples: list[dict[str, Any]],
            saturated: list[str] | None = None, rule: DecisionRule = "point") -> dict[str, Any]:
    """``{"summary", "reasons", "next_steps", "gates"}`` of a report, in plain words (``gates``: each
    gate's title and what it measures)."""
    gates = {n: m for n, m in metrics.items() if m.passed is not None}
    failing = [n for n, m in gates.items() if m.outcome(rule) == "fail"]
    undecided = [n for n, m in gates.items() if m.outcome(rule) == "undecided"]
    off = [n for n, m in gates.items() if not m.threshold]
    flagged = [s for s in samples if s.get("flags")]
    n, total = len(flagged), len(samples)
    met = ("no gate was on for this cohort (all were turned off)" if gates and len(off) == len(gates)
           else f"the cohort met every gate that was on ({len(off)} of {len(gates)} were turned off)" if off
           else "the cohort met every gate")
    if verdict == FAILED:
        summary = (f"Failed: the cohort missed {len(failing)} of {len(gates)} gates, so all {total} samples are "
                   "withheld and no review can release them.")
    elif verdict == NEEDS_REVIEW and undecided:
        summary = (f"Needs review: {len(undecided)} of {len(gates)} gates could not decide at this cohort size "
                   f"(the value is below the pass mark but its 95 % interval reaches it), so all {total} samples "
                   "are held until a reviewer approves or rejects each.")
    elif verdict == NEEDS_REVIEW:
        summary = (f"Needs review: {met}, but {n} of {total} samples were flagged and are held "
                   "until a reviewer approves or rejects each.")
    else:
        summary = (f"Passed: {met} and no sample was flagged, so all {total} samples are "
                   "released.")
    ordered = failing + undecided + [g for g in gates if g not in failing and g not in undecided]
    reasons = [gate_sentence(g, gates[g], rule) for g in ordered]
    kinds: dict[str, int] = {}
    for s in flagged:
        for kind in {f.get("kind", "") for f in s["flags"]}:
            kinds[kind] = kinds.get(kind, 0) + 1
    reasons += [f"{count} of {total} samples look {FLAG_WORDS.get(kind, kind)}."
                for kind, count in sorted(kinds.items()) if kind != NOT_DECISIVE]  # the summary says that one
    if saturated:
        reasons.append(f"The utility test is saturated: every arm, even without synthetic images, reaches "
                       f"{UTILITY_CEILING:g} on {', '.join(s.replace('_', ' ') for s in saturated)}, so it cannot "
                       "show whether the synthetic images help.")
    if verdict == FAILED:
        steps = [f"Look at the failing gate{'s' if len(failing) > 1 else ''} "
                 f"({', '.join(GATE_WORDS.get(f, (f, ''))[0].lower() for f in failing)}) and the pictures below.",
                 "Train longer, on more steps or a GPU, or try another generator family; then request a new cohort."]
    elif verdict == NEEDS_REVIEW and undecided:
        steps = ["A reviewer looks at the samples beside their nearest training images and approves or rejects "
                 "them (select a range to decide many at once).",
                 "Or give the gate more images: N is the smaller of the cohort and the real images of the class "
                 "it is compared with, so more real images (or a larger cohort, when that is the smaller) let it "
                 "decide by itself."]
    elif verdict == NEEDS_REVIEW:
        steps = ["A reviewer looks at each flagged sample beside its nearest training images and approves or "
                 "rejects it.",
                 "Approved samples are released with the unflagged ones; rejected ones never are. Then download "
                 "them, or load them with CohortDataset."]
    else:
        steps = ["Download the released samples, or load them into a training job with CohortDataset."]
    words = {g: {"title": GATE_WORDS[g][0], "meaning": GATE_WORDS[g][1]} for g in gates if g in GATE_WORDS}
    return {"summary": summary, "reasons": reasons, "next_steps": steps, "gates": words}
