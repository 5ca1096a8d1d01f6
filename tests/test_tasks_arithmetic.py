"""Arithmetic tasks checked by independent reference code (Python ints, grade-school simulation).

Nothing here calls the generators' internals: examples come from ``get_task(...).sample`` or from the
public builders, and are parsed back from their strings.
"""

from __future__ import annotations

import random
import re
from collections import Counter

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lengen.tasks import Example, arithmetic, get_task
from lengen.tasks.arithmetic import (
    add_example,
    carry_example,
    copy_first_op_example,
    cot_multiply_example,
    no_carry_example,
    subtract_example,
)

NAMES = ["reverse_add", "no_carry", "carry_only", "reverse_subtract", "cot_multiply", "copy_first_op"]
OP = {"reverse_subtract": "-", "cot_multiply": "*"}


def value(reversed_digits: str) -> int:
    return int(reversed_digits[::-1])


def well_formed(r: str) -> bool:
    """A reversed number without padding: digits only, no trailing (i.e. leading) zero unless '0'."""
    return bool(re.fullmatch(r"\d+", r)) and (len(r) == 1 or r[-1] != "0")


def grade_school(ra: str, rb: str, n: int) -> tuple[list[int], list[int], list[int]]:
    """Column addition of two reversed numbers over n columns: (digit sums mod 10, carries into each of
    the n+1 positions, result digits incl. the carry out)."""
    digit = lambda r, i: int(r[i]) if i < len(r) else 0  # noqa: E731
    carry, mods, carries, result = 0, [], [0], []
    for i in range(n):
        col = digit(ra, i) + digit(rb, i)
        mods.append(col % 10)
        result.append((col + carry) % 10)
        carry = (col + carry) // 10
        carries.append(carry)
    result.append(carry)
    return mods, carries, result


def check(name: str, ex: Example, n: int) -> None:
    """Assert that ``ex`` is a correct ``name`` example at length n (n = digits of the longer operand)."""
    op = OP.get(name, "+")
    m = re.fullmatch(rf"(\d+){re.escape(op)}(\d+)=", ex.prompt)
    assert m, ex.prompt
    ra, rb = m.groups()
    assert well_formed(ra) and well_formed(rb), ex.prompt
    a, b = value(ra), value(rb)
    t = ex.target
    if name == "cot_multiply":
        assert len(ra) == n and len(rb) == 3 and rb[-1] != "0"
        w = n + 3
        m = re.fullmatch(rf"(\d{{{w}}})\+(\d{{{w}}})=(\d{{{w}}});(\d{{{w}}})\+(\d{{{w}}})=(\d{{{w}}})", t)
        assert m, t
        p0, p1, s1, _s1_again, p2, s2 = (value(g) for g in m.groups())
        assert p0 == a * int(rb[0])
        assert p1 == a * int(rb[1]) * 10
        assert p2 == a * int(rb[2]) * 100
        assert s1 == p0 + p1 and m.group(4) == m.group(3)
        assert s2 == s1 + p2 == a * b
        return
    assert max(len(ra), len(rb)) == n, ex.prompt
    if name == "copy_first_op":
        assert t == ra
        return
    assert re.fullmatch(r"\d+", t) and len(t) == n + 1, t
    mods, carries, result = grade_school(ra, rb, n)
    if name == "reverse_add":
        assert value(t) == a + b
        assert [int(c) for c in t] == result
    elif name == "no_carry":
        assert [int(c) for c in t] == mods + [0]
    elif name == "carry_only":
        assert [int(c) for c in t] == carries
    elif name == "reverse_subtract":
        assert a >= b
        assert value(t) == a - b
    else:
        raise AssertionError(name)


# --- worked examples -------------------------------------------------------------------------------

LITERALS = [
    ("reverse_add", add_example(1234, 987), "4321+789=", "12220"),
    ("no_carry", no_carry_example(1234, 987), "4321+789=", "11110"),
    ("carry_only", carry_example(1234, 987), "4321+789=", "01110"),
    ("reverse_subtract", subtract_example(1234, 987), "4321-789=", "74200"),
    ("copy_first_op", copy_first_op_example(1234, 987), "4321+789=", "4321"),
    (
        "cot_multiply",
        cot_multiply_example(1234, 567),
        "4321*765=",
        "8368000+0404700=8762800;8762800+0007160=8769960",
    ),
    ("reverse_add", add_example(5, 5), "5+5=", "01"),
    ("reverse_add", add_example(0, 0), "0+0=", "00"),
    ("carry_only", carry_example(999, 1), "999+1=", "0111"),
    ("no_carry", no_carry_example(999, 1), "999+1=", "0990"),
    ("reverse_subtract", subtract_example(1000, 1), "0001-1=", "99900"),
    ("copy_first_op", copy_first_op_example(7, 1234), "7+4321=", "7"),
]


@pytest.mark.parametrize("name,ex,prompt,target", LITERALS)
def test_worked_examples(name, ex, prompt, target):
    assert ex == Example(prompt, target)
    check(name, ex, max(len(str(value(x))) for x in re.findall(r"\d+", prompt)))


@pytest.mark.parametrize("name", NAMES)
def test_docstring_example_is_correct(name):
    doc = get_task(name).generate.__doc__
    prompt, target = re.search(r"``([^`]+=)`` -> ``([^`]+)``", doc).groups()
    n = len(re.findall(r"\d+", prompt)[0]) if name == "cot_multiply" else max(map(len, re.findall(r"\d+", prompt)))
    check(name, Example(prompt, target), n)


def test_subtract_example_requires_ordered_operands():
    with pytest.raises(ValueError):
        subtract_example(3, 5)


# --- property tests over seeds and lengths ----------------------------------------------------------

lengths = st.integers(1, 24) | st.integers(1, 512)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=lengths)
@example(seed=0, n=1)
@example(seed=0, n=512)
@example(seed=1, n=512)
def test_examples_are_correct(name, seed, n):
    check(name, get_task(name).sample(random.Random(seed), n), n)


@pytest.mark.parametrize("name", NAMES)
def test_many_short_examples(name):
    """Dense coverage of short lengths, where carries and edge cases (0, 9, 99...) concentrate."""
    rng = random.Random(42)
    for _ in range(3000):
        n = rng.randint(1, 4)
        check(name, get_task(name).sample(rng, n), n)


# --- distribution of the operands ---------------------------------------------------------------------


def test_default_operands_both_have_n_digits():
    rng = random.Random(4)
    for n in (1, 2, 7):
        for _ in range(200):
            ra, rb = re.fullmatch(r"(\d+)\+(\d+)=", get_task("reverse_add").sample(rng, n).prompt).groups()
            assert len(ra) == len(rb) == n and (n == 1 or (ra[-1] != "0" and rb[-1] != "0"))


def test_operand_length_distribution_mixed():
    """Mixed scheme: the short operand's length is uniform over 1..n, either operand may be the long one."""
    n, trials = 4, 8000
    rng = random.Random(3)
    short_len, first_long, second_long = Counter(), 0, 0
    for _ in range(trials):
        ra, rb = (rev_str[::-1] for rev_str in map(str, arithmetic.sample_operands(rng, n, "mixed")))
        short_len[min(len(ra), len(rb))] += 1
        first_long += len(ra) > len(rb)
        second_long += len(rb) > len(ra)
    for m in range(1, n + 1):  # expected trials/n = 2000 each, sd ~ 39
        assert abs(short_len[m] - trials / n) < 200, short_len
    # P(first strictly longer) = P(second strictly longer) = 0.5 * (n-1)/n = 0.375 -> 3000, sd ~ 43
    assert abs(first_long - 3000) < 220 and abs(second_long - 3000) < 220


def test_one_digit_operands_cover_zero_to_nine():
    rng = random.Random(5)
    seen = set()
    for _ in range(500):
        ra, rb = re.fullmatch(r"(\d)\+(\d)=", get_task("reverse_add").sample(rng, 1).prompt).groups()
        seen |= {ra, rb}
    assert seen == set("0123456789")


def test_subtraction_orders_operands():
    """After ordering a >= b both operands have n digits and the first is the larger."""
    rng = random.Random(9)
    for _ in range(400):
        ra, rb = re.fullmatch(r"(\d+)-(\d+)=", get_task("reverse_subtract").sample(rng, 6).prompt).groups()
        assert len(ra) == len(rb) == 6 and int(ra[::-1]) >= int(rb[::-1])
