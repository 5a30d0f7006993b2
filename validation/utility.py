"""Downstream utility: does adding the synthetic minority samples help a classifier tested on
entirely real data, and does it beat the classical remedies for class imbalance?

The classifier is what users train (``validation.classifiers``: ResNet-18 adapted to small inputs
as MedMNIST v2 does, by default; a small CNN as a cheap option), with the same seeds and budget in
every arm. Arms: ``none``; ``weighted_loss`` (inverse class frequency); ``random_oversampling``;
``smote`` (Chawla et al. 2002, JAIR, via imbalanced-learn on flattened pixels); ``augmentation``
(flips and 90° rotations of real minority images); ``synthetic`` (the cohort); and the two
combinations users run, ``synthetic_ros`` (half the added images from the cohort, half random
duplicates of real minority images) and ``synthetic_weighted`` (half as many cohort images, the
imbalance left is weighted in the loss). Every other adding arm adds the same number of minority
images. Model selection on the real val split by balanced accuracy (the best epoch from the first
learning-rate drop on); evaluation on the real test split with percentile-bootstrap 95 % CIs over
test images:

- argmax figures: minority recall, balanced accuracy, specificity (non-minority images not called
  minority);
- threshold-free figures: AUROC and AUPRC (average precision) of the minority against the rest,
  and the minority recall at the specificity of the ``none`` arm (``recall_at_ref_specificity``),
  which compares arms at one operating point instead of at each arm's own argmax threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from imblearn.over_sampling import SMOTE
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from synthcohort.core.device import select_device
from synthcohort.core.seeding import derive_seed, numpy_rng, torch_generator
from synthcohort.core.settings import get_settings
from synthcohort.validation.classifiers import RECIPES, build_classifier

ARMS = ("none", "weighted_loss", "random_oversampling", "smote", "augmentation", "synthetic",
        "synthetic_ros", "synthetic_weighted")
SYNTHETIC_ARMS = ("synthetic", "synthetic_ros", "synthetic_weighted")  # the arms that need a cohort
WEIGHTED_ARMS = ("weighted_loss", "synthetic_weighted")
METRICS = ("minority_recall", "balanced_accuracy", "auroc", "auprc", "specificity", "recall_at_ref_specificity")


@dataclass
class ArmResult:
    name: str
    values: dict[str, float]  # mean over seeds
    ci: dict[str, tuple[float, float] | None]
    n_added: int
    per_seed: dict[str, list[float]] = field(default_factory=dict)


def _metrics(prob: np.ndarray, y: np.ndarray, minority: int, ref_specificity: float | None) -> dict[str, float]:
    """Every figure of ``METRICS`` for class probabilities ``prob`` of the test labels ``y``."""
    pred = prob.argmax(1)
    classes = np.unique(y)
    recalls = [float((pred[y == c] == c).mean()) for c in classes]
    is_min = y == minority
    score = prob[:, minority]
    both = 0 < is_min.sum() < len(y)
    nan = float("nan")
    return {
        "minority_recall": float((pred[is_min] == minority).mean()) if is_min.any() else nan,
        "balanced_accuracy": float(np.mean(recalls)),
        "auroc": float(roc_auc_score(is_min, score)) if both else nan,
        "auprc": float(average_precision_score(is_min, score)) if both else nan,
        "specificity": float((pred[~is_min] != minority).mean()) if (~is_min).any() else nan,
        "recall_at_ref_specificity": recall_at_specificity(score, is_min, ref_specificity) if both else nan,
    }


def recall_at_specificity(score: np.ndarray, positive: np.ndarray, specificity: float | None) -> float:
    """Recall of the positives when the threshold on ``score`` keeps ``specificity`` of the
    negatives at or below it (the operating point of a reference classifier)."""
    if specificity is None or not np.isfinite(specificity):
        return float("nan")
    neg = np.sort(score[~positive])
    k = int(np.ceil(specificity * len(neg)))  # negatives that must fall at or below the threshold
    threshold = neg[k - 1] if k > 0 else -np.inf
    return float((score[positive] > threshold).mean())


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


def _draw(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` images of ``pool`` drawn at random, without repeats while the pool lasts."""
    return pool[rng.choice(len(pool), n, replace=n > len(pool))].astype(np.float32)


def arm_additions(arm: str, n_add: int) -> tuple[int, int]:
    """(cohort images, real duplicates) that ``arm`` adds when the balancing number is ``n_add``."""
    if arm in ("none", "weighted_loss"):
        return 0, 0
    if arm == "synthetic":
        return n_add, 0
    if arm == "synthetic_ros":
        return n_add - n_add // 2, n_add // 2
    if arm == "synthetic_weighted":
        return n_add - n_add // 2, 0
    return 0, n_add  # random_oversampling, smote, augmentation: images made from the real minority


def build_arm(
    arm: str, x: np.ndarray, y: np.ndarray, synthetic: np.ndarray, minority: int, n_add: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The training set of one arm."""
    if arm not in ARMS:
        raise ValueError(f"unknown utility arm {arm!r}")
    rng = numpy_rng(derive_seed(seed, "utility-arm", arm))
    min_idx = np.flatnonzero(y == minority)
    n_syn, n_real = arm_additions(arm, n_add)
    if n_syn and not len(synthetic):
        raise ValueError(f"utility arm {arm!r} needs synthetic images and the cohort is empty")
    parts = [_draw(synthetic, n_syn, rng)] if n_syn else []
    if n_real and arm in ("random_oversampling", "synthetic_ros"):
        parts.append(x[rng.choice(min_idx, n_real, replace=True)])
    elif n_real and arm == "augmentation":
        parts.append(_augment(x[rng.choice(min_idx, n_real, replace=True)], rng))
    elif n_real and arm == "smote":
        parts.append(_smote(x, y, minority, n_real, seed, rng))
    if not parts:
        return x, y
    extra = np.clip(np.concatenate(parts), 0, 1)
    return np.concatenate([x, extra]), np.concatenate([y, np.full(len(extra), minority, y.dtype)])


def _smote(x: np.ndarray, y: np.ndarray, minority: int, n: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    counts = {int(c): int((y == c).sum()) for c in np.unique(y)}
    k = int(min(5, counts[minority] - 1))
    if k < 1:
        return x[rng.choice(np.flatnonzero(y == minority), n, replace=True)]
    sm = SMOTE(sampling_strategy={minority: counts[minority] + n}, k_neighbors=k, random_state=int(seed % 2**31))
    xs, _ = sm.fit_resample(x.reshape(len(x), -1), y)
    return xs[len(x):].reshape((-1, *x.shape[1:])).astype(np.float32)


def class_weights(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse class frequency, normalised so a balanced set weighs every class 1."""
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    return counts.sum() / (num_classes * np.maximum(counts, 1))


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """2D batches in channels-last order: about 15 % faster convolutions on a CPU (measured)."""
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def train_classifier(
    x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, *, num_classes: int, minority: int,
    seed: int, epochs: int | None = None, batch_size: int | None = None, weighted: bool, classifier: str = "resnet18",
    augment: bool = False, on_epoch: Callable[[], None] | None = None,
) -> nn.Module:
    """One classifier trained by its recipe (``validation.classifiers``; ``epochs`` and
    ``batch_size`` default to it); keeps the epoch with the best val balanced accuracy from the
    first learning-rate drop on (``selection_start``)."""
    recipe = RECIPES[classifier]
    batch_size = batch_size or recipe.batch_size
    epochs = epochs or recipe.epochs_for(len(x), batch_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "utility-init"))
        net = build_classifier(classifier, x.shape[1:], num_classes)
    device = select_device(get_settings().device)
    net.to(device)
    if x.ndim == 4:
        net.to(memory_format=torch.channels_last)
    gen = torch_generator(derive_seed(seed, "utility-batches"))
    aug_gen = torch_generator(derive_seed(seed, "utility-augment"))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)) * 2 - 1
    yt = torch.from_numpy(y.astype(np.int64))
    weight = torch.tensor(class_weights(y, num_classes), dtype=torch.float32, device=device) if weighted else None
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt_cls = torch.optim.Adam if recipe.optimizer == "adam" else torch.optim.AdamW
    opt = opt_cls(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    drops = recipe.drop_epochs(epochs)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, drops, gamma=0.1)
    first_candidate = selection_start(drops, epochs)
    best, best_state = -1.0, None
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        for s in range(0, len(xt), batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2:  # batch norm needs two
                continue
            opt.zero_grad(set_to_none=True)
            xb = training_augmentation(xt[idx], aug_gen) if augment else xt[idx]
            loss_fn(net(_channels_last(xb.to(device))), yt[idx].to(device)).backward()
            opt.step()
        sched.step()
        if epoch >= first_candidate:
            bacc = _metrics(predict(net, val_x), val_y, minority, None)["balanced_accuracy"]
            if bacc > best:
                best, best_state = bacc, {k: v.clone() for k, v in net.state_dict().items()}
        if on_epoch is not None:
            on_epoch()
    net.load_state_dict(best_state)
    net.eval()
    return net


def training_augmentation(x: torch.Tensor, gen: torch.Generator, *, shift: int = 2,
                          intensity: float = 0.2) -> torch.Tensor:
    """A batch in [-1, 1] (N, C, *spatial) with random flips of the last axis, one random shift of
    up to ``shift`` pixels per axis (edge pixels repeated), and per-image contrast and brightness
    changes of up to ± ``intensity``. Not MedMNIST v2's recipe (it trains without augmentation):
    an option, measured on PneumoniaMNIST 9:1 in benchmarks/RESULTS.md."""
    spatial = x.shape[2:]
    flip = torch.rand(len(x), generator=gen) < 0.5
    x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), x.flip(-1), x)
    if shift:
        pad = nn.functional.pad(x, (shift, shift) * len(spatial), mode="replicate")
        starts = torch.randint(0, 2 * shift + 1, (len(spatial),), generator=gen).tolist()
        x = pad[(..., *(slice(a, a + n) for a, n in zip(starts, spatial)))]
    shape = (len(x), *[1] * (x.ndim - 1))
    a = 1 + intensity * (torch.rand(shape, generator=gen) * 2 - 1)
    b = intensity * (torch.rand(shape, generator=gen) * 2 - 1)
    return (x * a + b).clamp(-1, 1).contiguous()


def selection_start(drops: list[int], epochs: int) -> int:
    """The first epoch (0-based) that model selection may keep: the one after the first learning-rate
    drop, or every epoch when the rate never drops.

    Why: at the full rate a ResNet-18's val scores swing from epoch to epoch, and on a small val
    set the best of them is mostly luck. On BreastMNIST (78 val images, one seed, batches of 32,
    34 epochs) the best val AUROC of all epochs (.939, epoch 15, full rate) came with test AUROC
    .881; after the first drop every epoch's test AUROC lay in .872–.904 and the best val epoch
    had .904 (``benchmarks/RESULTS.md``, the utility classifier)."""
    return min(drops[0], epochs - 1) if drops else 0


@torch.inference_mode()
def predict(net: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    net.eval()
    device = next(net.parameters()).device
    out = [
        torch.softmax(net(_channels_last(torch.from_numpy(np.ascontiguousarray(x[s:s + batch_size], dtype=np.float32))
                                         .to(device) * 2 - 1)), 1).float().cpu().numpy()
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
    epochs: int | None = None,
    seeds: int = 1,
    batch_size: int | None = None,
    bootstrap: int = 200,
    arms: tuple[str, ...] = ARMS,
    n_add: int | None = None,
    classifier: str = "resnet18",
    augment: bool = False,
    reference_specificity: float | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> dict[str, ArmResult]:
    """Run every arm for ``seeds`` seeds; metrics are means over seeds, CIs bootstrap the test set.

    Every adding arm adds ``n_add`` minority images: by default as many as balance the classes,
    at most the cohort's size (a benchmark that runs the baselines once without a cohort passes
    the balancing number itself). ``epochs`` and ``batch_size`` default to the classifier's
    recipe. ``recall_at_ref_specificity`` is taken at the ``none`` arm's specificity (mean over
    seeds) when that arm runs first, else at ``reference_specificity`` (a benchmark that ran the
    baselines earlier passes theirs). ``augment`` trains every arm's classifier on randomly
    flipped, shifted and intensity-changed batches (``training_augmentation``). ``on_epoch(done,
    total)`` reports the classifier epochs run so far of (about) all of them: a long run's
    progress, and where a caller may stop it."""
    if classifier not in RECIPES:
        raise ValueError(f"unknown utility classifier {classifier!r}")
    x, y = train[0], train[1].reshape(-1).astype(np.int64)
    vx, vy = val[0], val[1].reshape(-1).astype(np.int64)
    tx, ty = test[0], test[1].reshape(-1).astype(np.int64)
    counts = np.bincount(y, minlength=num_classes)
    if n_add is None:
        n_add = int(min(len(synthetic), max(1, counts.max() - counts[minority])))
    boot_rng = numpy_rng(derive_seed(seed, "utility-bootstrap"))
    boots = [boot_rng.integers(0, len(ty), len(ty)) for _ in range(bootstrap)]
    ref = reference_specificity
    recipe = RECIPES[classifier]
    planned = sum(epochs or recipe.epochs_for(len(x) + sum(arm_additions(a, n_add)), batch_size)
                  for a in arms) * seeds
    done = 0

    def epoch_done() -> None:
        nonlocal done
        done += 1
        if on_epoch is not None:
            on_epoch(done, planned)

    results: dict[str, ArmResult] = {}
    for arm in sorted(arms, key=lambda a: a != "none"):  # none first: its specificity is the reference
        probs = []
        for s in range(seeds):
            s_seed = derive_seed(seed, "utility-seed", s)
            ax, ay = build_arm(arm, x, y, synthetic, minority, n_add, s_seed)
            net = train_classifier(ax, ay, vx, vy, num_classes=num_classes, minority=minority, seed=s_seed,
                                   epochs=epochs, batch_size=batch_size, weighted=arm in WEIGHTED_ARMS,
                                   classifier=classifier, augment=augment, on_epoch=epoch_done)
            probs.append(predict(net, tx))
        if arm == "none" and ref is None:
            ref = float(np.mean([_metrics(p, ty, minority, None)["specificity"] for p in probs]))
        scores = [_metrics(p, ty, minority, ref) for p in probs]
        per_seed = {m: [d[m] for d in scores] for m in METRICS}
        values = {m: _finite_mean(v) for m, v in per_seed.items()}
        ci = _bootstrap_ci(probs, ty, minority, ref, boots)
        results[arm] = ArmResult(arm, values, ci, sum(arm_additions(arm, n_add)), per_seed)
    return {a: results[a] for a in arms}


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _bootstrap_ci(probs: list[np.ndarray], y: np.ndarray, minority: int, ref: float | None,
                  boots: list[np.ndarray]) -> dict[str, tuple[float, float] | None]:
    """Percentile 95 % CI of each metric's mean over seeds, resampling the test images."""
    if not boots:
        return {m: None for m in METRICS}
    samples = np.full((len(boots), len(METRICS)), np.nan)
    for i, b in enumerate(boots):
        scores = [_metrics(p[b], y[b], minority, ref) for p in probs]
        samples[i] = [_finite_mean([d[m] for d in scores]) for m in METRICS]
    ci: dict[str, tuple[float, float] | None] = {}
    for j, m in enumerate(METRICS):
        col = samples[:, j][np.isfinite(samples[:, j])]
        ci[m] = (float(np.percentile(col, 2.5)), float(np.percentile(col, 97.5))) if len(col) else None
    return ci
