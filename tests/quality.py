"""Assertions on what a tiny training learned, each with its margin on record.

A tiny training (a few dozen steps) ends elsewhere on another CPU: oneDNN and MKL pick other
kernels (AVX2, AVX-512, AMX, another vendor), the rounding differs, and the training amplifies it.
So every such assertion is written as "the trained value beats a reference (chance, or the same
network untrained) by at least a margin", and the margin is set so that the value measured under
several kernel settings clears it with room to spare. With ``WSSS_QUALITY_LOG=FILE`` each check
appends its numbers to FILE (JSON lines); ``benchmarks/quality_margins.py`` runs the checks under
each setting and tabulates them.
"""

from __future__ import annotations

import json
import os
from typing import Optional


def assert_beats(name: str, value: float, reference: float, margin: float, untrained: Optional[float] = None) -> None:
    """Assert ``value > reference + margin`` and record it.

    ``reference``: what no learning gives (chance, the best constant guess, or the untrained
    network); ``untrained``: the untrained network's value where it is not the reference itself,
    recorded to show that the bound is out of its reach. Headroom is ``(value - reference) / margin``.
    """
    value, reference = float(value), float(reference)
    log = os.environ.get("WSSS_QUALITY_LOG")
    if log:
        record = {"check": name, "value": value, "reference": reference, "margin": margin,
                  "bound": reference + margin, "headroom": (value - reference) / margin,
                  "untrained": None if untrained is None else float(untrained)}
        with open(log, "a") as out:
            out.write(json.dumps(record) + "\n")
    if untrained is not None:
        assert untrained <= reference + margin, f"{name}: the untrained network ({untrained:.4g}) passes the bound"
    assert value > reference + margin, f"{name}: {value:.4g} does not beat {reference:.4g} by {margin}"


def auc(higher, lower) -> float:
    """The probability that a value of ``higher`` exceeds one of ``lower`` (ties count half): the
    area under the ROC curve of the scores, by ranks (Mann-Whitney U). 0.5 for scores that do not
    tell the two sets apart."""
    import numpy as np
    from scipy.stats import rankdata

    higher, lower = np.asarray(higher, dtype=np.float64).ravel(), np.asarray(lower, dtype=np.float64).ravel()
    ranks = rankdata(np.concatenate([higher, lower]))
    return float((ranks[: higher.size].sum() - higher.size * (higher.size + 1) / 2) / (higher.size * lower.size))
