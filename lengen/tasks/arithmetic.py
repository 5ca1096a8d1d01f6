"""Arithmetic tasks (family "arithmetic"; length = digits of the longer operand).

Format choices, shared by every task here:

* Every number is written **least-significant digit first** ("reversed"), so a model can emit the
  answer in the order a grade-school algorithm produces it. ``1234`` is written ``4321``.
* Operands are written reversed *without* padding: ``a=1234, b=987`` gives the prompt ``4321+789=``.
* Answers are zero-padded to a fixed width that depends only on the length ``n`` (``n+1`` for sums,
  differences, digit-wise sums and carries; ``n+3`` for the multiplication steps), so the answer's
  length never leaks its value and the model always knows where to stop.

Operand sampling (``sample_operands``, scheme set by ``OPERAND_LENGTHS``):

* ``"equal"`` (default): both operands have exactly ``n`` digits (most significant digit nonzero,
  except that a 1-digit number may be 0), the scheme of the CPU calibration run
  (``shared/reference/cpu-spike.md``).
* ``"mixed"``: ``a`` has ``n`` digits, ``b`` has ``m ~ U{1..n}`` digits, and with probability 1/2 the
  two are swapped (the paper's example ``4321+789=`` is of this kind).

Neither scheme let the ``cpu`` profile's model fit reverse add ≤8 (+ no carry, carry only ≤16) in
4000 steps here: in-distribution exact match 0.14 (equal) and 0.17 (mixed); see docs/arithmetic-recipe.md.

Each task has a public ``*_example(a, b)`` builder that the generator also uses, so the worked examples
in the docstrings are executable (they are doctests).
"""

from __future__ import annotations

import random

from lengen.tasks.base import Example, Task, register

__all__ = [
    "sample_operands",
    "rev",
    "add_example",
    "no_carry_example",
    "carry_example",
    "subtract_example",
    "cot_multiply_example",
    "copy_first_op_example",
]


def rev(x: int, width: int = 0) -> str:
    """``x`` written least-significant digit first, zero-padded on the right to ``width`` digits.

    >>> rev(1234), rev(247, 5), rev(0)
    ('4321', '74200', '0')
    """
    return str(x)[::-1].ljust(width, "0")


def _ndigits(rng: random.Random, n: int) -> int:
    """A uniform number with exactly ``n`` digits (``0..9`` when ``n == 1``)."""
    if n == 1:
        return rng.randrange(10)
    return rng.randrange(10 ** (n - 1), 10**n)


OPERAND_LENGTHS = "equal"  # "equal" | "mixed" (see the module docstring)


def sample_operands(rng: random.Random, n: int, scheme: str | None = None) -> tuple[int, int]:
    """Two operands of ``n`` digits each ("equal"), or one of ``n`` and one of ``U{1..n}`` digits in
    random order ("mixed")."""
    scheme = scheme or OPERAND_LENGTHS
    if scheme not in ("equal", "mixed"):
        raise ValueError(f"operand scheme {scheme!r} must be 'equal' or 'mixed'")
    a = _ndigits(rng, n)
    if scheme == "equal":
        return a, _ndigits(rng, n)
    b = _ndigits(rng, rng.randint(1, n))
    if rng.random() < 0.5:
        a, b = b, a
    return a, b


def _width(a: int, b: int) -> int:
    """The length ``n`` of an example: digits of the longer operand."""
    return len(str(max(a, b)))


# --- builders (pure functions of the operands) ---------------------------------------------------


def add_example(a: int, b: int) -> Example:
    """``reverse_add``: the sum, reversed and zero-padded to n+1 digits.

    >>> add_example(1234, 987)
    Example(prompt='4321+789=', target='12220')
    """
    n = _width(a, b)
    return Example(f"{rev(a)}+{rev(b)}=", rev(a + b, n + 1))


def no_carry_example(a: int, b: int) -> Example:
    """``no_carry``: digit i is ``(a_i + b_i) mod 10`` for i < n (missing digits are 0), then ``0``.

    The trailing ``0`` keeps the answer n+1 digits wide like ``reverse_add`` (the carry-out slot).

    >>> no_carry_example(1234, 987)
    Example(prompt='4321+789=', target='11110')
    """
    n = _width(a, b)
    ra, rb = rev(a, n), rev(b, n)
    digits = "".join(str((int(x) + int(y)) % 10) for x, y in zip(ra, rb))
    return Example(f"{rev(a)}+{rev(b)}=", digits + "0")


def carry_example(a: int, b: int) -> Example:
    """``carry_only``: digit i is the carry *into* position i (0 at position 0); n+1 digits, the last
    being the carry out of the top position.

    >>> carry_example(1234, 987)
    Example(prompt='4321+789=', target='01110')
    """
    n = _width(a, b)
    ra, rb, rs = rev(a, n + 1), rev(b, n + 1), rev(a + b, n + 1)
    # sum digit s_i = (a_i + b_i + c_i) mod 10 with c_i in {0, 1}, so c_i = (s_i - a_i - b_i) mod 10.
    carries = "".join(str((int(s) - int(x) - int(y)) % 10) for x, y, s in zip(ra, rb, rs))
    return Example(f"{rev(a)}+{rev(b)}=", carries)


def subtract_example(a: int, b: int) -> Example:
    """``reverse_subtract``: requires ``a >= b``; the difference reversed, zero-padded to n+1 digits.

    n+1 (not n) so the answer has the same width as ``reverse_add``'s; the last digit is always 0.

    >>> subtract_example(1234, 987)
    Example(prompt='4321-789=', target='74200')
    """
    if a < b:
        raise ValueError(f"subtract_example needs a >= b, got a={a}, b={b}")
    n = _width(a, b)
    return Example(f"{rev(a)}-{rev(b)}=", rev(a - b, n + 1))


def cot_multiply_example(a: int, b: int) -> Example:
    """``cot_multiply`` (n x 3 chain-of-thought multiplication); ``b`` must have exactly 3 digits.

    Chosen format: the partial products ``p_j = a * b_j * 10**j`` (``b_j`` = j-th least significant
    digit of ``b``) are summed left to right, written as two reverse additions
    ``p0+p1=s1;s1+p2=s2`` with ``s1 = p0 + p1`` and ``s2 = s1 + p2 = a*b``. Every number is reversed and
    zero-padded to n+3 digits (``a*b < 10**(n+3)``), so each step reads like a ``reverse_add`` example of
    fixed width; the final number is the product.

    >>> cot_multiply_example(1234, 567).prompt
    '4321*765='
    >>> cot_multiply_example(1234, 567).target   # 8638 + 74040 = 82678; 82678 + 617000 = 699678
    '8368000+0404700=8762800;8762800+0007160=8769960'
    """
    if not 100 <= b <= 999:
        raise ValueError(f"cot_multiply_example needs a 3-digit b, got {b}")
    w = len(str(a)) + 3
    p0, p1, p2 = a * (b % 10), a * (b // 10 % 10) * 10, a * (b // 100) * 100
    s1 = p0 + p1
    s2 = s1 + p2
    target = f"{rev(p0, w)}+{rev(p1, w)}={rev(s1, w)};{rev(s1, w)}+{rev(p2, w)}={rev(s2, w)}"
    return Example(f"{rev(a)}*{rev(b)}=", target)


def copy_first_op_example(a: int, b: int) -> Example:
    """``copy_first_op`` (control): the first operand exactly as written.

    >>> copy_first_op_example(1234, 987)
    Example(prompt='4321+789=', target='4321')
    """
    ra = rev(a)
    return Example(f"{ra}+{rev(b)}=", ra)


# --- generators ----------------------------------------------------------------------------------


def reverse_add(rng: random.Random, length: int) -> Example:
    """``4321+789=`` -> ``12220`` (1234 + 987 = 2221, reversed, padded to n+1 = 5 digits)."""
    return add_example(*sample_operands(rng, length))


def no_carry(rng: random.Random, length: int) -> Example:
    """``4321+789=`` -> ``11110`` (digit-wise sums mod 10, then ``0``)."""
    return no_carry_example(*sample_operands(rng, length))


def carry_only(rng: random.Random, length: int) -> Example:
    """``4321+789=`` -> ``01110`` (carry into each of the n+1 positions)."""
    return carry_example(*sample_operands(rng, length))


def reverse_subtract(rng: random.Random, length: int) -> Example:
    """``4321-789=`` -> ``74200`` (1234 - 987 = 247). Operands are sampled as for addition, then
    ordered so the first is the larger (a >= b): answers are never negative."""
    a, b = sample_operands(rng, length)
    if a < b:
        a, b = b, a
    return subtract_example(a, b)


def cot_multiply(rng: random.Random, length: int) -> Example:
    """``4321*765=`` -> ``8368000+0404700=8762800;8762800+0007160=8769960`` (1234 * 567); ``a`` has
    exactly n digits, ``b`` exactly 3. See ``cot_multiply_example`` for the format."""
    return cot_multiply_example(_ndigits(rng, length), rng.randrange(100, 1000))


def copy_first_op(rng: random.Random, length: int) -> Example:
    """``4321+789=`` -> ``4321`` (control task: copy the first operand)."""
    return copy_first_op_example(*sample_operands(rng, length))


# Token bounds: a +/- prompt has at most n + 1 + n + 1 tokens; answers are n+1 digits.
def _binary_op_tokens(n: int) -> int:
    return (2 * n + 2) + (n + 1)


def _cot_tokens(n: int) -> int:
    # prompt: n + '*' + 3 + '='; target: six (n+3)-digit numbers, '+', '=', ';', '+', '='.
    return (n + 5) + (6 * (n + 3) + 5)


for _generate, _max_tokens in [
    (reverse_add, _binary_op_tokens),
    (no_carry, _binary_op_tokens),
    (carry_only, _binary_op_tokens),
    (reverse_subtract, _binary_op_tokens),
    (cot_multiply, _cot_tokens),
    (copy_first_op, _binary_op_tokens),
]:
    register(
        Task(
            name=_generate.__name__,
            family="arithmetic",
            generate=_generate,
            max_tokens=_max_tokens,
            max_length=None,
            length_unit="digits",
        )
    )
