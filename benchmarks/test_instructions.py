"""The pure parts of instructions.py: reading valgrind's count and the table."""

from __future__ import annotations

import pytest
from instructions import parse_collected, render


def test_parse_collected() -> None:
    stderr = "==12== Callgrind\n==12== Events    : Ir\n==12== Collected : 2,122,602,703\n"
    assert parse_collected(stderr) == 2_122_602_703
    with pytest.raises(ValueError):
        parse_collected("no count here")


def test_render_compares_with_the_first_row_of_each_mode() -> None:
    table = render([("a", "on", 200.0), ("b", "on", 100.0), ("a", "off", 50.0)], 10)
    assert "| a | on | 200 | 1.000x |" in table
    assert "| b | on | 100 | 0.500x |" in table
    assert "| a | off | 50 | 1.000x |" in table
