"""report.json for machines and one self-contained report.html (pictures inlined as base64 PNG)
for people; every file written atomically."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from string import Template

import numpy as np

from synthcohort.core.atomic import atomic_write_bytes, atomic_write_text
from synthcohort.core.seeding import numpy_rng
from synthcohort.imaging.sample_files import encode_png, preview
from synthcohort.validation.collapse import spread_picture
from synthcohort.validation.copies import CopyScreen
from synthcohort.validation.explanations import GATE_WORDS, PICTURE_CAPTIONS, explain
from synthcohort.validation.verdict import FAILED, Metric, ValidationReport
from synthcohort.validation.volume_views import VolumeRow, orthogonal_views, slice_centre

TEMPLATE = Path(__file__).with_name("templates") / "report.html"

# The utility table's columns (validation.utility.METRICS) and their headings.
UTILITY_COLUMNS = {"minority_recall": "minority recall", "balanced_accuracy": "balanced accuracy", "auroc": "AUROC",
                   "auprc": "AUPRC", "specificity": "specificity", "recall_at_ref_specificity": "recall at ref. specificity"}


def grid(images: np.ndarray, cols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile previews into one array (white padding)."""
    tiles = [preview(x) for x in images]
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, *tiles[0].shape[2:]), np.float32)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = t
    return out


# Edge lengths in report.html, in screen pixels: a 28-pixel MedMNIST image is enlarged 3× in the
# grids and 6× beside its nearest training image (nearest neighbour, no smoothing).
GRID_TILE_PX = 96
PAIR_TILE_PX = 168
ORTHO_ROWS = 6  # volumes per three-slice picture of a 3D report (real, synthetic)


def _scale_for(h: int, target: int = PAIR_TILE_PX) -> int:
    return max(1, target // max(h, 1))


def _img_tag(data: bytes, alt: str, width: int | None = None) -> str:
    w = f' width="{width}"' if width else ""
    return f'<img class="pix" alt="{html.escape(alt)}"{w} src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def _figure(img: str, name: str) -> str:
    """A picture with its one-line caption (the same words as on the review page)."""
    return f'<figure data-picture="{name}">{img}<figcaption>{html.escape(PICTURE_CAPTIONS[name])}</figcaption></figure>'


def write_report(
    report: ValidationReport,
    out_dir: Path,
    *,
    real_images: np.ndarray,
    synthetic: np.ndarray,
    train_images: np.ndarray,
    screen: CopyScreen,
    tsne_png: Path | None,
    seed: int,
    gallery_max: int = 48,
    real_masks: np.ndarray | None = None,
    synthetic_masks: np.ndarray | None = None,
    train_masks: np.ndarray | None = None,
) -> None:
    """Write out_dir/report.json, report.html and the sample grids (PNG). Volumes also get three
    orthogonal slices per sample (mask contours from ``real_masks`` / ``synthetic_masks``, the
    class's and the cohort's) and the voxel-spread picture; ``train_masks`` (every train image's)
    outline the nearest training volume beside each flagged sample."""
    out_dir = Path(out_dir)
    rng = numpy_rng(seed)
    real_idx = np.sort(rng.choice(len(real_images), min(32, len(real_images)), replace=False))
    syn_idx = np.sort(rng.choice(len(synthetic), min(32, len(synthetic)), replace=False))
    real_pick, syn_pick = real_images[real_idx], synthetic[syn_idx]
    scale = _scale_for(preview(real_pick[0]).shape[0], GRID_TILE_PX)
    pictures = {"grid_real.png": encode_png(grid(real_pick), scale), "grid_synthetic.png": encode_png(grid(syn_pick), scale)}
    if synthetic.ndim == 5:
        pictures["ortho_real.png"] = _ortho_rows("real", real_images, real_masks, real_idx[:ORTHO_ROWS])
        pictures["ortho_synthetic.png"] = _ortho_rows("synthetic", synthetic, synthetic_masks, syn_idx[:ORTHO_ROWS])
        pictures["spread.png"] = spread_picture(real_images, synthetic)
    for name, data in pictures.items():
        atomic_write_bytes(out_dir / name, data)
    report.details["pictures"] = sorted([*pictures, *(["tsne.png"] if tsne_png else [])])
    report.details["captions"] = {name: PICTURE_CAPTIONS[name] for name in report.details["pictures"]}
    atomic_write_text(out_dir / "report.json", report.dumps())
    atomic_write_text(out_dir / "report.html", render_html(report, pictures, synthetic, train_images, screen, tsne_png,
                                                          gallery_max, synthetic_masks=synthetic_masks,
                                                          train_masks=train_masks))


def _ortho_rows(label: str, volumes: np.ndarray, masks: np.ndarray | None, idx: np.ndarray) -> bytes:
    """Three orthogonal slices of ``volumes[idx]``, one row each, labelled with the index."""
    return orthogonal_views([VolumeRow(f"{label} #{int(i)}", volumes[i], None if masks is None else masks[i])
                             for i in idx])


def _pair_png(synthetic: np.ndarray, train: np.ndarray, syn_mask: np.ndarray | None,
              train_mask: np.ndarray | None, index: int) -> bytes:
    """A flagged sample beside its nearest training image: side by side in 2D; in 3D two rows of
    three orthogonal slices, both through the sample's mask centre so the same place is compared."""
    if synthetic.ndim == 4:
        return orthogonal_views([VolumeRow(f"synthetic #{index}", synthetic, syn_mask),
                                 VolumeRow("nearest train", train, train_mask)],
                                at=slice_centre(synthetic.shape[1:], syn_mask))
    a, b = preview(synthetic), preview(train)
    return encode_png(np.concatenate([a, np.ones_like(a)[:, :2], b], axis=1), _scale_for(a.shape[0]))


def render_html(
    report: ValidationReport,
    pictures: dict[str, bytes],
    synthetic: np.ndarray,
    train_images: np.ndarray,
    screen: CopyScreen,
    tsne_png: Path | None,
    gallery_max: int,
    *,
    synthetic_masks: np.ndarray | None = None,
    train_masks: np.ndarray | None = None,
) -> str:
    e = html.escape
    prov = report.provenance

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.4g}"

    rule = report.details.get("decision_rule", "point")
    gated, informational = [], []
    for name, m in report.metrics.items():
        j = m.to_json()
        ci = f"[{fmt(j['ci'][0])}, {fmt(j['ci'][1])}]" if j["ci"] else "—"
        res = _outcome_cell(m, rule)
        thr = f"≥ {fmt(j['threshold'])}" if j["threshold"] is not None else "—"
        if name.startswith("utility_") and name != "utility_gain_minority_recall":
            continue
        words = GATE_WORDS.get(name, ("", ""))[1]
        what = f"{e(words)}<br><span class='muted'>{e(m.label)}</span>" if words else e(m.label)
        row = (f"<tr><td><code>{e(name)}</code></td><td>{fmt(j['value'])}</td><td>{ci}</td><td>{thr}</td>{res}"
               f"<td>{what}</td></tr>")
        (gated if m.passed is not None else informational).append(row)
    head = ("<tr><th>metric</th><th>value</th><th>95% CI</th><th>pass mark</th><th>result</th>"
            "<th>what it measures</th></tr>")
    metrics = f"<table>{head}{''.join(gated)}</table>" if gated else '<p class="muted">no gate was computed</p>'
    if informational:
        metrics += (f"<details><summary>Informational metrics ({len(informational)}), not gates</summary>"
                    f"<table>{head}{''.join(informational)}</table></details>")
    warnings = "".join(f"<li>{e(w)}</li>" for w in report.warnings)
    tsne = (_figure(_img_tag(tsne_png.read_bytes(), "t-SNE", 560), "tsne.png") if tsne_png and tsne_png.is_file()
            else '<p class="muted">not computed</p>')
    volumes = "".join(f"<h3>{e(title)}</h3>{_figure(_img_tag(pictures[name], title, 450), name)}"
                      for name, title in (("ortho_real.png", "real volumes, training split"),
                                          ("ortho_synthetic.png", "synthetic volumes")) if name in pictures)
    if volumes:
        volumes = "<h2>Volumes: three orthogonal slices</h2>" + volumes
    spread = (_figure(_img_tag(pictures["spread.png"], "voxel spread", 560), "spread.png") if "spread.png" in pictures
              else "")
    grids = (f"<table><tr><th>real ({e(str(prov.get('class_name', '')))}, training split)</th><th>synthetic</th></tr><tr>"
             f"<td>{_figure(_img_tag(pictures['grid_real.png'], 'real'), 'grid_real.png')}</td>"
             f"<td>{_figure(_img_tag(pictures['grid_synthetic.png'], 'synthetic'), 'grid_synthetic.png')}</td>"
             "</tr></table>")
    failed = report.verdict == FAILED
    held = "withheld (cohort failed)" if failed else "held for review"
    cards = []
    flagged = [j for j, s in enumerate(report.samples) if s["flags"]]
    for j in flagged[:gallery_max]:
        s = report.samples[j]
        near_copy = any(f["kind"] == "near_copy" for f in s["flags"])
        t_idx = int(screen.pixel_index[j] if near_copy else screen.nearest_index[j])
        t_id = s["nearest_train"]["pixel_sample_id" if near_copy else "sample_id"]
        pair = _pair_png(synthetic[j], train_images[t_idx], None if synthetic_masks is None else synthetic_masks[j],
                         None if train_masks is None else train_masks[t_idx], s["index"])
        reasons = "".join(f"<li><b>{e(f['kind'])}</b>{_score(f)}: {e(f['reason'])}</li>" for f in s["flags"])
        cards.append(f'<div class="card">{_img_tag(pair, "flagged sample and nearest training image")}'
                     f"<br>#{s['index']} <code>{e(s['file'])}</code> ({held}) | nearest training image "
                     f"<code>{e(t_id)}</code><ul>{reasons}</ul></div>")
    layout = ("top: synthetic, bottom: nearest training volume, three orthogonal slices at the sample's mask centre"
              if synthetic.ndim == 5 else "left: synthetic, right: nearest training image")
    gallery = (f'<p>{len(flagged)} flagged, {held}; {layout}.</p>'
               f'<div class="gallery">{"".join(cards)}</div>' if flagged else "<p>No sample flagged.</p>")
    if failed:
        gallery = (f'<p class="bad">All {len(report.samples)} samples are withheld (cohort failed): the cohort missed '
                   "a gate, and no review can release its samples.</p>" + gallery)
    if len(flagged) > gallery_max:
        gallery += f'<p class="muted">{len(flagged) - gallery_max} more flagged samples are listed in report.json.</p>'
    util = report.details.get("utility")
    if util:
        shown = [m for m in UTILITY_COLUMNS if any(m in r["values"] for r in util.values())]
        uhead = ("<tr><th>arm</th><th>added</th>" + "".join(f"<th>{UTILITY_COLUMNS[m]}</th>" for m in shown)
                 + "</tr>")
        body = []
        for arm, r in util.items():
            cells = []
            for m in shown:
                ci = r["ci"].get(m)
                cells.append(f"<td>{fmt(r['values'].get(m))} <span class='muted'>{'[' + fmt(ci[0]) + ', ' + fmt(ci[1]) + ']' if ci else ''}</span></td>")
            body.append(f"<tr><td>{e(arm)}</td><td>{r['n_added']}</td>{''.join(cells)}</tr>")
        utility = (f"<table>{uhead}{''.join(body)}</table><p class='muted'>Classifier: "
                   f"{e(str(report.details.get('utility_classifier', '')))}; recall at ref. specificity: the minority "
                   "recall at the threshold where the arm without augmentation has its specificity.</p>")
        saturated = report.details.get("utility_saturated") or []
        if saturated:
            utility = (f'<p class="note">Saturated: every arm reaches 1.0 on {e(", ".join(saturated))}, even '
                       "without synthetic images, so this test cannot show whether the synthetic images help."
                       "</p>" + utility)
    else:
        utility = '<p class="muted">not computed</p>'
    plain = report.details.get("explanation") or explain(report.verdict, report.metrics, report.samples,
                                                         report.details.get("utility_saturated"))
    prov_rows = "".join(
        f"<tr><th>{e(str(k))}</th><td><code>{e(json.dumps(v, default=str) if not isinstance(v, str) else v)}</code></td></tr>"
        for k, v in prov.items() if k != "config"
    )
    prov_rows += f"<tr><th>config</th><td><code>{e(json.dumps(prov.get('config', {})))}</code></td></tr>"
    return Template(TEMPLATE.read_text()).substitute(
        title=e(str(prov.get("dataset_id", ""))),
        subtitle=e(f"dataset {prov.get('dataset_id', '—')}, class {prov.get('class_name', '—')}, "
                   f"{len(report.samples)} synthetic samples, created {prov.get('created_at', '')}"),
        verdict=e(report.verdict),
        summary=e(plain["summary"]),
        plain_reasons="".join(f"<li>{e(r)}</li>" for r in plain["reasons"]),
        next_steps="".join(f"<li>{e(r)}</li>" for r in plain["next_steps"]),
        reasons="".join(f"<li>{e(r)}</li>" for r in report.reasons),
        rule=e(RULE_TEXT[rule]),
        samples_heading="Flagged samples: withheld (cohort failed)" if failed
        else "Flagged samples (held back until a reviewer decides)",
        warnings=f"<h3>Warnings</h3><ul>{warnings}</ul>" if warnings else "",
        metrics=metrics,
        tsne=tsne,
        spread=spread,
        grids=grids,
        volumes=volumes,
        gallery=gallery,
        utility=utility,
        provenance=prov_rows,
    )


RULE_TEXT = {
    "point": "Decision rule: point. A gate passes when its value reaches the threshold; a gate below the threshold "
             "whose 95 % CI still reaches it is not decisive, and every sample then waits for a reviewer.",
    "lower_bound": "Decision rule: lower_bound. A gate passes only when the lower end of its 95 % CI reaches the "
                   "threshold; otherwise the cohort fails.",
}


OUTCOME_CELL = {"pass": ("ok", "pass"), "fail": ("bad", "fail"), "undecided": ("warn", "not decisive"),
                None: ("muted", "info")}


def _outcome_cell(m: Metric, rule: str) -> str:
    """The result cell of a metric: its outcome under ``rule`` and, for a gate with a CI, whether
    the CI decided it; "off" for a gate whose threshold is 0."""
    if m.passed is not None and not m.threshold:
        return '<td class="muted">off</td>'
    outcome = m.outcome(rule)
    cls, word = OUTCOME_CELL[outcome]
    note = ""
    if outcome is not None and m.decisive is not None:
        more = f"; N ≈ {m.n_to_decide} would decide" if m.n_to_decide else ""
        note = (" (decisive)" if m.decisive
                else f" <span class='muted'>(CI contains the threshold at N = {m.n}{more})</span>")
    return f'<td class="{cls}">{word}{note}</td>'


def _score(flag: dict) -> str:
    """" (0.123)" after a flag's kind, or nothing for a flag without a score (a gate that did not decide)."""
    return "" if flag.get("score") is None else f" ({flag['score']:.3g})"
