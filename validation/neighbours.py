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
    query: np.ndarray, ref: np.ndarray, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Largest Pearson correlation of each query row with any ref row (pixel space), and its index.

    Rows are flattened images; a constant row has correlation 0 with everything.
    """
    def standardise(a: np.ndarray) -> torch.Tensor:
        t = _t(a.reshape(len(a), -1))
        t = t - t.mean(1, keepdim=True)
        norm = t.norm(dim=1, keepdim=True)
        return torch.where(norm > 0, t / norm.clamp_min(1e-300), torch.zeros_like(t))

    q_all, r = standardise(query), standardise(ref)
    best = np.empty(len(q_all)), np.empty(len(q_all), dtype=np.int64)
    for sl in _rows(len(q_all), len(r), chunk_bytes):
        c = q_all[sl] @ r.T
        if exclude_self:
            rows = torch.arange(sl.stop - sl.start)
            c[rows, rows + sl.start] = -float("inf")
        v, i = c.max(1)
        best[0][sl], best[1][sl] = v.numpy(), i.numpy()
    return best
