"""Clustering matched pairs into persons (connected components).

Example:
    >>> import numpy as np
    >>> connected_clusters(5, np.array([0, 3]), np.array([1, 4])).tolist()
    [0, 0, 1, 2, 2]
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def connected_clusters(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Cluster label (0..k-1) of each of ``n`` nodes joined by the edges ``left[i]–right[i]``.

    Labels are numbered in order of each cluster's smallest node, so they are deterministic.

    Example:
        >>> connected_clusters(4, np.array([2]), np.array([3])).tolist()
        [0, 1, 2, 2]
    """
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)
