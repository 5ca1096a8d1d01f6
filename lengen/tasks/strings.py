"""String tasks (family "strings").

* ``copy``, ``capitalize``, ``reverse``, ``capitalize_reverse``: length = input characters. The input is
  i.i.d. uniform over the 52 ASCII letters ``a-zA-Z``; the prompt is the string followed by ``=``.
  Letters only (no digits) so that "capitalize" (``str.swapcase``) changes every character.
* ``mqar`` (multi-query associative recall, as in Zoology): length = number of key-value pairs (1..62).
  Keys are distinct, drawn from the 62 characters ``0-9a-zA-Z``; values are i.i.d. from the same 62
  characters. The prompt is ``k1v1k2v2...|`` followed by every key exactly once in a random order (a
  permutation) and ``=``; the target is the queried keys' values in query order. Keys are distinct so
  every query has one answer; each key is queried once so the target length equals the length.

Each task has a public builder (``string_example``, ``mqar_example``) that the generator also uses.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence

from lengen.tasks.base import Example, Task, register

__all__ = ["LETTERS", "ALNUM", "TRANSFORMS", "string_example", "mqar_example", "MQAR_MAX_PAIRS"]

LETTERS = string.ascii_letters  # 52 symbols for copy / capitalize / reverse / capitalize_reverse
ALNUM = string.digits + string.ascii_letters  # 62 symbols for MQAR keys and values
MQAR_MAX_PAIRS = len(ALNUM)  # keys are distinct, so at most 62 pairs

TRANSFORMS: dict[str, Callable[[str], str]] = {
    "copy": lambda s: s,
    "capitalize": str.swapcase,
    "reverse": lambda s: s[::-1],
    "capitalize_reverse": lambda s: s[::-1].swapcase(),
}


def string_example(task: str, s: str) -> Example:
    """The example of string task ``task`` on input ``s``.

    >>> string_example("capitalize_reverse", "abC")
    Example(prompt='abC=', target='cBA')
    """
    return Example(s + "=", TRANSFORMS[task](s))


def mqar_example(pairs: Sequence[tuple[str, str]], queries: Sequence[str]) -> Example:
    """The MQAR example with key-value ``pairs`` (in prompt order) asked about ``queries``.

    >>> mqar_example([("a", "X"), ("7", "b")], ["7", "a"])
    Example(prompt='aX7b|7a=', target='bX')
    """
    table = dict(pairs)
    if len(table) != len(pairs):
        raise ValueError("mqar_example: keys must be distinct")
    prompt = "".join(k + v for k, v in pairs) + "|" + "".join(queries) + "="
    return Example(prompt, "".join(table[q] for q in queries))


def _letters(rng: random.Random, length: int) -> str:
    return "".join(rng.choices(LETTERS, k=length))


def copy(rng: random.Random, length: int) -> Example:
    """``copy``: ``abC=`` -> ``abC``."""
    return string_example("copy", _letters(rng, length))


def capitalize(rng: random.Random, length: int) -> Example:
    """``capitalize`` (case flip, ``str.swapcase``): ``abC=`` -> ``ABc``."""
    return string_example("capitalize", _letters(rng, length))


def reverse(rng: random.Random, length: int) -> Example:
    """``reverse``: ``abC=`` -> ``Cba``."""
    return string_example("reverse", _letters(rng, length))


def capitalize_reverse(rng: random.Random, length: int) -> Example:
    """``capitalize_reverse``: ``abC=`` -> ``cBA``."""
    return string_example("capitalize_reverse", _letters(rng, length))


def mqar(rng: random.Random, length: int) -> Example:
    """``mqar``: pairs a->X, 7->b queried as 7, a: ``aX7b|7a=`` -> ``bX``."""
    keys = rng.sample(ALNUM, length)
    values = rng.choices(ALNUM, k=length)
    queries = rng.sample(keys, length)
    return mqar_example(list(zip(keys, values)), queries)


for _generate in (copy, capitalize, reverse, capitalize_reverse):
    register(
        Task(
            name=_generate.__name__,
            family="strings",
            generate=_generate,
            max_tokens=lambda n: 2 * n + 1,  # s, '=', answer of the same length
            max_length=None,
            length_unit="characters",
        )
    )

register(
    Task(
        name="mqar",
        family="strings",
        generate=mqar,
        max_tokens=lambda n: 4 * n + 2,  # 2n pair chars, '|', n queries, '=', n answers
        max_length=MQAR_MAX_PAIRS,
        length_unit="pairs",
    )
)
