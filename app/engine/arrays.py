"""The numpy array aliases every engine module annotates with.

A module of their own, below ``types`` and ``tiers``: ``tiers`` needs only these aliases and
``types`` needs ``TierTable``, so neither imports the other in a cycle.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

ArrayLike = npt.ArrayLike
