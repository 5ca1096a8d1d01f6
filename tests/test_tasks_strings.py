"""String tasks and MQAR checked by independent reference code (str.swapcase, slicing, a dict)."""

from __future__ import annotations

import random
import re
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from lengen.tasks import Example, get_task
from lengen.tasks.strings import mqar_example, string_example

SIMPLE = ["copy", "capitalize", "reverse", "capitalize_reverse"]
REFERENCE = {
    "copy": lambda s: s,
    "capitalize": lambda s: s.swapcase(),
    "reverse": lambda s: s[::-1],
    "capitalize_reverse": lambda s: s[::-1].swapcase(),
}
ALNUM = set(string.ascii_letters + string.digits)


def check_simple(name: str, ex: Example, n: int) -> None:
    assert ex.prompt.endswith("=")
    s = ex.prompt[:-1]
    assert len(s) == n and set(s) <= set(string.ascii_letters)
    assert ex.target == REFERENCE[name](s)


def check_mqar(ex: Example, n: int) -> None:
    m = re.fullmatch(r"([0-9a-zA-Z]*)\|([0-9a-zA-Z]*)=", ex.prompt)
    assert m, ex.prompt
    pairs, queries = m.groups()
    assert len(pairs) == 2 * n and len(queries) == n
    keys, values = pairs[0::2], pairs[1::2]
    assert len(set(keys)) == n, "keys must be distinct"
    assert sorted(queries) == sorted(keys), "queries must be a permutation of the keys"
    table = dict(zip(keys, values))
    assert ex.target == "".join(table[q] for q in queries)


def test_worked_examples():
    assert string_example("capitalize_reverse", "abC") == Example("abC=", "cBA")
    assert string_example("capitalize", "abC") == Example("abC=", "ABc")
    assert string_example("reverse", "abC") == Example("abC=", "Cba")
    assert string_example("copy", "abC") == Example("abC=", "abC")
    assert mqar_example([("a", "X"), ("7", "b")], ["7", "a"]) == Example("aX7b|7a=", "bX")


@pytest.mark.parametrize("name", SIMPLE + ["mqar"])
def test_docstring_example_is_correct(name):
    prompt, target = re.search(r"``([^`]+=)`` -> ``([^`]+)``", get_task(name).generate.__doc__).groups()
    if name == "mqar":
        check_mqar(Example(prompt, target), prompt.index("|") // 2)
    else:
        check_simple(name, Example(prompt, target), len(prompt) - 1)


def test_mqar_rejects_duplicate_keys():
    with pytest.raises(ValueError):
        mqar_example([("a", "X"), ("a", "Y")], ["a"])


@pytest.mark.parametrize("name", SIMPLE)
@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(1, 32) | st.integers(1, 512))
@example(seed=0, n=1)
@example(seed=0, n=512)
def test_string_examples_are_correct(name, seed, n):
    check_simple(name, get_task(name).sample(random.Random(seed), n), n)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**64 - 1), n=st.integers(1, 62))
@example(seed=0, n=1)
@example(seed=0, n=62)
def test_mqar_examples_are_correct(seed, n):
    check_mqar(get_task("mqar").sample(random.Random(seed), n), n)


def test_string_alphabet_is_all_52_letters():
    s = get_task("copy").sample(random.Random(0), 5000).target
    assert set(s) == set(string.ascii_letters)


def test_mqar_randomness():
    """Keys cover the 62 symbols, values repeat (i.i.d.), query order is not the pair order."""
    rng = random.Random(11)
    exs = [get_task("mqar").sample(rng, 62) for _ in range(20)]
    for ex in exs:
        pairs = ex.prompt.split("|")[0]
        assert set(pairs[0::2]) == ALNUM
    # 62 i.i.d. draws from 62 symbols: P(all distinct) = 62!/62**62 ~ 1e-26.
    assert all(len(set(ex.target)) < 62 for ex in exs)
    assert all(ex.prompt.split("|")[1][:-1] != ex.prompt.split("|")[0][0::2] for ex in exs)
