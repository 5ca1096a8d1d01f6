"""The task interface and registry.

A task is a *pure* generator ``(rng, length) -> Example``: all randomness comes from the
``random.Random`` it is handed, so the same seed gives the same example. ``Example.prompt`` is the
task's input up to and including its separator ``=``; ``Example.target`` is the answer. Neither carries
BOS, the task marker or EOS: ``lengen.data.format_example`` adds those, one formatter for training and
evaluation.

Token syntax inside prompt/target strings: every character is a token, except ``[n]`` (a maze node,
one token) and ``<name>`` (a special token or task marker); :func:`split` cuts a string into them. The
syntax lives here, not in ``lengen.tokenizer``, so the dependency is one-way: the tokenizer builds its
vocabulary from this registry (:func:`markers`), and no task imports the tokenizer.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass

_TOKEN_RE = re.compile(r"\[\d+\]|<[a-z0-9_]+>|.", re.DOTALL)


def split(text: str) -> list[str]:
    """Split a task string into tokens: ``'[3]:[4];'`` -> ``['[3]', ':', '[4]', ';']``."""
    return _TOKEN_RE.findall(text)


@dataclass(frozen=True)
class Example:
    prompt: str  # the task's input, ending in its separator "=" (no BOS / marker)
    target: str  # the answer (no EOS)


@dataclass(frozen=True)
class Task:
    """A registered task.

    name:        registry key; the task marker token is ``<name>``.
    family:      "arithmetic" | "strings" | "mazes" | ... (for grouping in reports).
    generate:    pure generator ``(rng: random.Random, length: int) -> Example``.
    max_tokens:  upper bound on ``len(tokens(prompt)) + len(tokens(target))`` at a length; used to
                 check that every evaluation length fits the model's position range before compute.
    max_length:  largest length the task can produce (maze grid: 64 nodes), None if unbounded.
    length_unit: what "length" counts, for axis labels ("digits", "characters", "nodes").
    variant_of:  for a task that computes the same function as another on a different input
                 distribution (``shortest_path_far``), that task's name: the two share one marker, so
                 adding a variant leaves the vocabulary -- and every model's initialization -- unchanged.
    chance:      exact match of a guess that ignores the input: 1 / the number of answers for a task
                 that answers one of a fixed few tokens (parity: 0.5), else 0.
    """

    name: str
    family: str
    generate: Callable[[random.Random, int], Example]
    max_tokens: Callable[[int], int]
    max_length: int | None = None
    min_length: int = 1
    length_unit: str = "characters"
    variant_of: str | None = None
    chance: float = 0.0

    @property
    def marker(self) -> str:
        return f"<{self.variant_of or self.name}>"

    def check_length(self, length: int) -> None:
        """Raise ValueError naming the length and the allowed range if the task cannot make it."""
        hi = "∞" if self.max_length is None else str(self.max_length)
        if not isinstance(length, int) or isinstance(length, bool):
            raise ValueError(f"task {self.name!r}: length must be an int, got {length!r}")
        if length < self.min_length or (self.max_length is not None and length > self.max_length):
            raise ValueError(
                f"task {self.name!r}: length {length} is out of range; allowed {self.min_length}..{hi} "
                f"({self.length_unit})"
            )

    def sample(self, rng: random.Random, length: int) -> Example:
        self.check_length(length)
        return self.generate(rng, length)


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"task {task.name!r} is registered twice")
    if task.variant_of is not None and task.variant_of not in TASKS:
        raise ValueError(f"task {task.name!r}: variant_of {task.variant_of!r} is not registered (yet)")
    TASKS[task.name] = task
    return task


def markers() -> list[str]:
    """The task-marker tokens, one per registered task that is not a variant, sorted by task name.

    A variant (``Task.variant_of``) shares its base task's marker, so adding one leaves this list -- and
    the vocabulary built from it -- unchanged. E.g. ``['<capitalize>', '<capitalize_reverse>', ...]``.
    """
    return [TASKS[name].marker for name in sorted(TASKS) if TASKS[name].variant_of is None]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None
