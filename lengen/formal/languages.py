"""The paper's 17 formal languages as finite automata: member strings at a requested length, and the
per-position targets (the set of legal next characters).

Task (Bhattamishra et al. 2020's character prediction, as in the paper): the model reads
``<bos> w`` for a member ``w`` and predicts, at each of the ``|w| + 1`` positions, the set of symbols
that can follow the prefix read so far inside the language — the characters ``σ`` such that
``prefix σ`` is still the prefix of a member, plus ``<eos>`` when the prefix itself is a member. A
string counts as correct only if every position's set is right (a multi-label prediction).

Every language here is regular (D-n is Dyck-1 with depth bounded by n), so one generic :class:`Dfa`
does the work: members of length n are drawn uniformly at random by counting accepted completions
(``counts[k][q]`` = number of accepted strings of length k from state q, in float64: only their
ratios matter, and no language here has more than 3^n members of length n ≤ 600), and the legal-next sets
come from which transitions stay *live* (can still reach acceptance). Worked example, D-2 (``(a (ab)* b)*``)::

    >>> lang = LANGUAGES["D-2"]
    >>> lang.legal_next("aab")
    [frozenset({'<eos>', 'a'}), frozenset({'a', 'b'}), frozenset({'b'}), frozenset({'a', 'b'})]

(after ``<bos>``: a or end; after ``a``: a or b; after ``aa``, depth 2: only b; after ``aab``: a or b.)

**Two targets differ from the official code (lacoco-lab/length_generalization, formal_lang_suite/generators),
on purpose, because the official targets contradict the official strings.** *Tomita-3* (no odd run of 1s
followed by an odd run of 0s): the official DFA lists its state "odd 1-run, then odd 0-run" (q3) among the
*dead* states, so after an odd run of 1s its target never allows a 0 — yet q3 is live (one more 0 makes the
0-run even), its own generator emits members such as ``100`` and ``10011``, and the model is then told that
the second character of ``100`` cannot occur. Here q3 is a rejecting but live state: after ``1``, 0, 1 and
``<eos>`` are legal, and after ``10`` only 0. ``{0,1,2}*02*`` (the last symbol other than 2 is a 0): the official target
(``ZOT_Z_T.output_generator``) allows ending only right after a 2, so after a string's final 0 it says "must
continue", although ``0``, ``120`` or any member whose 2-tail is empty is in the language and is produced by
its own generator (post length 0). Here ``<eos>`` is legal after every prefix whose last non-2 symbol is 0,
which is the regular expression's meaning. Every other language's targets equal the official ones at every
position. Both changes only make the targets agree with the languages' definitions; neither language has a
C-RASP[periodic, local] program (the prediction, ✗, is unchanged), and the official numbers on them
(Tomita-3 APE 60 / 8 / 0, ``{0,1,2}*02*`` APE 99.7 / 24 / 1.2) are failures either way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lengen.tokenizer import EOS, SPECIALS, Tokenizer

MAX_LENGTH = 600  # longest string the count tables cover (3**600 < float64 max: the ternary alphabet fits)


@dataclass(frozen=True)
class Dfa:
    """A DFA given by a transition function (None = the dead state), compiled to tables by BFS."""

    name: str
    alphabet: tuple[str, ...]
    start: Hashable
    step: Callable[[Hashable, str], Hashable | None] = field(repr=False)
    accepting: Callable[[Hashable], bool] = field(repr=False)

    kind = "language"

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        states, index, frontier = [self.start], {self.start: 0}, [self.start]
        while frontier:
            nxt = []
            for q in frontier:
                for a in self.alphabet:
                    r = self.step(q, a)
                    if r is not None and r not in index:
                        index[r] = len(states)
                        states.append(r)
                        nxt.append(r)
            frontier = nxt
        dead = len(states)  # one extra absorbing, rejecting state
        delta = np.full((dead + 1, len(self.alphabet)), dead, dtype=np.int64)
        for q in states:
            for k, a in enumerate(self.alphabet):
                r = self.step(q, a)
                if r is not None:
                    delta[index[q], k] = index[r]
        accept = np.array([self.accepting(q) for q in states] + [False])
        return delta, accept

    @property
    def delta(self) -> np.ndarray:
        return self._tables[0]  # (n_states, |alphabet|) next state; the last state is dead

    @property
    def accept(self) -> np.ndarray:
        return self._tables[1]  # (n_states,) bool

    @cached_property
    def counts(self) -> np.ndarray:
        """(MAX_LENGTH + 1, n_states): number of accepted strings of length k read from state q."""
        c = np.zeros((MAX_LENGTH + 1, len(self.accept)))
        c[0] = self.accept
        for k in range(1, MAX_LENGTH + 1):
            c[k] = c[k - 1][self.delta].sum(axis=1)
        return c

    @cached_property
    def live(self) -> np.ndarray:
        """(n_states,) bool: some accepted string is reachable from the state."""
        return self.counts.sum(axis=0) > 0

    # -- the task -------------------------------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.alphabet

    @property
    def outputs(self) -> tuple[str, ...]:
        """The multi-label targets: one per alphabet symbol, then <eos>."""
        return (*self.alphabet, EOS)

    def tokenizer(self) -> Tokenizer:
        return Tokenizer(list(SPECIALS) + list(self.alphabet))

    def lengths(self, lo: int, hi: int) -> list[int]:
        """The lengths in [lo, hi] (lo >= 1) that have at least one member."""
        return [n for n in range(max(lo, 1), min(hi, MAX_LENGTH) + 1) if self.counts[n, 0] > 0]

    def sample(self, rng: np.random.Generator, length: int, n: int = 1) -> list[str]:
        """n members of exactly this length, uniformly at random among all members of that length."""
        if not 0 < length <= MAX_LENGTH or self.counts[length, 0] == 0:
            raise ValueError(f"{self.name}: no member of length {length}")
        q = np.zeros(n, dtype=np.int64)
        chars = np.empty((n, length), dtype=np.int64)
        for t in range(length):
            w = self.counts[length - t - 1][self.delta[q]]  # (n, |alphabet|) completions per choice
            cum = np.cumsum(w, axis=1)
            k = (rng.random(n)[:, None] * cum[:, -1:] >= cum).sum(axis=1)
            chars[:, t] = k
            q = self.delta[q, k]
        return ["".join(self.alphabet[k] for k in row) for row in chars]

    def targets(self, w: str) -> np.ndarray:
        """(|w| + 1, |outputs|) bool: the legal next symbols after each prefix w[:i], i = 0..|w|."""
        out = np.zeros((len(w) + 1, len(self.alphabet) + 1), dtype=bool)
        q = 0
        for i in range(len(w) + 1):
            out[i, :-1] = self.live[self.delta[q]]
            out[i, -1] = self.accept[q]
            if i < len(w):
                q = self.delta[q, self.alphabet.index(w[i])]
        return out

    def targets_batch(self, words: list[str]) -> np.ndarray:
        """``targets`` of equally long words at once: (n, |w| + 1, |outputs|) bool."""
        n, L = len(words), len(words[0])
        chars = np.array([[self.alphabet.index(c) for c in w] for w in words], dtype=np.int64).reshape(n, L)
        out = np.zeros((n, L + 1, len(self.alphabet) + 1), dtype=bool)
        q = np.zeros(n, dtype=np.int64)
        for i in range(L + 1):
            out[:, i, :-1] = self.live[self.delta[q]]
            out[:, i, -1] = self.accept[q]
            if i < L:
                q = self.delta[q, chars[:, i]]
        return out

    def legal_next(self, w: str) -> list[frozenset[str]]:
        return [frozenset(s for s, ok in zip(self.outputs, row) if ok) for row in self.targets(w)]

    def is_member(self, w: str) -> bool:
        q = 0
        for ch in w:
            q = self.delta[q, self.alphabet.index(ch)]
        return bool(self.accept[q])


# ----------------------------------------------------------------------------------------------------
# The 17 languages. States are small tuples or ints; None is the dead state.


def dyck_depth(n: int) -> Dfa:
    """D-n = (a D-(n−1) b)*, D-0 = ε: balanced a/b strings whose depth never exceeds n."""
    return Dfa(
        f"D-{n}",
        ("a", "b"),
        0,
        lambda d, c: (d + 1 if d < n else None) if c == "a" else (d - 1 if d > 0 else None),
        lambda d: d == 0,
    )


def _tomita3(q, c):
    # q: "even" (no pending odd 1-run), "odd1" (inside an odd 1-run), "odd1_odd0" (odd 1-run then odd
    # 0-run: rejecting), "odd1_even0" (odd 1-run then even 0-run)
    table = {
        ("even", "0"): "even",
        ("even", "1"): "odd1",
        ("odd1", "1"): "even",
        ("odd1", "0"): "odd1_odd0",
        ("odd1_odd0", "0"): "odd1_even0",
        ("odd1_odd0", "1"): None,
        ("odd1_even0", "0"): "odd1_odd0",
        ("odd1_even0", "1"): "odd1",
    }
    return table[(q, c)]


def _blocks(letters: str) -> Callable:
    """a+b+c+…: state = index of the current block (0 = nothing read yet)."""

    def step(q, c):
        k = letters.index(c) + 1
        return k if k in (q, q + 1) else None

    return step


def _cycle(word: str) -> Callable:
    """(word)*: state = position inside the word."""
    return lambda q, c: (q + 1) % len(word) if word[q] == c else None


LANGUAGES: dict[str, Dfa] = {
    lang.name: lang
    for lang in (
        dyck_depth(2),
        dyck_depth(3),
        dyck_depth(4),
        dyck_depth(12),
        Dfa("Tomita-1", ("0", "1"), 0, lambda q, c: 0 if c == "1" else None, lambda q: True),  # 1*
        Dfa("Tomita-2", ("0", "1"), 0, _cycle("10"), lambda q: q == 0),  # (10)*
        Dfa("Tomita-3", ("0", "1"), "even", _tomita3, lambda q: q != "odd1_odd0"),  # no odd 1-run then odd 0-run
        Dfa(
            "Tomita-4", ("0", "1"), 0, lambda q, c: 0 if c == "1" else (q + 1 if q < 2 else None), lambda q: True
        ),  # no 000
        Dfa(
            "Tomita-5",
            ("0", "1"),
            (0, 0),
            lambda q, c: (1 - q[0], q[1]) if c == "0" else (q[0], 1 - q[1]),
            lambda q: q == (0, 0),
        ),  # even #0, #1
        Dfa(
            "Tomita-6", ("0", "1"), 0, lambda q, c: (q + 1) % 3 if c == "0" else (q - 1) % 3, lambda q: q == 0
        ),  # #0-#1 = 0 mod 3
        Dfa(
            "Tomita-7",
            ("0", "1"),
            0,
            lambda q, c: q + (int(c) != q % 2) if q + (int(c) != q % 2) < 4 else None,
            lambda q: True,
        ),  # 0*1*0*1*
        Dfa("aa*bb*cc*dd*ee*", tuple("abcde"), 0, _blocks("abcde"), lambda q: q == 5),
        Dfa(
            "{a,b}*d{b,c}*",
            tuple("abcd"),
            0,
            lambda q, c: (0 if c in "ab" else 1 if c == "d" else None) if q == 0 else (1 if c in "bc" else None),
            lambda q: q == 1,
        ),
        Dfa("(aa)*", ("a",), 0, _cycle("aa"), lambda q: q == 0),
        Dfa("(aaaa)*", ("a",), 0, _cycle("aaaa"), lambda q: q == 0),
        Dfa("(abab)*", ("a", "b"), 0, _cycle("abab"), lambda q: q == 0),
        Dfa(
            "{0,1,2}*02*", ("0", "1", "2"), 0, lambda q, c: 1 if c == "0" else 0 if c == "1" else q, lambda q: q == 1
        ),  # last non-2 is 0
    )
}
