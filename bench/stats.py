"""The statistics every benchmark reports, computed one way.

Quantiles interpolate linearly between the two nearest ranks (numpy's default, R's type 7,
``statistics.quantiles(method="inclusive")``): over sorted samples ``x[0..n-1]`` the
q-quantile sits at rank ``q * (n - 1)``. p50 is therefore the median, p0 the minimum and p100
the maximum, and a figure never depends on which script measured it.

``quantile``, ``median`` and ``mean`` raise ``ValueError`` on no samples, as ``statistics``
does; ``summary`` and ``ratio`` answer ``None`` instead, so a report can say "nothing was
measured" (JSON ``null``) rather than crash or print NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def quantile(samples: Iterable[float], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of ``samples``, linear between the nearest ranks."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile {q} is outside [0, 1]")
    ordered = sorted(samples)
    if not ordered:
        raise ValueError("quantile of no samples")
    rank = q * (len(ordered) - 1)
    below = math.floor(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def median(samples: Iterable[float]) -> float:
    return quantile(samples, 0.5)


def mean(samples: Iterable[float]) -> float:
    values = list(samples)
    if not values:
        raise ValueError("mean of no samples")
    return math.fsum(values) / len(values)


def summary(
    samples: Iterable[float],
    points: Sequence[int] = (50, 95, 99),
    *,
    unit: str = "",
    scale: float = 1.0,
    digits: int = 3,
    prefix: str = "",
    with_mean: bool = False,
) -> dict[str, float | None]:
    """Percentiles of ``samples`` (times ``scale``), keyed ``{prefix}p{point}_{unit}``.

    ``summary(seconds, (50, 99), unit="ms", scale=1000)`` is ``{"p50_ms": ..., "p99_ms": ...}``;
    ``with_mean`` adds ``{prefix}mean_{unit}``. Every value is ``None`` when there are no samples.
    """
    values = [value * scale for value in samples]
    suffix = f"_{unit}" if unit else ""
    out: dict[str, float | None] = {
        f"{prefix}p{point}{suffix}": round(quantile(values, point / 100), digits)
        if values
        else None
        for point in points
    }
    if with_mean:
        out[f"{prefix}mean{suffix}"] = round(mean(values), digits) if values else None
    return out


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded, or ``None`` when either is missing or it is x/0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return round(numerator / denominator, digits)


def format_ratio(value: float | None, digits: int = 2) -> str:
    """A ratio as a table shows it: ``1.23x``, or ``-`` when there is none."""
    return "-" if value is None else f"{value:.{digits}f}x"
