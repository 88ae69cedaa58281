"""hpstudy.formatting: the one place numbers are spelled for people (fast, no torch)."""

from __future__ import annotations

import math

import pytest

from hpstudy.formatting import (
    approx_duration,
    duration,
    flops_text,
    fmt,
    fmt_p,
    fmt_signed,
    fmt_text,
    format_rows,
    p_is,
)


@pytest.mark.parametrize(
    "value, text",
    [
        (None, "–"),
        (math.nan, "–"),
        (True, "yes"),
        (12, "12"),
        (123456, "123,456"),
        (0.5, "0.5000"),
        (12.3456, "12.35"),
        (0.0005, "5.000e-04"),
        (2.5e6, "2.500e+06"),
        ("bs32", "bs32"),
    ],
)
def test_table_cells(value, text):
    assert fmt(value) == text


def test_numbers_in_sentences_p_values_and_signs():
    assert [fmt_text(x) for x in (0.6789, 12.345, 0.004, 0, math.inf, "x")] == [
        "0.679",
        "12.3",
        "4.00e-03",
        "0",
        "–",
        "–",
    ]
    assert [fmt_p(p) for p in (0.0004, 0.0123, None, math.nan)] == ["<0.001", "0.012", "–", "–"]
    assert p_is(0.0004) == "p < 0.001" and p_is(0.04) == "p = 0.040"
    assert [fmt_signed(x) for x in (0.25, -0.25, 0.0, None)] == [
        "+0.2500",
        "-0.2500",
        "0.0000",
        "–",
    ]


def test_durations_flops_and_console_tables():
    assert [duration(s) for s in (45, 725, 11220)] == ["45s", "12m05s", "3h07m"]
    assert [approx_duration(s) for s in (45, 725, 11220)] == ["45 s", "12 min", "3.1 h"]
    assert flops_text(3.14e12) == "3.14 TFLOP" and flops_text(500) == "500 FLOP"
    table = format_rows([{"group": "a", "runs": 3}, {"group": "bbbb", "runs": 12}])
    assert table.splitlines() == ["group  runs", "a      3", "bbbb   12"]
