"""An executable C-RASP[periodic, local]: build programs, run them on token sequences.

C-RASP (Yang & Chiang 2024; Huang et al. 2025, arXiv 2410.02140) is a straight-line language over the
positions ``i`` of a sequence. Every operation yields one value per position, computed from the prefix
``0..i`` only (it is causal), so a program can be read as a transformer decoder:

Boolean operations                           Count operations
  ``Q_σ(i)``     token test: ``tok("a")``        ``#[j≤i] P(j)``         ``count(P)``
  ``¬P, P∧P', P∨P'``  ``~p, p & q, p | q``      ``#[j≤i, j=i−k] P(j)``  ``count(P, local=(k,))``  [local]
  ``⊤``          ``TRUE``                        ``P ? C : C'``          ``cond(P, C, C')``
  ``φ(i)``       ``periodic(m, r)``  [periodic]  ``C + C', C − C'``      ``c + d, c - d``
  ``C ≤ C'``     ``c <= d`` (also ``<, >, >=``,  constants               ``const(1)``, or an int
                 ``eq(c, d)``, ``ne(c, d)``)

``periodic(m, r)`` holds iff ``i mod m`` is in ``r`` (position 0 is the first token); a local count
looks only at the positions ``j = i − k`` for the listed offsets ``k`` (``local=(1,)`` is the
predecessor, the relation an induction head needs). Programs using neither are plain C-RASP, the class
the paper relates to NoPE; the two marked ones are what absolute positions add (APE). ``features(e)``
says which a program uses. The derived comparisons are sugar: counts are integers, so
``C < C'`` is ``C + 1 ≤ C'`` and ``C = C'`` is ``C ≤ C' ∧ C' ≤ C``.

Worked example: majority over {0, 1}, the paper's ``NEXT_1 := #[j≤i] Q_1(j) > #[j≤i] Q_0(j)``::

    >>> ones, zeros = let("ones", count(tok("1"))), let("zeros", count(tok("0")))
    >>> next_1 = ones > zeros
    >>> print(next_1)
    ones > zeros
    >>> print(listing({"1": next_1}))
    ones := #[j≤i] Q_1(j)
    zeros := #[j≤i] Q_0(j)
    NEXT_1 := ones > zeros
    >>> run(next_1, [["<bos>", "1", "0", "1"]]).astype(int).tolist()
    [[0, 1, 0, 1]]

Evaluation is vectorized over a batch of sequences (right-padded: causality makes padding harmless to
the real positions) and memoized per node, so a program costs one numpy operation per node: a count is
a cumulative sum, a local count a sum of shifted copies. ``And`` short-circuits when its left operand
is false everywhere, which keeps programs with one disjunct per pair of symbols (unique copy's
induction head) affordable on long inputs.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

PERIODIC, LOCAL = "periodic", "local"
_PAD = "\x00<pad>"  # never a real token


# ----------------------------------------------------------------------------------------------------
# Nodes. eq=False: nodes hash by identity, so the evaluator's memo is cheap and shared sub-programs
# (a `let`) are evaluated once.


class Expr:
    """A C-RASP operation. Subclasses: :class:`BoolExpr` and :class:`CountExpr`."""

    def children(self) -> tuple[Expr, ...]:
        """The operands: every dataclass field holding an expression (cached per node class)."""
        cls = type(self)
        if "_operand_fields" not in cls.__dict__:
            cls._operand_fields = tuple(
                f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), Expr)
            )
        return tuple(getattr(self, name) for name in cls._operand_fields)

    def needed(self, ev: Evaluator) -> tuple[Expr, ...]:
        """Operands that must be evaluated before this node (all of them, except for ``And``)."""
        return self.children()

    def _eval(self, ev: Evaluator) -> np.ndarray:
        raise NotImplementedError


class BoolExpr(Expr):
    def __and__(self, other: BoolExpr) -> BoolExpr:
        return And(self, other)

    def __or__(self, other: BoolExpr) -> BoolExpr:
        return Or(self, other)

    def __invert__(self) -> BoolExpr:
        return Not(self)


class CountExpr(Expr):
    def __add__(self, other: CountExpr | int) -> CountExpr:
        return Add(self, _count(other))

    def __radd__(self, other: int) -> CountExpr:
        return Add(_count(other), self)

    def __sub__(self, other: CountExpr | int) -> CountExpr:
        return Sub(self, _count(other))

    def __le__(self, other: CountExpr | int) -> BoolExpr:
        return Cmp("≤", self, _count(other))

    def __lt__(self, other: CountExpr | int) -> BoolExpr:
        return Cmp("<", self, _count(other))

    def __ge__(self, other: CountExpr | int) -> BoolExpr:
        return Cmp("≥", self, _count(other))

    def __gt__(self, other: CountExpr | int) -> BoolExpr:
        return Cmp(">", self, _count(other))


def _count(x: CountExpr | int) -> CountExpr:
    if isinstance(x, CountExpr):
        return x
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return Const(int(x))
    raise TypeError(f"expected a count or an int, got {x!r}")


@dataclass(frozen=True, eq=False)
class Tok(BoolExpr):
    symbol: str

    def __str__(self) -> str:
        return f"Q_{self.symbol}(i)"

    def _eval(self, ev):
        sid = ev.symbol_ids.get(self.symbol)
        return ev.ids == sid if sid is not None else np.zeros(ev.ids.shape, dtype=bool)


@dataclass(frozen=True, eq=False)
class TrueExpr(BoolExpr):
    def __str__(self) -> str:
        return "⊤"

    def _eval(self, ev):
        return np.ones(ev.ids.shape, dtype=bool)


@dataclass(frozen=True, eq=False)
class Periodic(BoolExpr):
    """``i mod modulus ∈ residues``: a periodic predicate φ(i) = φ(i + modulus)."""

    modulus: int
    residues: tuple[int, ...]

    def __post_init__(self):
        if self.modulus < 1 or not all(0 <= r < self.modulus for r in self.residues):
            raise ValueError(f"periodic({self.modulus}, {self.residues}): residues must lie in [0, modulus)")

    def __str__(self) -> str:
        rs = self.residues
        return f"i ≡ {rs[0]} (mod {self.modulus})" if len(rs) == 1 else f"i mod {self.modulus} ∈ {set(rs)}"

    def _eval(self, ev):
        pos = np.arange(ev.ids.shape[1]) % self.modulus
        return np.broadcast_to(np.isin(pos, self.residues), ev.ids.shape)


@dataclass(frozen=True, eq=False)
class Not(BoolExpr):
    p: BoolExpr

    def __str__(self) -> str:
        return f"¬{_wrap(self.p)}"

    def _eval(self, ev):
        return ~ev.value(self.p)


@dataclass(frozen=True, eq=False)
class And(BoolExpr):
    p: BoolExpr
    q: BoolExpr

    def __str__(self) -> str:
        return f"{_wrap(self.p)} ∧ {_wrap(self.q)}"

    def needed(self, ev):
        # short-circuit: the right operand cannot change an all-false left operand
        if id(self.p) not in ev._memo:
            return (self.p,)
        return (self.q,) if ev.value(self.p).any() else ()

    def _eval(self, ev):
        left = ev.value(self.p)
        return left & ev.value(self.q) if left.any() else left


@dataclass(frozen=True, eq=False)
class Or(BoolExpr):
    p: BoolExpr
    q: BoolExpr

    def __str__(self) -> str:
        return f"{_wrap(self.p)} ∨ {_wrap(self.q)}"

    def _eval(self, ev):
        return ev.value(self.p) | ev.value(self.q)


@dataclass(frozen=True, eq=False)
class Cmp(BoolExpr):
    op: str
    c1: CountExpr
    c2: CountExpr

    _OPS: typing.ClassVar[dict] = {
        "≤": np.less_equal,
        "<": np.less,
        "≥": np.greater_equal,
        ">": np.greater,
        "=": np.equal,
        "≠": np.not_equal,
    }

    def __str__(self) -> str:
        return f"{_wrap(self.c1)} {self.op} {_wrap(self.c2)}"

    def _eval(self, ev):
        return self._OPS[self.op](ev.value(self.c1), ev.value(self.c2))


@dataclass(frozen=True, eq=False)
class Count(CountExpr):
    """``#[j ≤ i] P(j)``, or with ``local`` offsets ``#[j ≤ i, j ∈ {i−k : k ∈ local}] P(j)``."""

    p: BoolExpr
    local: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.local is not None and (not self.local or min(self.local) < 0):
            raise ValueError(f"local offsets {self.local} must be a non-empty tuple of ints >= 0")

    def __str__(self) -> str:
        body = _wrap(self.p).replace("(i)", "(j)").replace("i ≡", "j ≡").replace("i mod", "j mod")
        if self.local is None:
            return f"#[j≤i] {body}"
        rel = " ∨ ".join(f"j=i−{k}" if k else "j=i" for k in self.local)
        return f"#[j≤i, {rel}] {body}"

    def _eval(self, ev):
        p = ev.value(self.p)
        if self.local is None:
            return np.cumsum(p, axis=1, dtype=np.int64)
        out = np.zeros(p.shape, dtype=np.int64)
        T = p.shape[1]
        for k in self.local:
            if k < T:
                out[:, k:] += p[:, : T - k]  # position i sees j = i - k; none before the start
        return out


@dataclass(frozen=True, eq=False)
class Cond(CountExpr):
    p: BoolExpr
    c1: CountExpr
    c2: CountExpr

    def __str__(self) -> str:
        return f"({self.p} ? {self.c1} : {self.c2})"

    def _eval(self, ev):
        return np.where(ev.value(self.p), ev.value(self.c1), ev.value(self.c2))


@dataclass(frozen=True, eq=False)
class Add(CountExpr):
    c1: CountExpr
    c2: CountExpr

    def __str__(self) -> str:
        return f"{self.c1} + {_wrap(self.c2)}"

    def _eval(self, ev):
        return ev.value(self.c1) + ev.value(self.c2)


@dataclass(frozen=True, eq=False)
class Sub(CountExpr):
    c1: CountExpr
    c2: CountExpr

    def __str__(self) -> str:
        return f"{self.c1} − {_wrap(self.c2)}"

    def _eval(self, ev):
        return ev.value(self.c1) - ev.value(self.c2)


@dataclass(frozen=True, eq=False)
class Const(CountExpr):
    """An integer constant: the paper's constant 1, summed ``value`` times."""

    value: int

    def __str__(self) -> str:
        return str(self.value)

    def _eval(self, ev):
        return np.broadcast_to(np.int64(self.value), ev.ids.shape)  # a read-only view: no allocation


@dataclass(frozen=True, eq=False)
class Let(Expr):
    """A named definition: evaluates ``expr``, prints as ``name``; listings print ``name := expr``."""

    name: str
    expr: Expr

    def __str__(self) -> str:
        return self.name

    def _eval(self, ev):
        return ev.value(self.expr)


class LetBool(Let, BoolExpr):
    def __str__(self) -> str:
        return f"{self.name}(i)"  # a per-position predicate, read at j inside a count


class LetCount(Let, CountExpr):
    pass


def _wrap(e: Expr) -> str:
    """Parenthesize compound operands so printed programs parse unambiguously."""
    simple = isinstance(e, (Tok, TrueExpr, Const, Let, Count, Cond, Not))
    return str(e) if simple else f"({e})"


# ----------------------------------------------------------------------------------------------------
# Builders (the readable surface)

TRUE = TrueExpr()


def tok(symbol: str) -> BoolExpr:
    return Tok(symbol)


def periodic(modulus: int, residues: int | Iterable[int]) -> BoolExpr:
    rs = (residues,) if isinstance(residues, int) else tuple(sorted(set(residues)))
    return Periodic(modulus, rs)


def count(p: BoolExpr, local: Iterable[int] | None = None) -> CountExpr:
    return Count(p, None if local is None else tuple(local))


def cond(p: BoolExpr, c1: CountExpr | int, c2: CountExpr | int) -> CountExpr:
    return Cond(p, _count(c1), _count(c2))


def const(value: int) -> CountExpr:
    return Const(value)


def eq(c1: CountExpr | int, c2: CountExpr | int) -> BoolExpr:
    return Cmp("=", _count(c1), _count(c2))


def ne(c1: CountExpr | int, c2: CountExpr | int) -> BoolExpr:
    return Cmp("≠", _count(c1), _count(c2))


def any_of(ps: Iterable[BoolExpr]) -> BoolExpr:
    """P1 ∨ P2 ∨ …; an empty disjunction is false (¬⊤)."""
    out: BoolExpr | None = None
    for p in ps:
        out = p if out is None else Or(out, p)
    return out if out is not None else Not(TRUE)


def all_of(ps: Iterable[BoolExpr]) -> BoolExpr:
    """P1 ∧ P2 ∧ …; an empty conjunction is ⊤."""
    out: BoolExpr | None = None
    for p in ps:
        out = p if out is None else And(out, p)
    return out if out is not None else TRUE


def total(cs: Iterable[CountExpr]) -> CountExpr:
    """C1 + C2 + …; an empty sum is 0."""
    out: CountExpr | None = None
    for c in cs:
        out = c if out is None else Add(out, c)
    return out if out is not None else Const(0)


def let(name: str, expr: Expr) -> Expr:
    """Name a sub-program (shared: evaluated once per run, printed once in a listing)."""
    if isinstance(expr, BoolExpr):
        return LetBool(name, expr)
    if isinstance(expr, CountExpr):
        return LetCount(name, expr)
    raise TypeError(f"cannot name {expr!r}")


# ----------------------------------------------------------------------------------------------------
# Evaluation


class Evaluator:
    """Runs expressions on a batch of token sequences; values are (B, T) arrays, memoized per node."""

    def __init__(self, seqs: Sequence[Sequence[str]]):
        if not seqs:
            raise ValueError("no sequences")
        T = max(len(s) for s in seqs)
        symbols = sorted({t for s in seqs for t in s} | {_PAD})
        self.symbol_ids = {t: k for k, t in enumerate(symbols)}
        self.ids = np.full((len(seqs), T), self.symbol_ids[_PAD], dtype=np.int32)
        for b, s in enumerate(seqs):
            self.ids[b, : len(s)] = [self.symbol_ids[t] for t in s]
        self._memo: dict[int, tuple[Expr, np.ndarray]] = {}

    def __call__(self, e: Expr) -> np.ndarray:
        # Iterative post-order (programs built by chaining, e.g. a running rank over 500 symbols, are
        # deeper than Python's recursion limit): a node is evaluated once the operands it needs are.
        stack = [e]
        while stack:
            top = stack[-1]
            if id(top) in self._memo:
                stack.pop()
                continue
            missing = [c for c in top.needed(self) if id(c) not in self._memo]
            if missing:
                stack.extend(missing)
                continue
            # keep the node alive in the memo so its id is never reused within this evaluator
            self._memo[id(top)] = (top, top._eval(self))
            stack.pop()
        return self._memo[id(e)][1]

    def value(self, e: Expr) -> np.ndarray:
        """An operand's value inside ``_eval`` (already computed: ``needed`` asked for it)."""
        return self._memo[id(e)][1]


def run(e: Expr, seqs: Sequence[Sequence[str]]) -> np.ndarray:
    """Values of ``e`` at every position of every sequence: (B, T_max); pad positions are meaningless."""
    return Evaluator(seqs)(e)


def next_sets(program: Mapping[str, BoolExpr], seqs: Sequence[Sequence[str]]) -> list[list[frozenset[str]]]:
    """Run a generation program {symbol a: NEXT_a}; per sequence and position, the set of a where
    NEXT_a holds (the program's prediction of the legal / correct next tokens)."""
    ev = Evaluator(seqs)
    symbols = list(program)
    values = np.stack([ev(program[a]) for a in symbols])  # (n_symbols, B, T)
    out = []
    for b, s in enumerate(seqs):
        out.append([frozenset(symbols[k] for k in np.flatnonzero(values[:, b, i])) for i in range(len(s))])
    return out


# ----------------------------------------------------------------------------------------------------
# Inspection


def walk(roots: Iterable[Expr]) -> list[Expr]:
    """Every node reachable from roots, each once, children before parents."""
    seen: set[int] = set()
    order: list[Expr] = []
    stack: list[tuple[Expr, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        e, expanded = stack.pop()
        if expanded:
            order.append(e)
            continue
        if id(e) in seen:
            continue
        seen.add(id(e))
        stack.append((e, True))
        stack.extend((c, False) for c in reversed(e.children()))
    return order


def features(roots: Expr | Iterable[Expr]) -> frozenset[str]:
    """Which positional extensions a program uses: a subset of {"periodic", "local"}; empty = C-RASP."""
    roots = [roots] if isinstance(roots, Expr) else list(roots)
    out = set()
    for e in walk(roots):
        if isinstance(e, Periodic):
            out.add(PERIODIC)
        if isinstance(e, Count) and e.local is not None:
            out.add(LOCAL)
    return frozenset(out)


def size(roots: Expr | Iterable[Expr]) -> int:
    """Number of distinct operations (the straight-line program's length)."""
    return len(walk([roots] if isinstance(roots, Expr) else list(roots)))


def listing(program: Mapping[str, BoolExpr], max_next: int | None = None) -> str:
    """The program as text: named definitions in dependency order, then ``NEXT_a := …`` lines
    (at most ``max_next`` of them, for programs with one line per symbol of a large vocabulary)."""
    symbols = list(program)
    shown = symbols if max_next is None else symbols[:max_next]
    lines = [f"{e.name} := {e.expr}" for e in walk([program[a] for a in shown]) if isinstance(e, Let)]
    lines += [f"NEXT_{a} := {program[a]}" for a in shown]
    if len(shown) < len(symbols):
        lines.append(f"… ({len(symbols) - len(shown)} more NEXT lines, one per symbol)")
    return "\n".join(lines)
