"""Bit-string tasks (family "bits"; length = bits of the input).

The association-format twins of two of the formal framework's algorithmic tasks (``lengen.formal``,
Huang et al. 2410.02140), for the cross-paper study (notebook 07): ``parity``, which no C-RASP program
computes, and ``bin_majority``, which one does. Both read the same prompt, a bit string followed by ``=``,
and answer with one token, so a group can pose one input to both (the hold-out is per prompt: an evaluation
prompt is never trained under either task).

* ``parity``: the number of ones ~ U{0..n}, shuffled (the official sampler: every count is equally likely,
  so the two answers are too, up to one count in n + 1); the answer is ``e`` (even number of ones) or ``o``.
* ``bin_majority``: the number of zeros ~ U{0..n}, resampled on a tie (the official sampler); the answer is
  the more frequent bit.

The shortest length is 5 (``MIN_BITS``): the hold-out keeps one prompt in ten for evaluation, and the 2, 4
and 8 bit strings of lengths 1 to 3 hold none (length 4: one of 16), so those lengths could not be
evaluated, and length 1 could train only one of its two prompts.
"""

from __future__ import annotations

import random

from lengen.tasks.base import Example, Task, register

__all__ = ["MIN_BITS", "parity_example", "majority_example"]

MIN_BITS = 5


def parity_example(bits: str) -> Example:
    """``parity``: ``e`` for an even number of ones, ``o`` for odd.

    >>> parity_example("01101")
    Example(prompt='01101=', target='o')
    """
    return Example(bits + "=", "o" if bits.count("1") % 2 else "e")


def majority_example(bits: str) -> Example:
    """``bin_majority``: the more frequent bit (the input has no tie).

    >>> majority_example("01101")
    Example(prompt='01101=', target='1')
    """
    ones, zeros = bits.count("1"), bits.count("0")
    if ones == zeros:
        raise ValueError(f"majority_example: {bits!r} is a tie")
    return Example(bits + "=", "1" if ones > zeros else "0")


def _shuffled(rng: random.Random, first: str, count: int, n: int) -> str:
    """``count`` copies of bit ``first`` and ``n - count`` of the other, shuffled (the official order of
    draws, so that a seed gives the formal framework's input: ``tests/test_tasks_bits.py``)."""
    bits = [first] * count + ["10"[int(first)]] * (n - count)
    rng.shuffle(bits)
    return "".join(bits)


def parity(rng: random.Random, length: int) -> Example:
    """``parity`` of ``length`` bits: ``01101=`` -> ``o``."""
    return parity_example(_shuffled(rng, "1", rng.randint(0, length), length))


def bin_majority(rng: random.Random, length: int) -> Example:
    """``bin_majority`` of ``length`` bits: ``01101=`` -> ``1``."""
    while True:
        zeros = rng.randint(0, length)
        if 2 * zeros != length:
            return majority_example(_shuffled(rng, "0", zeros, length))


for _generate in (parity, bin_majority):
    register(
        Task(
            name=_generate.__name__,
            family="bits",
            generate=_generate,
            max_tokens=lambda n: n + 2,  # n bits, '=', one answer token
            min_length=MIN_BITS,
            length_unit="bits",
            chance=0.5,  # two answers, equally likely (parity: up to one count in n + 1)
        )
    )
