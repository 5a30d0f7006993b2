"""Downstream utility: does adding the synthetic minority samples help a classifier tested on
entirely real data, and does it beat the classical remedies for class imbalance?

Arms (same fixed small CNN, same seeds, same budget): ``none``; ``weighted_loss`` (inverse class
frequency); ``random_oversampling``; ``smote`` (Chawla et al. 2002, JAIR, via imbalanced-learn on
flattened pixels); ``augmentation`` (flips and 90° rotations of real minority images);
``synthetic`` (the cohort). Every adding arm adds the same number of minority samples. Model
selection on the real val split by balanced accuracy (best epoch); evaluation on the real test
split: minority recall, balanced accuracy and AUROC (minority vs rest), with percentile-bootstrap
95% CIs over test images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from sklearn.metrics import roc_auc_score
from torch import nn

from synthcohort.core.device import select_device
from synthcohort.core.seeding import derive_seed, numpy_rng, torch_generator
from synthcohort.core.settings import get_settings
from synthcohort.validation.config import UTILITY_EPOCHS
from synthcohort.validation.encoder import DomainEncoder

ARMS = ("none", "weighted_loss", "random_oversampling", "smote", "augmentation", "synthetic")
METRICS = ("minority_recall", "balanced_accuracy", "auroc")


@dataclass
class ArmResult:
    name: str
    values: dict[str, float]  # mean over seeds
    ci: dict[str, tuple[float, float] | None]
    n_added: int
    per_seed: dict[str, list[float]] = field(default_factory=dict)


def _metrics(prob: np.ndarray, y: np.ndarray, minority: int) -> dict[str, float]:
    pred = prob.argmax(1)
    classes = np.unique(y)
    recalls = [float((pred[y == c] == c).mean()) for c in classes]
    is_min = y == minority
    auroc = float(roc_auc_score(is_min, prob[:, minority])) if 0 < is_min.sum() < len(y) else float("nan")
    return {
        "minority_recall": float((pred[is_min] == minority).mean()) if is_min.any() else float("nan"),
        "balanced_accuracy": float(np.mean(recalls)),
        "auroc": auroc,
    }


def _augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips of the last axis and k·90° rotations in the last two axes (square images)."""
    out = []
    square = images.shape[-1] == images.shape[-2]
    for x in images:
        if rng.random() < 0.5:
            x = np.flip(x, -1)
        if square:
            x = np.rot90(x, int(rng.integers(0, 4)), axes=(-2, -1))
        out.append(np.ascontiguousarray(x))
    return np.stack(out).astype(np.float32)


def build_arm(
    arm: str, x: np.ndarray, y: np.ndarray, synthetic: np.ndarray, minority: int, n_add: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training set of one arm."""
    rng = numpy_rng(derive_seed(seed, "utility-arm", arm))
    min_idx = np.flatnonzero(y == minority)
    if arm in ("none", "weighted_loss") or n_add == 0:
        return x, y
    if arm == "random_oversampling":
        extra = x[rng.choice(min_idx, n_add, replace=True)]
    elif arm == "augmentation":
        extra = _augment(x[rng.choice(min_idx, n_add, replace=True)], rng)
    elif arm == "synthetic":
        extra = synthetic[rng.choice(len(synthetic), n_add, replace=n_add > len(synthetic))].astype(np.float32)
    elif arm == "smote":

        counts = {int(c): int((y == c).sum()) for c in np.unique(y)}
        k = int(min(5, len(min_idx) - 1))
        if k < 1:
            extra = x[rng.choice(min_idx, n_add, replace=True)]
        else:
            sm = SMOTE(sampling_strategy={minority: counts[minority] + n_add}, k_neighbors=k, random_state=int(seed % 2**31))
            xs, ys = sm.fit_resample(x.reshape(len(x), -1), y)
            extra = xs[len(x):].reshape((-1, *x.shape[1:])).astype(np.float32)
    else:
        raise ValueError(f"unknown utility arm {arm!r}")
    return np.concatenate([x, np.clip(extra, 0, 1)]), np.concatenate([y, np.full(len(extra), minority, y.dtype)])


def train_classifier(
    x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, num_classes: int, minority: int,
    seed: int, epochs: int, batch_size: int, weighted: bool,
) -> nn.Module:
    """The fixed small classifier; keeps the epoch with the best val balanced accuracy."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "utility-init"))
        net = DomainEncoder(x.ndim - 2, x.shape[1], 32, num_classes)
    device = select_device(get_settings().device)
    net.to(device)
    gen = torch_generator(derive_seed(seed, "utility-batches"))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) * 2 - 1
    yt = torch.from_numpy(y.astype(np.int64))
    weight = None
    if weighted:
        counts = np.bincount(y, minlength=num_classes).astype(np.float64)
        weight = torch.tensor(counts.sum() / (num_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    best, best_state = -1.0, None
    for _ in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            loss_fn(net(xt[idx].to(device)), yt[idx].to(device)).backward()
            opt.step()
        bacc = _metrics(predict(net, val_x), val_y, minority)["balanced_accuracy"]
        if bacc > best:
            best, best_state = bacc, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    return net


@torch.no_grad()
def predict(net: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    net.eval()
    device = next(net.parameters()).device
    out = [
        torch.softmax(net(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size], dtype=np.float32)).to(device) * 2 - 1), 1).cpu().numpy()
        for s in range(0, len(x), batch_size)
    ]
    return np.concatenate(out)


def utility_experiment(
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    synthetic: np.ndarray,
    *,
    minority: int,
    num_classes: int,
    seed: int,
    epochs: int = UTILITY_EPOCHS,
    seeds: int = 1,
    batch_size: int = 64,
    bootstrap: int = 200,
    arms: tuple[str, ...] = ARMS,
    n_add: int | None = None,
) -> dict[str, ArmResult]:
    """Run every arm for ``seeds`` seeds; metrics are means over seeds, CIs bootstrap the test set.

    Every adding arm adds ``n_add`` minority images: by default as many as balance the classes,
    at most the cohort's size (a benchmark that runs the baselines once without a cohort passes
    the balancing number itself)."""
    x, y = train[0], train[1].reshape(-1).astype(np.int64)
    vx, vy = val[0], val[1].reshape(-1).astype(np.int64)
    tx, ty = test[0], test[1].reshape(-1).astype(np.int64)
    counts = np.bincount(y, minlength=num_classes)
    if n_add is None:
        n_add = int(min(len(synthetic), max(1, counts.max() - counts[minority])))
    boot_rng = numpy_rng(derive_seed(seed, "utility-bootstrap"))
    boots = [boot_rng.integers(0, len(ty), len(ty)) for _ in range(bootstrap)]
    results: dict[str, ArmResult] = {}
    for arm in arms:
        probs = []
        for s in range(seeds):
            s_seed = derive_seed(seed, "utility-seed", s)
            ax, ay = build_arm(arm, x, y, synthetic, minority, n_add, s_seed)
            net = train_classifier(ax, ay, vx, vy, num_classes=num_classes, minority=minority, seed=s_seed,
                                   epochs=epochs, batch_size=batch_size, weighted=arm == "weighted_loss")
            probs.append(predict(net, tx))
        per_seed = {m: [_metrics(p, ty, minority)[m] for p in probs] for m in METRICS}
        values = {m: float(np.nanmean(v)) for m, v in per_seed.items()}
        ci: dict[str, tuple[float, float] | None] = {}
        if boots:
            samples = np.array([[np.nanmean([_metrics(p[b], ty[b], minority)[m] for p in probs]) for m in METRICS] for b in boots])
            for i, m in enumerate(METRICS):
                col = samples[:, i][np.isfinite(samples[:, i])]
                ci[m] = (float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))) if len(col) else None
        else:
            ci = {m: None for m in METRICS}
        results[arm] = ArmResult(arm, values, ci, 0 if arm in ("none", "weighted_loss") else n_add, per_seed)
    return results
