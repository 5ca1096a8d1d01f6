"""Character-level tokenizer with special tokens.

Every character of a task string is one token, except two multi-character forms:
``[n]`` for maze node n (n = 1..64) and ``<name>`` for special tokens (``<bos>``, ``<eos>``, ``<pad>``,
``<sep>``) and task markers (``<reverse_add>``, ...). The characters ``<``, ``>``, ``[`` and ``]`` are
therefore never content.

The vocabulary is fixed and ordered: specials, characters, maze nodes, then one marker per registered
task (sorted by name; a task's input-distribution variant shares its marker), so the ids of specials,
characters and nodes never change when a task is added.

The dependency is one-way: this module reads the markers from the task registry
(``lengen.tasks.markers``) and re-exports the registry's token splitter (``lengen.tasks.split``); no task
imports the tokenizer.
"""

from __future__ import annotations

import string
from functools import lru_cache

from lengen.tasks import markers, split

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "SEP",
    "SPECIALS",
    "CHARS",
    "N_MAZE_NODES",
    "NODES",
    "Tokenizer",
    "default_tokenizer",
    "split",
]

PAD, BOS, EOS, SEP = "<pad>", "<bos>", "<eos>", "<sep>"
SPECIALS = (PAD, BOS, EOS, SEP)
CHARS = tuple(string.digits + string.ascii_lowercase + string.ascii_uppercase + "+-*=:;,?|._ ")
N_MAZE_NODES = 64
NODES = tuple(f"[{i}]" for i in range(1, N_MAZE_NODES + 1))


class Tokenizer:
    def __init__(self, tokens: list[str]):
        if len(set(tokens)) != len(tokens):
            raise ValueError("duplicate tokens in vocabulary")
        self.itos = list(tokens)
        self.stoi = {t: i for i, t in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.sep_id = (self.stoi[t] for t in SPECIALS)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[t] for t in split(text)]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """The project-wide vocabulary: specials, characters, maze nodes, task markers."""
    return Tokenizer(list(SPECIALS) + list(CHARS) + list(NODES) + markers())
