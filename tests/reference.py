"""The reference implementation's feature layout, for tests and benchmarks that compare against it."""

from __future__ import annotations

import numpy as np


def original_layout(table: np.ndarray, hist: np.ndarray) -> np.ndarray:
    """The reference implementation's features: [rows, HISTORY_LENGTH * dim], slot encodings side by side
    (oldest first, missing slots holding the [PAD] encoding, table row 0): what the encode stage's table
    and indices stand for."""
    return table[hist].reshape(hist.shape[0], hist.shape[1] * table.shape[1])
