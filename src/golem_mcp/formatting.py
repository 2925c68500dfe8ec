"""How a number is shown to a person: the single definition of a token count, a USD amount, a rate,
a duration and a plain count, in a full and a compact form.

Everything people read (the CLI's tables, the weekly report, the dashboard, analysis one-liners)
goes through these functions, so a token count never shows as ``1.787e+05`` in one place and
``178,700`` in another. Machines get the raw values (JSON, CSV), never these strings.

Example: ``tokens(392_000)`` -> ``'392,000'``; ``tokens(392_000, compact=True)`` -> ``'392k'``;
``usd(3.4512)`` -> ``'$3.45'``; ``rate(0.7666)`` -> ``'76.7%'``; ``duration_ms(95_000)`` -> ``'1.6min'``.
"""

from __future__ import annotations

import math

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (every CLI command loads this)
if TYPE_CHECKING:
    from typing import Any

MISSING = "-"

# the units a value can be shown in; ``unit_of`` guesses one from a field name
UNITS = ("change", "tokens", "count", "usd", "rate", "percent", "ms", "seconds", "ratio", "number")


def _si(n: float) -> str:
    """``392_000`` -> ``392k``, ``1_404_000`` -> ``1.4M``: at most 3 significant digits, never exponent
    notation."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n < 1000:
        return f"{sign}{n:.0f}" if n == int(n) or n >= 10 else f"{sign}{n:.1f}".rstrip("0").rstrip(".")
    for unit, size in (("k", 1e3), ("M", 1e6), ("B", 1e9), ("T", 1e12)):
        v = n / size
        text = f"{v:.1f}" if v < 10 else f"{v:.0f}"
        if float(text) < 1000 or unit == "T":
            return sign + text.removesuffix(".0") + unit
    raise AssertionError("unreachable")  # pragma: no cover


def tokens(n: float | None, compact: bool = False) -> str:
    """A token count: ``1,404,000`` in full, ``1.4M`` compact."""
    if n is None:
        return MISSING
    return _si(n) if compact else f"{round(n):,}"


def count(n: float | None, compact: bool = False) -> str:
    """A count of requests, calls, samples: the same shape as a token count."""
    return tokens(n, compact)


def usd(x: float | None, compact: bool = False) -> str:
    """Dollars: cents from $1 on, four decimals below (a stage can cost $0.0068), thousands separated;
    compact: ``$3.45``, ``$0.48``, ``$0.0068``, ``$1.2k``."""
    if x is None:
        return MISSING
    sign = "-" if x < 0 else ""
    a = abs(x)
    if compact and a >= 1000:
        return f"{sign}${_si(a)}"
    if a >= 0.995 or a == 0:
        return f"{sign}${a:,.2f}"
    # compact: two significant digits ($0.48, $0.0068); full: four decimals, or two significant
    # digits when that shows more (a fraction of a cent)
    digits = min(10, max(2, 1 - math.floor(math.log10(a))))
    return f"{sign}${a:.{digits if compact else max(4, digits)}f}"


def rate(x: float | None, compact: bool = False) -> str:
    """A share between 0 and 1 as a percentage: ``76.7%`` (``77%`` compact)."""
    if x is None:
        return MISSING
    return f"{x * 100:.0f}%" if compact else f"{x * 100:.1f}%"


def change(x: float | None, compact: bool = True) -> str:
    """A relative change as a signed percentage: ``+72%``, ``-3%`` (``+72.4%`` not compact)."""
    if x is None:
        return MISSING
    return ("+" if x > 0 else "") + rate(x, compact)


def percent(x: float | None, compact: bool = False) -> str:
    """A value already in percent (``saving_pct`` = 45): ``45%``."""
    if x is None:
        return MISSING
    return f"{x:.0f}%" if compact or x == int(x) else f"{x:.1f}%"


def ratio(x: float | None, compact: bool = False) -> str:
    """How many times something is: ``2.6x``."""
    if x is None:
        return MISSING
    return f"{x:.0f}x" if compact and abs(x) >= 100 else f"{x:,.1f}x"


def duration_ms(ms: float | None, compact: bool = False) -> str:
    """A duration given in milliseconds: ``350ms``, ``4.2s``, ``42s``, ``1.6min``, ``2.5h``, ``3.1d``."""
    if ms is None:
        return MISSING
    a = abs(ms)
    sign = "-" if ms < 0 else ""
    if a < 1000:
        return f"{sign}{a:.0f}ms"
    s = a / 1000
    if s < 60:
        return f"{sign}{s:.1f}s" if s < 10 else f"{sign}{s:.0f}s"
    if s < 3600:
        return f"{sign}{s / 60:.1f}min"
    if s < 86400:
        return f"{sign}{s / 3600:.1f}h"
    return f"{sign}{s / 86400:.1f}d"


def duration_s(seconds: float | None, compact: bool = False) -> str:
    """A duration given in seconds (see :func:`duration_ms`)."""
    return MISSING if seconds is None else duration_ms(seconds * 1000, compact)


def number(x: float | None, compact: bool = False) -> str:
    """Any other number: whole numbers with separators, fractions with up to 4 significant digits,
    never in exponent notation."""
    if x is None:
        return MISSING
    if isinstance(x, bool):
        return str(x).lower()
    if float(x) == int(x):
        return _si(x) if compact else f"{int(x):,}"
    a = abs(x)
    if compact and a >= 1000:
        return _si(x)
    if a >= 100:
        return f"{x:,.0f}" if a >= 1000 else f"{x:.1f}"
    digits = max(0, 3 - math.floor(math.log10(a))) if a > 0 else 0
    return f"{x:.{min(digits, 8)}f}".rstrip("0").rstrip(".") or "0"


def p_value(p: float | None, compact: bool = False) -> str:
    """A test's p-value: ``p=0.032``, ``p<0.001`` (never ``p=3.1e-12``)."""
    if p is None:
        return MISSING
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


_SHOW = {"change": change, "tokens": tokens, "count": count, "usd": usd, "rate": rate, "percent": percent, "ratio": ratio, "ms": duration_ms,
         "seconds": duration_s, "number": number}


def show(value: Any, unit: str | None, compact: bool = False) -> str:
    """``value`` in ``unit`` (one of :data:`UNITS`); text and None as they are."""
    if value is None:
        return MISSING
    if unit is None or isinstance(value, str) or not isinstance(value, int | float):
        return str(value)
    return _SHOW[unit](value, compact)


def unit_of(field: str, value: Any = None) -> str | None:
    """The unit a field is shown in, from the words its name uses (``cost_usd`` -> usd,
    ``cache_read_tokens`` -> tokens, ``error_rate`` -> rate, ``p50_ms`` -> ms). None for text.

    Example: ``unit_of("avg_stage_cost_usd")`` -> ``'usd'``
    """
    f = field.lower()
    if isinstance(value, bool) or (value is not None and not isinstance(value, int | float)):
        return None
    if f.endswith(("_change", "_rate", "_share")) or f in ("rate", "share"):
        return "rate"
    if f == "percent" or f.endswith(("_pct", "_percent")):
        return "percent"
    if f.endswith("_usd") or f.startswith("usd") or f in ("cost", "total_cost", "spent", "limit") or "cost" in f:
        return "usd"
    if "token" in f:
        return "tokens"
    if f.endswith("_ms"):
        return "ms"
    if f.endswith("_seconds") or f in ("seconds", "duration"):
        return "seconds"
    if f in ("ratio", "severity", "multiplier") or f.endswith("_ratio"):
        return "ratio"
    if isinstance(value, float) and value != int(value):
        return "number"
    return "count"


# the metrics the analyses name (anomalies, trends) and the unit each is shown in
METRIC_UNITS = {"total_tokens": "tokens", "tokens": "tokens", "total_cost": "usd", "cost_usd": "usd",
                "tool_calls": "count", "requests": "count", "errors": "count", "duration_ms": "ms",
                "duration_seconds": "seconds", "error_rate": "rate", "cache_hit_rate": "rate"}


def metric(name: str, value: float | None, compact: bool = False) -> str:
    """A named metric's value: ``metric("total_tokens", 178_700)`` -> ``'178,700'``."""
    return show(value, METRIC_UNITS.get(name) or unit_of(name, value), compact)
