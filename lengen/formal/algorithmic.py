"""The paper's 8 algorithmic tasks, in its format ``<bos> input <sep> answer <eos>`` (loss on answer + eos).

Each task is a generator ``(rng, length) -> Example(input, answer)`` over its own small vocabulary;
``length`` is the number of input tokens, as in the official code (for addition that count includes
``+`` and ``=``). Worked examples (``rng`` a ``random.Random``)::

    bin_majority       0 1 1 0 1            -> 1            (no ties)
    majority           c a c b              -> c            (26 letters, unique most frequent)
    bin_majority_interleave  0 1 1 0 1 1 0 0 1 -> 0 1 1    (3 streams, position t is stream (t−1) mod 3)
    unique_copy        [17] [3] [42]        -> [17] [3] [42] (150 distinct tokens)
    repeat_copy        a b b a              -> a b b a
    sort               [17] [3] [42]        -> [3] [17] [42]
    parity             0 1 1 1              -> o            (e = even number of ones, o = odd)
    addition           1 0 1 + 1 1 =        -> 1 0 0 0      (binary, most significant bit first)

``sequence(ex)`` gives the full token list, ``answer_start(ex)`` the index of ``<sep>``: the positions
``answer_start .. len-2`` predict the answer tokens and ``<eos>``.
"""

from __future__ import annotations

import random
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from lengen.tokenizer import BOS, EOS, SEP, SPECIALS, Tokenizer

PAPER_VOCAB = 150  # the paper's vocabulary for unique copy and sort: max test length


@dataclass(frozen=True)
class Example:
    input: tuple[str, ...]
    answer: tuple[str, ...]


@dataclass(frozen=True)
class AlgorithmicTask:
    name: str
    symbols: tuple[str, ...]  # content tokens; the tokenizer adds <pad> <bos> <eos> <sep>
    make: Callable[[random.Random, int], Example]
    min_length: int = 1
    length_step: int = 1  # lengths must be multiples of this (interleave: 3 streams)
    answer_len: Callable[[int], int] = lambda n: 1  # longest answer at input length n

    kind = "algorithmic"

    def lengths(self, lo: int, hi: int) -> list[int]:
        """The input lengths in [lo, hi] this task has examples of."""
        return [n for n in range(max(lo, self.min_length), hi + 1) if n % self.length_step == 0]

    def sample(self, rng: random.Random, length: int) -> Example:
        if length < self.min_length or length % self.length_step:
            raise ValueError(f"{self.name}: no examples of length {length}")
        return self.make(rng, length)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer(list(SPECIALS) + list(self.symbols))

    @staticmethod
    def sequence(ex: Example) -> list[str]:
        return [BOS, *ex.input, SEP, *ex.answer, EOS]

    @staticmethod
    def answer_start(ex: Example) -> int:
        return len(ex.input) + 1  # the <sep> position predicts the first answer token

    def max_tokens(self, length: int) -> int:
        """Longest full sequence at this input length (for the position range)."""
        return length + self.answer_len(length) + 3


# ----------------------------------------------------------------------------------------------------
# Generators (the official code's sampling schemes)


def _majority_bits(rng: random.Random, n: int) -> tuple[list[str], str]:
    """n shuffled bits with the number of zeros ~ U[0, n], resampled on a tie; and the majority bit."""
    while True:
        zeros = rng.randint(0, n)
        if 2 * zeros != n:
            break
    bits = ["0"] * zeros + ["1"] * (n - zeros)
    rng.shuffle(bits)
    return bits, "0" if 2 * zeros > n else "1"


def bin_majority(rng: random.Random, n: int) -> Example:
    bits, ans = _majority_bits(rng, n)
    return Example(tuple(bits), (ans,))


LETTERS = tuple(string.ascii_lowercase)


def majority(rng: random.Random, n: int) -> Example:
    while True:
        xs = rng.choices(LETTERS, k=n)
        top = Counter(xs).most_common(2)
        if len(top) < 2 or top[0][1] > top[1][1]:
            return Example(tuple(xs), (top[0][0],))


def bin_majority_interleave(rng: random.Random, n: int, period: int = 3) -> Example:
    m = n // period
    streams, answers = zip(*(_majority_bits(rng, m) for _ in range(period)))
    return Example(tuple(b for column in zip(*streams) for b in column), tuple(answers))


def big_vocab(size: int) -> tuple[str, ...]:
    """``[0] … [size-1]``: one token each (the tokenizer splits ``[k]`` as a unit); order = numeric."""
    return tuple(f"[{k}]" for k in range(size))


def unique_copy(rng: random.Random, n: int, vocab_size: int = PAPER_VOCAB) -> Example:
    xs = tuple(rng.sample(big_vocab(vocab_size), n))
    return Example(xs, xs)


def repeat_copy(rng: random.Random, n: int) -> Example:
    xs = tuple(rng.choices(("a", "b"), k=n))
    return Example(xs, xs)


def sort(rng: random.Random, n: int, vocab_size: int = PAPER_VOCAB) -> Example:
    ids = rng.sample(range(vocab_size), n)
    return Example(tuple(f"[{k}]" for k in ids), tuple(f"[{k}]" for k in sorted(ids)))


def parity(rng: random.Random, n: int) -> Example:
    ones = rng.randint(0, n)
    bits = ["1"] * ones + ["0"] * (n - ones)
    rng.shuffle(bits)
    return Example(tuple(bits), ("e" if ones % 2 == 0 else "o",))


def addition(rng: random.Random, n: int) -> Example:
    """``a + b =`` with |a| + |b| = n − 2, no leading zeros, most significant bit first."""
    len_a = rng.randint(1, n - 3)
    operands = []
    for width in (len_a, n - 2 - len_a):
        bits = rng.choices("01", k=width) if width == 1 else ["1", *rng.choices("01", k=width - 1)]
        operands.append("".join(bits))
    total = bin(int(operands[0], 2) + int(operands[1], 2))[2:]
    return Example((*operands[0], "+", *operands[1], "="), tuple(total))


# ----------------------------------------------------------------------------------------------------
# Registry


def make_tasks(vocab_size: int = PAPER_VOCAB) -> dict[str, AlgorithmicTask]:
    """The 8 tasks; ``vocab_size`` sets unique copy's and sort's vocabulary (>= the longest input)."""
    big = big_vocab(vocab_size)
    return {
        t.name: t
        for t in (
            AlgorithmicTask("bin_majority", ("0", "1"), bin_majority),
            AlgorithmicTask("majority", LETTERS, majority),
            AlgorithmicTask(
                "bin_majority_interleave",
                ("0", "1"),
                bin_majority_interleave,
                min_length=3,
                length_step=3,
                answer_len=lambda n: 3,
            ),
            AlgorithmicTask("unique_copy", big, lambda rng, n: unique_copy(rng, n, vocab_size), answer_len=lambda n: n),
            AlgorithmicTask("repeat_copy", ("a", "b"), repeat_copy, answer_len=lambda n: n),
            AlgorithmicTask("sort", big, lambda rng, n: sort(rng, n, vocab_size), answer_len=lambda n: n),
            AlgorithmicTask("parity", ("0", "1", "e", "o"), parity),
            AlgorithmicTask("addition", ("0", "1", "+", "="), addition, min_length=4, answer_len=lambda n: n - 2),
        )
    }


ALGORITHMIC = make_tasks()
