"""Bit tasks checked by independent reference code (integer arithmetic on the bits), their samplers, and the
hold-out reason for their shortest length."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengen.data import is_heldout
from lengen.formal.algorithmic import ALGORITHMIC
from lengen.tasks import get_task
from lengen.tasks.bits import MIN_BITS, majority_example, parity_example


def reference(name: str, bits: str) -> str:
    value = [int(b) for b in bits]
    if name == "parity":
        return "eo"[sum(value) % 2]
    return "1" if 2 * sum(value) > len(value) else "0"


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(["parity", "bin_majority"]), n=st.integers(MIN_BITS, 200), seed=st.integers(0, 2**32))
def test_answers_match_the_reference(name, n, seed):
    ex = get_task(name).sample(random.Random(seed), n)
    bits = ex.prompt[:-1]
    assert ex.prompt.endswith("=") and len(bits) == n and set(bits) <= {"0", "1"}
    assert ex.target == reference(name, bits)
    if name == "bin_majority":
        assert 2 * bits.count("1") != n, "no ties"


def test_builders_reject_a_tie_and_handle_both_answers():
    assert parity_example("00000").target == "e" and parity_example("10000").target == "o"
    assert majority_example("11100").target == "1" and majority_example("00011").target == "0"
    with pytest.raises(ValueError, match="tie"):
        majority_example("0011")


def test_samplers_balance_the_answer_and_spread_the_count():
    """The official sampler: the count of ones is uniform, not binomial (long inputs are not all near half
    ones), so parity's answers are balanced up to one count in n + 1."""
    rng = random.Random(0)
    ones = [get_task("parity").sample(rng, 20).prompt.count("1") for _ in range(4000)]
    counts = Counter(ones)
    assert set(counts) == set(range(21)) and min(counts.values()) > 100  # ~190 each
    # 0..21 ones: 11 even counts and 11 odd ones, so both answers are equally likely (sd of the gap ~63).
    answers = Counter(get_task("parity").sample(rng, 21).target for _ in range(4000))
    assert abs(answers["e"] - answers["o"]) < 250


@pytest.mark.parametrize("name", ["parity", "bin_majority"])
def test_a_seed_gives_the_formal_frameworks_example(name):
    """The same sampler as the formal framework's task of the same name (``lengen.formal.algorithmic``, the
    official code's): one seed, the same bits and the same answer, so the cross-paper study's analogue is the
    same function on the same input distribution."""
    for seed in range(50):
        for n in (MIN_BITS, 16, 33):
            ours = get_task(name).sample(random.Random(seed), n)
            theirs = ALGORITHMIC[name].sample(random.Random(seed), n)
            assert ours.prompt == "".join(theirs.input) + "=" and ours.target == "".join(theirs.answer)


def test_shortest_length_is_the_first_whose_prompts_split_both_ways():
    """Below MIN_BITS some length has no evaluation prompt (lengths 2 and 3 hold none of their 4 and 8
    strings); from MIN_BITS on, every length has prompts in both partitions, for both tasks."""

    def heldout(n, no_tie):
        prompts = ["".join(b) + "=" for b in itertools.product("01", repeat=n)]
        prompts = [p for p in prompts if not (no_tie and 2 * p.count("1") == n)]
        return sum(is_heldout(p, 10) for p in prompts), len(prompts)

    assert any(heldout(n, no_tie)[0] == 0 for n in range(1, MIN_BITS) for no_tie in (False, True))
    for n in range(MIN_BITS, 13):
        for no_tie in (False, True):
            held, total = heldout(n, no_tie)
            assert 0 < held < total
