"""Chunked nearest-neighbour search in feature or pixel space.

Never holds an N×M distance matrix: queries are processed in row blocks sized so one block of
distances stays under ``chunk_bytes``. Everything is float64 on the CPU (exact enough that the
ball-membership tests of PRDC agree with a naive implementation).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

DEFAULT_CHUNK_BYTES = 64 * 1024**2


def _rows(n_query: int, n_ref: int, chunk_bytes: int) -> Iterator[slice]:
    step = max(1, int(chunk_bytes // (8 * max(1, n_ref))))
    for start in range(0, n_query, step):
        yield slice(start, min(n_query, start + step))


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64))


def _block_distances(q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    d2 = (q * q).sum(1, keepdim=True) + (r * r).sum(1)[None, :] - 2.0 * (q @ r.T)
    return d2.clamp_min_(0.0).sqrt_()


def knn(
    query: np.ndarray,
    ref: np.ndarray,
    k: int = 1,
    *,
    exclude_self: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices (N, k) of the k nearest ``ref`` rows of every ``query`` row.

    ``exclude_self``: query and ref are the same set; a row is not its own neighbour.
    """
    q_all, r = _t(query), _t(ref)
    n, m = len(q_all), len(r)
    kk = k + 1 if exclude_self else k
    if kk > m:
        raise ValueError(f"k={k} neighbours asked of a set of {m}")
    dist = np.empty((n, k)), np.empty((n, k), dtype=np.int64)
    for sl in _rows(n, m, chunk_bytes):
        d = _block_distances(q_all[sl], r)
        if exclude_self:
            rows = torch.arange(sl.stop - sl.start)
            d[rows, rows + sl.start] = float("inf")
        vals, idx = torch.topk(d, k, dim=1, largest=False, sorted=True)
        dist[0][sl], dist[1][sl] = vals.numpy(), idx.numpy()
    return dist


def knn_radii(x: np.ndarray, k: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest other row (the NND_k of PRDC)."""
    d, _ = knn(x, x, k, exclude_self=True, chunk_bytes=chunk_bytes)
    return d[:, -1]


def ball_counts(
    query: np.ndarray, centres: np.ndarray, radii: np.ndarray, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> np.ndarray:
    """For every query row: how many balls B(centre_i, radius_i) contain it (strictly inside)."""
    q_all, c = _t(query), _t(centres)
    rad = torch.as_tensor(np.asarray(radii, dtype=np.float64))[None, :]
    out = np.empty(len(q_all), dtype=np.int64)
    for sl in _rows(len(q_all), len(c), chunk_bytes):
        out[sl] = (_block_distances(q_all[sl], c) < rad).sum(1).numpy()
    return out


def max_correlation(
    query: np.ndarray, ref: np.ndarray, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, exclude_self: bool = False,
    max_shift: int = 0, flips: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Largest Pearson correlation of each query image with any ref image (pixel space), and its index.

    Images are (N, C, *spatial); a constant image has correlation 0 with everything.

    ``max_shift`` > 0 and ``flips`` make the comparison tolerant of the way a memorised image
    comes back from a generator: the centre of every ref image (``max_shift`` cut from each side
    of each spatial axis) is compared with the query's window at every offset up to
    ``max_shift`` along each axis, and with the query mirrored along its last axis, and the best
    alignment counts. A shifted or mirrored copy then correlates as highly as an exact one.
    """
    q_img, r_img = np.asarray(query), np.asarray(ref)
    spatial = q_img.shape[2:]
    m = int(max_shift)
    if m == 0 and not flips:
        return _max_correlation_rows(q_img.reshape(len(q_img), -1), r_img.reshape(len(r_img), -1),
                                     chunk_bytes=chunk_bytes, exclude_self=exclude_self)
    if any(2 * m >= s for s in spatial):
        raise ValueError(f"max_shift {m} leaves nothing of images of size {spatial}")
    centre = (slice(None), slice(None)) + tuple(slice(m, s - m) for s in spatial)
    r = _standardise(torch.as_tensor(np.ascontiguousarray(r_img[centre], dtype=np.float32)))
    best = torch.full((len(q_img),), -float("inf"), dtype=torch.float32)
    arg = torch.zeros(len(q_img), dtype=torch.int64)
    variants = [q_img] + ([np.flip(q_img, axis=-1)] if flips else [])
    offsets = np.stack(np.meshgrid(*[np.arange(-m, m + 1)] * len(spatial), indexing="ij"), -1).reshape(-1, len(spatial))
    for qv in variants:
        q_t = torch.as_tensor(np.ascontiguousarray(qv, dtype=np.float32))
        for off in offsets:
            window = (slice(None), slice(None)) + tuple(slice(m + o, s - m + o) for o, s in zip(off, spatial))
            v, i = _best_match(_standardise(q_t[window]), r, chunk_bytes=chunk_bytes, exclude_self=exclude_self)
            better = v > best
            best, arg = torch.where(better, v, best), torch.where(better, i, arg)
    return best.double().numpy(), arg.numpy()


def _standardise(t: torch.Tensor) -> torch.Tensor:
    """Rows (flattened images) centred and scaled to unit norm; a constant row becomes zeros."""
    t = t.reshape(len(t), -1)
    t = t - t.mean(1, keepdim=True)
    norm = t.norm(dim=1, keepdim=True)
    return torch.where(norm > 0, t / norm.clamp_min(1e-30), torch.zeros_like(t))


def _max_correlation_rows(query: np.ndarray, ref: np.ndarray, *, chunk_bytes: int,
                          exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    v, i = _best_match(_standardise(_t(query)), _standardise(_t(ref)), chunk_bytes=chunk_bytes,
                       exclude_self=exclude_self)
    return v.numpy(), i.numpy()


def _best_match(q: torch.Tensor, r: torch.Tensor, *, chunk_bytes: int,
                exclude_self: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest dot product of each standardised query row with any ref row, and its index,
    a block of query rows at a time."""
    best, arg = torch.empty(len(q), dtype=q.dtype), torch.empty(len(q), dtype=torch.int64)
    for sl in _rows(len(q), len(r), chunk_bytes):
        c = q[sl] @ r.T
        if exclude_self:
            rows = torch.arange(sl.stop - sl.start)
            c[rows, rows + sl.start] = -float("inf")
        best[sl], arg[sl] = c.max(1)
    return best, arg
