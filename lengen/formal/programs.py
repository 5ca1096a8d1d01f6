"""C-RASP programs for the tasks the paper labels expressible, and the reasons for those it does not.

A *generation* program is ``{a: NEXT_a}``: at every supervised position, ``NEXT_a(i)`` must hold
exactly for the correct next token(s) — the answer token (or ``<eos>``) for algorithmic tasks, every
legal next symbol (and ``<eos>`` iff the prefix is a member) for languages. The programs run on the
full token sequence ``<bos> …`` with :mod:`lengen.crasp`; ``tests/test_crasp.py`` checks each against
the task's own generator on thousands of random inputs up to length ≥ 500.

Two fragments (``programs(task, pe)``): APE = C-RASP[periodic, local], NoPE = plain C-RASP (no
``periodic`` predicates, no ``local`` counts; ``crasp.features`` of a NoPE program is empty).

:data:`PAPER_LABELS` is the paper's classification (reference table); :data:`NOT_EXPRESSIBLE` holds,
as data, the reason the paper gives where no program exists. One deliberate addition: the paper labels
unique copy NoPE ✗ ("needs an induction head"), but a plain C-RASP program exists under the definition
used here — locate each token by *counting the positions before its first occurrence* and compare
those counts — so :func:`unique_copy_first_occurrence` is included and flagged (``BEYOND_PAPER``).
The guarantee is for one fixed program at every length, and unique copy's inputs are L distinct tokens,
so this program (one branch per vocabulary token) must grow with the length: the formal stage scores
the pair by the paper's ✗ and shows the program beside it (``report.predicted_vs_observed``'s
``program`` column); the paper observes 18% / 0%. docs/formal.md discusses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache

import numpy as np

from lengen.crasp import TRUE, BoolExpr, Evaluator, all_of, any_of, cond, count, eq, features, let, periodic, tok, total
from lengen.formal.algorithmic import LETTERS, big_vocab, make_tasks
from lengen.formal.languages import LANGUAGES
from lengen.tokenizer import BOS, EOS, SEP

Program = Mapping[str, BoolExpr]
FRAGMENTS = {"ape": "C-RASP[periodic, local]", "nope": "C-RASP"}

# The paper's labels: (APE, NoPE) expressible?
PAPER_LABELS: dict[str, tuple[bool, bool]] = {
    "bin_majority": (True, True),
    "majority": (True, True),
    "bin_majority_interleave": (True, False),
    "unique_copy": (True, False),
    "repeat_copy": (False, False),
    "sort": (True, True),
    "parity": (False, False),
    "addition": (False, False),
    "D-2": (True, True),
    "D-3": (True, True),
    "D-4": (True, True),
    "D-12": (True, True),
    "Tomita-1": (True, True),
    "Tomita-2": (True, True),
    "Tomita-3": (False, False),
    "Tomita-4": (True, False),
    "Tomita-5": (False, False),
    "Tomita-6": (False, False),
    "Tomita-7": (True, True),
    "aa*bb*cc*dd*ee*": (True, True),
    "{a,b}*d{b,c}*": (True, True),
    "(aa)*": (True, False),
    "(aaaa)*": (True, False),
    "(abab)*": (True, False),
    "{0,1,2}*02*": (False, False),
}

_COMM = (
    "communication complexity (paper §5): a C-RASP[periodic, local] program, split between two "
    "halves of the input, needs only O(log n) bits of communication, but "
)
_MOD = (
    "a modular count over an unbounded window: C-RASP compares counts but cannot take them modulo "
    "a constant, and periodic predicates see absolute positions, not counts of symbols; "
)
NOT_EXPRESSIBLE: dict[tuple[str, str], str] = {
    **{
        (t, pe): r
        for pe in ("ape", "nope")
        for t, r in {
            "repeat_copy": _COMM + "copying a string with repeated tokens lets the second half recover all n "
            "bits of the first (Ω(n) communication).",
            "parity": _COMM + "parity also needs Ω(n) communication in this model (the paper's proof); with no "
            "positional shortcut it is the classic unlearnable case.",
            "addition": _COMM + "most-significant-bit-first addition: each output bit depends on a carry "
            "from arbitrarily far to the right (Ω(n) communication).",
            "Tomita-3": _MOD + "legality needs the parity of the current runs of 1s and 0s.",
            "Tomita-5": _MOD + "<eos> is legal iff #0 and #1 are both even.",
            "Tomita-6": _MOD + "<eos> is legal iff #0 − #1 ≡ 0 (mod 3).",
            "{0,1,2}*02*": "<eos> is legal iff the last symbol other than 2 is 0: that symbol is unboundedly "
            "far back (not local) and counts cannot single out the last occurrence.",
        }.items()
    },
    ("bin_majority_interleave", "nope"): "a bit's stream is its position mod 3: a periodic predicate, "
    "absent without positional encoding.",
    ("unique_copy", "nope"): "the paper: copying needs an induction head, i.e. the predecessor relation "
    "(local), absent without positional encoding. (But see BEYOND_PAPER.)",
    ("Tomita-4", "nope"): "forbidding 000 needs the two previous symbols: the predecessor relation (local).",
    ("(aa)*", "nope"): "<eos> is legal iff the length is even: position mod 2 (periodic).",
    ("(aaaa)*", "nope"): "<eos> is legal iff the length is a multiple of 4: position mod 4 (periodic).",
    ("(abab)*", "nope"): "<eos> is legal iff the length is a multiple of 4: position mod 4 (periodic).",
}
BEYOND_PAPER = {
    ("unique_copy", "nope"): "first-occurrence counting: a plain C-RASP program of size "
    "O(|vocabulary|), verified like the others; the paper labels ✗."
}


# ----------------------------------------------------------------------------------------------------
# Algorithmic tasks. after_sep(i): the <sep> is at or before i, so input tokens are where it is false.


def _after_sep() -> BoolExpr:
    return let("after_sep", count(tok(SEP)) >= 1)


def majority_program(symbols: tuple[str, ...]) -> Program:
    """NEXT_a at <sep>: a occurs in the input more often than every other symbol (plain C-RASP)."""
    after_sep = _after_sep()
    n = {a: let(f"n_{a}", count(tok(a) & ~after_sep)) for a in symbols}
    prog = {a: tok(SEP) & all_of(n[a] > n[b] for b in symbols if b != a) for a in symbols}
    prog[EOS] = after_sep & ~tok(SEP)
    return prog


def interleave_program(period: int = 3) -> Program:
    """Stream r's bits sit at positions ≡ r + 1 (mod period) (<bos> is position 0); the r-th answer
    token (k = answer tokens already produced) is stream r's majority. Needs ``periodic``."""
    after_sep = _after_sep()
    k = let("k", count(after_sep) - 1)  # 0 at <sep>, 1 at the first answer token, …
    n = {
        (bit, r): let(f"n{bit}_stream{r}", count(tok(bit) & ~after_sep & periodic(period, (r + 1) % period)))
        for bit in "01"
        for r in range(period)
    }
    prog: dict[str, BoolExpr] = {
        bit: any_of(eq(k, r) & (n[bit, r] > n[other, r]) for r in range(period))
        for bit, other in (("1", "0"), ("0", "1"))
    }
    prog[EOS] = eq(k, period)
    return prog


def unique_copy_induction(symbols: tuple[str, ...]) -> Program:
    """The induction head: the next token is the one whose *predecessor* (local offset 1) in the input
    is the current token; after <sep>, the one preceded by <bos>; <eos> after the token preceding <sep>.
    One disjunct per (current, next) pair: size O(|vocabulary|²)."""
    prev = {s: let(f"prev_{s}", count(tok(s), local=(1,)) >= 1) for s in (*symbols, BOS)}

    def follows(a: str, s: str) -> BoolExpr:  # a occurred right after s, at or before i
        return count(tok(a) & prev[s]) >= 1

    prog = {a: any_of([tok(SEP) & follows(a, BOS), *(tok(s) & follows(a, s) for s in symbols)]) for a in symbols}
    prog[EOS] = any_of(tok(s) & follows(SEP, s) for s in symbols)
    return prog


def unique_copy_first_occurrence(symbols: tuple[str, ...]) -> Program:
    """Plain C-RASP (no positions): first(s) = #[j≤i] (#[k≤j] Q_s(k) = 0) counts the positions before
    s first occurs, i.e. s's index in the input; cur = first(current token) (0 at <sep>, standing for
    <bos>); the next token a is the one with first(a) = cur + 1, <eos> when that is <sep>."""
    first = {s: let(f"first_{s}", count(count(tok(s)) <= 0)) for s in (*symbols, SEP)}
    cur = let("cur", total(cond(tok(s), first[s], 0) for s in symbols))
    prog = {a: eq(first[a], cur + 1) for a in symbols}
    prog[EOS] = eq(first[SEP], cur + 1)
    return prog


def sort_program(symbols: tuple[str, ...]) -> Program:
    """rank_b = number of input tokens ≤ b (a running sum over the ordered vocabulary); the next token
    is the input token whose rank is one more than the current token's (0 at <sep>); <eos> once the
    current token has the largest rank. Plain C-RASP."""
    after_sep = _after_sep()
    present = {b: let(f"in_{b}", count(tok(b) & ~after_sep) >= 1) for b in symbols}
    rank, running = {}, None
    for b in symbols:
        step = cond(present[b], 1, 0)
        running = let(f"rank_{b}", step if running is None else running + step)
        rank[b] = running
    cur = let("cur", total(cond(tok(s), rank[s], 0) for s in symbols))
    prog = {a: present[a] & eq(rank[a], cur + 1) for a in symbols}
    prog[EOS] = ~tok(SEP) & eq(cur, rank[symbols[-1]])
    return prog


# ----------------------------------------------------------------------------------------------------
# Languages. Input <bos> w; position i has read w[:i]; NEXT_σ for σ in the alphabet and <eos>.


def dyck_depth_program(n: int) -> Program:
    depth = let("depth", count(tok("a")) - count(tok("b")))
    return {"a": depth < n, "b": depth > 0, EOS: eq(depth, 0)}


def _prev(s: str) -> BoolExpr:
    return let(f"prev_{s}", count(tok(s), local=(1,)) >= 1)


def _seen(s: str) -> BoolExpr:
    return let(f"seen_{s}", count(tok(s)) >= 1)


def tomita7_program() -> Program:
    """0*1*0*1*: 0 is illegal once a 1 has followed a 0 that followed a 1 (nested counts)."""
    zero_after_one = let("zero_after_one", count(tok("0") & _seen("1")) >= 1)
    last_block = let("one_after_that", count(tok("1") & zero_after_one) >= 1)
    return {"0": ~last_block, "1": TRUE, EOS: TRUE}


def blocks_program(letters: str = "abcde") -> Program:
    """a+b+c+d+e+: only the current token matters (stay in the block or start the next)."""
    prog = {c: tok(BOS if k == 0 else letters[k - 1]) | tok(c) for k, c in enumerate(letters)}
    prog[EOS] = tok(letters[-1])
    return prog


def language_programs() -> dict[tuple[str, str], Program]:
    d_seen = _seen("d")
    plain = {
        **{f"D-{n}": dyck_depth_program(n) for n in (2, 3, 4, 12)},
        "Tomita-1": {"0": ~TRUE, "1": TRUE, EOS: TRUE},
        "Tomita-2": {"0": tok("1"), "1": ~tok("1"), EOS: ~tok("1")},
        "Tomita-7": tomita7_program(),
        "aa*bb*cc*dd*ee*": blocks_program(),
        "{a,b}*d{b,c}*": {"a": ~d_seen, "b": TRUE, "c": d_seen, "d": ~d_seen, EOS: d_seen},
    }
    positional = {
        "Tomita-4": {"0": ~(tok("0") & _prev("0")), "1": TRUE, EOS: TRUE},
        "(aa)*": {"a": TRUE, EOS: periodic(2, 0)},
        "(aaaa)*": {"a": TRUE, EOS: periodic(4, 0)},
        "(abab)*": {"a": periodic(2, 0), "b": periodic(2, 1), EOS: periodic(4, 0)},
    }
    out = {(name, pe): prog for name, prog in plain.items() for pe in ("ape", "nope")}
    out.update({(name, "ape"): prog for name, prog in positional.items()})
    return out


# ----------------------------------------------------------------------------------------------------
# Registry


def algorithmic_programs(vocab_size: int) -> dict[tuple[str, str], Callable[[], Program]]:
    big = big_vocab(vocab_size)
    return {
        ("bin_majority", "ape"): lambda: majority_program(("0", "1")),
        ("bin_majority", "nope"): lambda: majority_program(("0", "1")),
        ("majority", "ape"): lambda: majority_program(LETTERS),
        ("majority", "nope"): lambda: majority_program(LETTERS),
        ("bin_majority_interleave", "ape"): interleave_program,
        ("unique_copy", "ape"): lambda: unique_copy_induction(big),
        ("unique_copy", "nope"): lambda: unique_copy_first_occurrence(big),
        ("sort", "ape"): lambda: sort_program(big),
        ("sort", "nope"): lambda: sort_program(big),
    }


@lru_cache(maxsize=64)
def program(task: str, pe: str, vocab_size: int = 150) -> Program | None:
    """The program for (task, positional encoding), or None where none exists (see ``reason``).
    ``vocab_size`` is unique copy's / sort's vocabulary."""
    if pe not in FRAGMENTS:
        raise ValueError(f"pe={pe!r} must be one of {sorted(FRAGMENTS)}")
    if task not in PAPER_LABELS:
        raise KeyError(f"unknown task {task!r}")
    langs = language_programs()
    if (task, pe) in langs:
        return langs[(task, pe)]
    build = algorithmic_programs(vocab_size).get((task, pe))
    return build() if build else None


def reason(task: str, pe: str) -> str | None:
    """Why no program exists (the paper's argument), or None when one does."""
    return NOT_EXPRESSIBLE.get((task, pe)) if program(task, pe) is None else None


def fits_fragment(prog: Program, pe: str) -> bool:
    """A NoPE program may use neither periodic predicates nor local counts."""
    return pe == "ape" or not features(list(prog.values()))


TASK_NAMES = tuple(PAPER_LABELS)
assert set(LANGUAGES) <= set(TASK_NAMES)


# ----------------------------------------------------------------------------------------------------
# Verification against the task's own generator


def expected(
    task: str, symbols: list[str], length: int, rng, n: int, vocab_size: int = 150
) -> tuple[list[list[str]], np.ndarray, np.ndarray]:
    """n random sequences of the task at this length, as the program sees them; ``want``
    (|symbols|, n, T): symbol a is a correct next token at position i; ``supervised`` (n, T): the
    positions that are checked (from <sep> on for algorithmic tasks, every position for languages)."""
    if task in LANGUAGES:
        lang = LANGUAGES[task]
        words = lang.sample(np.random.default_rng(rng.getrandbits(32)), length, n)
        targets = lang.targets_batch(words)  # (n, length + 1, |outputs|)
        want = targets[..., [lang.outputs.index(a) for a in symbols]].transpose(2, 0, 1)
        return [[BOS, *w] for w in words], want, np.ones(targets.shape[:2], dtype=bool)
    t = make_tasks(vocab_size)[task]
    examples = [t.sample(rng, length) for _ in range(n)]
    seqs = [t.sequence(ex) for ex in examples]
    T = max(len(s) for s in seqs)
    index = {a: k for k, a in enumerate(symbols)}
    want = np.zeros((len(symbols), n, T), dtype=bool)
    supervised = np.zeros((n, T), dtype=bool)
    for b, (ex, seq) in enumerate(zip(examples, seqs)):
        for i in range(t.answer_start(ex), len(seq) - 1):  # position i predicts token i + 1
            want[index[seq[i + 1]], b, i] = True
            supervised[b, i] = True
    return seqs, want, supervised


def count_mismatches(
    task: str, pe: str, length: int, rng, n: int, vocab_size: int = 150, prog: Program | None = None
) -> int:
    """Run the program (default: this task's for ``pe``) on n random inputs of this length; the number
    of supervised positions where {a : NEXT_a(i)} differs from the correct next-token set."""
    prog = prog if prog is not None else program(task, pe, vocab_size)
    symbols = list(prog)
    seqs, want, supervised = expected(task, symbols, length, rng, n, vocab_size)
    ev = Evaluator(seqs)
    got = np.stack([ev(prog[a]) for a in symbols])[:, :, : want.shape[2]]
    return int(((got != want).any(axis=0) & supervised).sum())
