"""Learned fitness predictors of the S3 search (:mod:`sampler_core.search`): regressions of log fitness on a
candidate's feature vector, each with ``fit(x, y) -> self`` and ``predict(x) -> y``, and a held-out error
``loo`` after a fit where one is cheap (leave-one-out or out-of-bag)."""

from __future__ import annotations

import math

import numpy as np
import torch


class KernelRidge:
    """Kernel ridge regression (a Gaussian-process mean) on the raw features (all in [0, 1]):
    k(a, b) = exp(-|a - b|^2 / (2 l^2)), alpha = (K + lam I)^-1 (y - mean y), f(x) = mean y + k(x, X) alpha.
    l (a multiple of the median pairwise distance) and lam are chosen by the closed-form leave-one-out error
    r_i = alpha_i / [(K + lam I)^-1]_ii (one eigendecomposition of K per length scale)."""

    SCALES = (0.25, 0.5, 1.0, 2.0)
    LAMBDAS = (1e-3, 1e-2, 1e-1, 1.0)

    def __init__(self, lam: float | None = None) -> None:
        self.lam = lam

    def fit(self, x: np.ndarray, y: np.ndarray) -> KernelRidge:
        self.x = np.asarray(x, dtype=np.float64)
        self.y_mean = float(y.mean())
        self.y_sd = float(y.std()) + 1e-9
        yn = (y - self.y_mean) / self.y_sd
        d2 = _sqdist(self.x, self.x)
        med = float(np.median(d2[np.triu_indices(len(x), 1)])) if len(x) > 1 else 1.0
        best = None
        for scale in self.SCALES:
            l2 = max(med, 1e-9) * scale
            w, v = (t.numpy() for t in torch.linalg.eigh(torch.from_numpy(np.exp(-d2 / (2 * l2)))))
            vy = v.T @ yn
            for lam in ((self.lam,) if self.lam is not None else self.LAMBDAS):
                inv_diag = (v * v) @ (1.0 / (w + lam))
                alpha = v @ (vy / (w + lam))
                loo = float(np.mean((alpha / inv_diag) ** 2))
                if best is None or loo < best[0]:
                    best = (loo, l2, alpha)
        self.loo, self.l2, self.alpha = best
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        k = np.exp(-_sqdist(np.asarray(x, dtype=np.float64), self.x) / (2 * self.l2))
        return self.y_mean + self.y_sd * (k @ self.alpha)


class Ridge:
    """Linear ridge regression with an intercept, lam chosen by the closed-form leave-one-out error
    r_i = (y_i - f(x_i)) / (1 - H_ii), H = X (X^T X + lam I)^-1 X^T (one SVD)."""

    LAMBDAS = (1e-2, 1e-1, 1.0, 10.0, 100.0)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        self.mu = x.mean(0)
        self.y_mean = float(y.mean())
        xc, yc = x - self.mu, y - self.y_mean
        u, sv, vt = (t.numpy() for t in torch.linalg.svd(torch.from_numpy(xc), full_matrices=False))
        uy = u.T @ yc
        best = None
        for lam in self.LAMBDAS:
            shrink = sv**2 / (sv**2 + lam)
            fitted = u @ (shrink * uy)
            h = (u * u) @ shrink + 1.0 / len(y)
            loo = float(np.mean(((yc - fitted) / np.maximum(1 - h, 1e-6)) ** 2))
            if best is None or loo < best[0]:
                best = (loo, vt.T @ (sv / (sv**2 + lam) * uy))
        self.loo, self.coef = best
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.y_mean + (x - self.mu) @ self.coef


class KNN:
    """k-nearest-neighbour regression: the mean target of the k closest evaluated candidates (raw features)."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray) -> KNN:
        self.x, self.y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        d2 = _sqdist(np.asarray(x, dtype=np.float64), self.x)
        k = min(self.k, len(self.y))
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        return self.y[idx].mean(axis=1)


class Forest:
    """Random forest regression (Breiman 2001; the surrogate SMAC uses for mixed categorical and continuous
    configuration spaces): ``trees`` regression trees, each grown on a bootstrap sample, at every node the split
    (feature, midpoint threshold) among a random third of the features that most lowers the squared error,
    leaves of at least ``min_leaf`` points; the prediction is the mean of the trees' leaf means. ``loo`` after a
    fit: the out-of-bag mean squared error (each point predicted by the trees whose sample left it out)."""

    def __init__(self, trees: int = 24, min_leaf: int = 2, max_depth: int = 12, seed: int = 0) -> None:
        self.trees, self.min_leaf, self.max_depth = trees, min_leaf, max_depth
        self.rng = np.random.default_rng(seed)

    def fit(self, x: np.ndarray, y: np.ndarray) -> Forest:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        n, f = x.shape
        k = max(1, f // 3)
        self.forest = []
        oob_sum, oob_n = np.zeros(n), np.zeros(n)
        for _ in range(self.trees):
            rows = self.rng.integers(n, size=n)
            out_of_bag = np.setdiff1d(np.arange(n), rows)
            feat, thr, left, right, value = [], [], [], [], []
            stack = [(rows, 0, -1, False)]  # (rows, depth, parent node, is right child)
            while stack:
                idx, depth, parent, is_right = stack.pop()
                node = len(feat)
                feat.append(-1)
                thr.append(0.0)
                left.append(-1)
                right.append(-1)
                value.append(float(y[idx].mean()))
                if parent >= 0:
                    (right if is_right else left)[parent] = node
                m = len(idx)
                if depth >= self.max_depth or m < 2 * self.min_leaf:
                    continue
                cols = self.rng.choice(f, size=min(k, f), replace=False)
                xs = x[np.ix_(idx, cols)]
                order = np.argsort(xs, axis=0, kind="stable")
                xs = np.take_along_axis(xs, order, axis=0)
                ys = y[idx][order]
                cs = np.cumsum(ys, axis=0)[:-1]
                cnt = np.arange(1, m)[:, None]
                score = cs**2 / cnt + (cs[-1:] + ys[-1:] - cs) ** 2 / (m - cnt)  # larger = lower squared error
                ok = (xs[1:] > xs[:-1]) & (cnt >= self.min_leaf) & (m - cnt >= self.min_leaf)
                if not ok.any():
                    continue
                score = np.where(ok, score, -np.inf)
                i, j = np.unravel_index(int(np.argmax(score)), score.shape)
                if score[i, j] <= float(ys[:, 0].sum()) ** 2 / m + 1e-12:  # no split lowers the error
                    continue
                lo, hi = float(xs[i, j]), float(xs[i + 1, j])
                mid = lo + 0.5 * (hi - lo)
                feat[node], thr[node] = int(cols[j]), mid if lo <= mid < hi else lo
                go_left = x[idx, feat[node]] <= thr[node]
                stack.append((idx[~go_left], depth + 1, node, True))
                stack.append((idx[go_left], depth + 1, node, False))
            self.forest.append(tuple(np.array(a) for a in (feat, thr, left, right, value)))
            if len(out_of_bag):
                oob_sum[out_of_bag] += self._tree_predict(self.forest[-1], x[out_of_bag])
                oob_n[out_of_bag] += 1
        seen = oob_n > 0  # out-of-bag mean squared error (each point predicted by the trees that did not see it)
        self.loo = float(np.mean((oob_sum[seen] / oob_n[seen] - y[seen]) ** 2)) if seen.any() else math.inf
        return self

    def _tree_predict(self, tree: tuple, x: np.ndarray) -> np.ndarray:
        feat, thr, left, right, value = tree
        rows = np.arange(len(x))
        node = np.zeros(len(x), dtype=np.int64)
        for _ in range(self.max_depth + 1):
            f = feat[node]
            inner = f >= 0
            if not inner.any():
                break
            go = np.where(x[rows, np.maximum(f, 0)] <= thr[node], left[node], right[node])
            node = np.where(inner, go, node)
        return value[node]

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return sum(self._tree_predict(t, x) for t in self.forest) / len(self.forest)


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)
