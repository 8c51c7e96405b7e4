"""The spread of a number over seeds: mean, standard deviation, min-max, a t interval, Welch's test.

One run's accuracy says little about a setting: another seed moves it (on the budget grids by
several points). These are the statistics the results table reports for a group of runs that
differ only by their seed, in plain Python (no SciPy): the Student-t quantiles and p-values come
from the regularised incomplete beta function.

    >>> s = summarize([40.0, 42.0, 44.0])
    >>> s.n, s.mean, s.std, s.min, s.max
    (3, 42.0, 2.0, 40.0, 44.0)
    >>> [round(x, 2) for x in s.interval]   # 42 -+ t(0.975, 2) * 2 / sqrt(3)
    [37.03, 46.97]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

__all__ = ["Spread", "WelchTest", "student_t_cdf", "student_t_quantile", "summarize", "welch_test"]

#: The confidence of the intervals the tables report.
CONFIDENCE = 0.95
#: Fewest runs for which a t interval is reported (with two the interval is +-12.7 standard errors: no use).
MIN_INTERVAL_N = 3


def _betacf(a: float, b: float, x: float) -> float:
    # Lentz's continued fraction of the incomplete beta function (Numerical Recipes, 6.4).
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` (> 0, not necessarily whole) degrees of freedom.

    >>> round(student_t_cdf(2.0, 1), 6)   # 1/2 + atan(2)/pi
    0.852416
    """
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive; got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t with ``student_t_cdf(t, df) == p`` (bisection to 1e-12).

    >>> round(student_t_quantile(0.975, 2), 4), round(student_t_quantile(0.975, 30), 4)
    (4.3027, 2.0423)
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1); got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Spread:
    """A number over the runs of a group.

    With ``geometric`` (ratios such as the gradient first/last ratio, which span orders of
    magnitude) `mean` is the geometric mean, `std` the geometric standard deviation (a factor:
    the values lie within mean / std .. mean * std about as often as within mean -+ std for
    an arithmetic spread) and `interval` the t interval of log10 taken back; otherwise the
    arithmetic mean, the sample standard deviation (n - 1) and mean -+ t * std / sqrt(n).
    `std` is None for one run, `interval` for fewer than `MIN_INTERVAL_N` runs.
    """

    n: int
    mean: float
    std: Optional[float]
    min: float
    max: float
    interval: Optional[tuple[float, float]]
    geometric: bool = False
    confidence: float = CONFIDENCE

    def contains(self, value: float) -> dict[str, Optional[bool]]:
        """Whether `value` (a published number) lies inside the measured min-max and the interval (None: none)."""
        inside_range = self.min <= value <= self.max
        inside = None if self.interval is None else self.interval[0] <= value <= self.interval[1]
        return {"inside_min_max": inside_range, "inside_interval": inside}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["interval"] = list(self.interval) if self.interval else None
        return data

    def text(self, digits: int = 2) -> str:
        """``mean ± std`` (``mean ×/÷ std`` for a geometric spread), as the tables print it."""
        if self.geometric:
            mean = f"{self.mean:.2g}"
            return mean if self.std is None else f"{mean} ×/÷ {self.std:.2g}"
        mean = f"{self.mean:.{digits}f}"
        return mean if self.std is None else f"{mean} ± {self.std:.{digits}f}"


def summarize(values: Sequence[float], *, geometric: bool = False, confidence: float = CONFIDENCE) -> Optional[Spread]:
    """The `Spread` of `values` (None, NaN and, for `geometric`, values <= 0 are left out; None if none is left).

    >>> g = summarize([1e-9, 1e-7, 1e-8], geometric=True)
    >>> f"{g.mean:.3g}", f"{g.std:.3g}"
    ('1e-08', '10')
    """
    xs = [float(v) for v in values if v is not None and math.isfinite(v) and (not geometric or v > 0)]
    if not xs:
        return None
    lo, hi = min(xs), max(xs)
    ys = [math.log10(x) for x in xs] if geometric else xs
    n = len(ys)
    mean = sum(ys) / n
    std = math.sqrt(sum((y - mean) ** 2 for y in ys) / (n - 1)) if n >= 2 else None
    interval = None
    if n >= MIN_INTERVAL_N and std is not None:
        half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
        interval = (mean - half, mean + half)
    if geometric:
        return Spread(n, 10 ** mean, None if std is None else 10 ** std, lo, hi,
                      None if interval is None else (10 ** interval[0], 10 ** interval[1]), True, confidence)
    return Spread(n, mean, std, lo, hi, interval, False, confidence)


@dataclass(frozen=True)
class WelchTest:
    """Whether two groups differ beyond their spread.

    `p` is the two-sided p-value of Welch's t-test (unequal variances), None where it cannot
    be computed (`reason` says why: fewer than two runs in a group, or no spread in either);
    `overlap` whether the groups' t intervals overlap (None without intervals).
    """

    a: Optional[Spread]
    b: Optional[Spread]
    difference: Optional[float]
    t: Optional[float]
    df: Optional[float]
    p: Optional[float]
    overlap: Optional[bool]
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a.to_dict() if self.a else None, "b": self.b.to_dict() if self.b else None,
                "difference": self.difference, "t": self.t, "df": self.df, "p": self.p, "overlap": self.overlap,
                "reason": self.reason}


def welch_test(a: Sequence[float], b: Sequence[float], *, geometric: bool = False) -> WelchTest:
    """Welch's t-test of two groups of values (on log10 for `geometric`), and whether their intervals overlap.

    >>> round(welch_test([1.0, 2.0, 3.0], [4.0, 5.0, 6.0]).p, 4)   # t = -3.674, df = 4
    0.0213
    """
    sa, sb = summarize(a, geometric=geometric), summarize(b, geometric=geometric)
    if sa is None or sb is None:
        return WelchTest(sa, sb, None, None, None, None, None, "a group has no value")
    difference = sa.mean - sb.mean
    overlap = None
    if sa.interval and sb.interval:
        overlap = sa.interval[0] <= sb.interval[1] and sb.interval[0] <= sa.interval[1]
    if sa.n < 2 or sb.n < 2:
        small = " and ".join(name for name, s in (("A", sa), ("B", sb)) if s.n < 2)
        return WelchTest(sa, sb, difference, None, None, None, overlap,
                         f"{small} has one run: no spread can be measured (train more seeds)")
    xs = [math.log10(v) for v in a if v and v > 0] if geometric else [v for v in a if v is not None]
    ys = [math.log10(v) for v in b if v and v > 0] if geometric else [v for v in b if v is not None]
    xs = [x for x in xs if math.isfinite(x)]
    ys = [y for y in ys if math.isfinite(y)]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    va = sum((x - mx) ** 2 for x in xs) / (len(xs) - 1) / len(xs)
    vb = sum((y - my) ** 2 for y in ys) / (len(ys) - 1) / len(ys)
    if va + vb == 0:
        return WelchTest(sa, sb, difference, None, None, None, overlap,
                         "neither group has any spread (every run gave the same number): "
                         + ("they are equal" if mx == my else "they differ, with no spread to test against"))
    t = (mx - my) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(xs) - 1) + vb ** 2 / (len(ys) - 1))
    p = 2.0 * (1.0 - student_t_cdf(abs(t), df))
    return WelchTest(sa, sb, difference, t, df, max(0.0, min(1.0, p)), overlap)
