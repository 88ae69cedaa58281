"""Numbers as people read them: the one place for table cells, p-values, durations, FLOPs.

- `fmt` (table cells: 4 significant digits, blanks for missing), `fmt_signed`, `fmt_p` and
  `p_is` for the report's tables and text;
- `fmt_text` for numbers inside sentences (3 significant digits), the verdicts' evidence:
  `_fmt`, `_fmt_p` and `_p_is` of hpstudy.analysis are `fmt_text`, `fmt_p` and `p_is`;
- `duration` ("12m05s") for log lines and ETAs, `approx_duration` ("12 min") for estimates,
  `flops_text` ("3.1 TFLOP"), and `format_rows` for plain-text tables on the console.

Missing values (None, nan, non-numbers) print as "–" in every number format.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "–"


def fmt(value: Any, digits: int = 4) -> str:
    """Numbers for tables: 4 significant digits, blanks for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def fmt_signed(value: Any) -> str:
    """A difference for tables: `fmt` with an explicit + for positive values."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    return ("+" if value > 0 else "") + fmt(float(value))


def fmt_text(value: Any, digits: int = 3) -> str:
    """A number inside a sentence: 3 significant digits, scientific below 0.01."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def fmt_p(value: Any) -> str:
    """A p-value: three decimals, '<0.001' below."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_is(value: Any) -> str:
    """'p = 0.019' or 'p < 0.001' for running text."""
    text = fmt_p(value)
    return "p < 0.001" if text == "<0.001" else f"p = {text}"


def duration(seconds: float) -> str:
    """'45s', '12m05s', '3h07m' for log lines and ETAs."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def approx_duration(seconds: float) -> str:
    """'45 s', '12 min', '1.5 h' for estimates, where more digits would claim too much."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def flops_text(flops: float) -> str:
    for unit, scale in (("EFLOP", 1e18), ("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table with aligned columns (the columns of the first row)."""
    columns = list(rows[0])
    width = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    return "\n".join(
        "  ".join(str(r.get(c, "")).ljust(width[c]) for c in columns).rstrip()
        for r in [{c: c for c in columns}, *rows]
    )
