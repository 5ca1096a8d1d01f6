"""Cross-task tests: registry, length errors, determinism, token bounds, vocabulary, docstrings.

Per-family correctness (independent checkers) lives in test_tasks_{arithmetic,strings,mazes,bits}.py.
"""

from __future__ import annotations

import doctest
import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lengen.tasks import TASKS, arithmetic, bits, get_task, mazes, strings
from lengen.tokenizer import CHARS, NODES, default_tokenizer, split

FAMILIES = {
    "arithmetic": ["reverse_add", "no_carry", "carry_only", "reverse_subtract", "cot_multiply", "copy_first_op"],
    "strings": ["copy", "capitalize", "reverse", "capitalize_reverse", "mqar"],
    "mazes": ["dfs_trace", "shortest_path", "dfs_trace_far", "shortest_path_far"],
    "bits": ["parity", "bin_majority"],
}
VARIANTS = {"dfs_trace_far": "dfs_trace", "shortest_path_far": "shortest_path"}  # same function, other inputs
ALL = [name for names in FAMILIES.values() for name in names]
# Longest lengths evaluated anywhere in the project, per task.
EVAL_MAX = dict.fromkeys(ALL, 512) | {"mqar": 62} | dict.fromkeys(FAMILIES["mazes"], 64)


def test_all_seventeen_registered_with_metadata():
    assert len(ALL) == 17 and sorted(TASKS) == sorted(ALL)
    for family, names in FAMILIES.items():
        for name in names:
            task = TASKS[name]
            assert task.name == name and task.family == family
            assert task.variant_of == VARIANTS.get(name)
            assert task.marker == f"<{VARIANTS.get(name, name)}>"
    assert get_task("mqar").max_length == 62 and get_task("mqar").length_unit == "pairs"
    for name in FAMILIES["mazes"]:
        t = get_task(name)
        assert (t.min_length, t.max_length, t.length_unit) == (2, 64, "nodes")
    for name in FAMILIES["arithmetic"]:
        assert get_task(name).max_length is None and get_task(name).length_unit == "digits"
    for name in FAMILIES["bits"]:
        t = get_task(name)
        assert (t.min_length, t.max_length, t.length_unit) == (5, None, "bits")


def test_unknown_task_names_known_ones():
    with pytest.raises(ValueError, match="nope") as info:
        get_task("nope")
    for name in ALL:
        assert name in str(info.value)


@pytest.mark.parametrize("name", ALL)
def test_length_zero_rejected(name):
    with pytest.raises(ValueError, match=r"\b0\b"):
        get_task(name).sample(random.Random(0), 0)


@pytest.mark.parametrize(
    "name,length",
    [
        ("dfs_trace", 65),
        ("shortest_path", 65),
        ("dfs_trace", 1),
        ("shortest_path", 1),
        ("mqar", 63),
        ("dfs_trace_far", 65),
        ("shortest_path_far", 1),
        ("parity", 4),
        ("bin_majority", 4),
    ],
)
def test_length_out_of_range_rejected(name, length):
    with pytest.raises(ValueError, match=rf"\b{length}\b"):
        get_task(name).sample(random.Random(0), length)


@pytest.mark.parametrize("name", ALL)
def test_deterministic_given_seed(name):
    for length in (1, 2, 7, EVAL_MAX[name]):
        length = max(length, get_task(name).min_length)
        a = get_task(name).sample(random.Random(1234), length)
        b = get_task(name).sample(random.Random(1234), length)
        assert a == b
    # ... and the seed matters (at a length where a collision is astronomically unlikely).
    outs = {get_task(name).sample(random.Random(s), EVAL_MAX[name]) for s in range(5)}
    assert len(outs) == 5


@pytest.mark.parametrize("name", ALL)
def test_generator_uses_only_its_rng(name):
    """Interleaving draws from the global `random` module must not change the result."""
    task = get_task(name)
    length = min(10, EVAL_MAX[name])
    random.seed(1)
    a = task.sample(random.Random(7), length)
    random.seed(2)
    random.random()
    b = task.sample(random.Random(7), length)
    assert a == b


CONTENT_TOKENS = set(CHARS) | set(NODES)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), name=st.sampled_from(ALL), seed=st.integers(0, 2**64 - 1))
def test_max_tokens_bound_and_vocab(data, name, seed):
    task = get_task(name)
    hi = EVAL_MAX[name]
    length = data.draw(st.integers(task.min_length, min(hi, 40)) | st.integers(task.min_length, hi) | st.just(hi))
    ex = task.sample(random.Random(seed), length)
    p, t = split(ex.prompt), split(ex.target)
    assert len(p) + len(t) <= task.max_tokens(length)
    assert ex.prompt.endswith("=") and ex.target
    # Every token is a content token (a character or a maze node), never a special or a marker.
    assert set(p) <= CONTENT_TOKENS and set(t) <= CONTENT_TOKENS
    tok = default_tokenizer()
    assert tok.decode(tok.encode(ex.prompt + ex.target)) == ex.prompt + ex.target


@pytest.mark.parametrize("name", ALL)
def test_max_tokens_bound_at_longest_length(name):
    task = get_task(name)
    length = EVAL_MAX[name]
    worst = max(
        len(split(ex.prompt)) + len(split(ex.target))
        for ex in (task.sample(random.Random(s), length) for s in range(50))
    )
    assert worst <= task.max_tokens(length)


def test_markers_in_vocabulary():
    tok = default_tokenizer()
    for name in ALL:
        assert len(tok.encode(get_task(name).marker)) == 1


def test_variants_leave_the_vocabulary_unchanged():
    """A variant shares its base task's marker: no new token, so every model's embedding -- and with it
    every initialization and every number trained before the variant existed -- stays as it was."""
    tok = default_tokenizer()
    markers = [t for t in tok.itos if t.startswith("<") and t not in ("<pad>", "<bos>", "<eos>", "<sep>")]
    assert markers == [f"<{n}>" for n in sorted(set(ALL) - set(VARIANTS))]
    assert len(tok) == 4 + len(CHARS) + len(NODES) + 15 == 157
    for name in VARIANTS:
        assert f"<{name}>" not in tok.stoi


def test_variant_of_must_name_a_registered_task():
    from lengen.tasks.base import Task, register

    task = get_task("shortest_path_far")
    with pytest.raises(ValueError, match="variant_of 'nope' is not registered"):
        register(
            Task(name="new_name", family="mazes", generate=task.generate, max_tokens=task.max_tokens, variant_of="nope")
        )
    assert "new_name" not in TASKS


@pytest.mark.parametrize("module", [arithmetic, strings, mazes, bits])
def test_doctests(module):
    """The worked examples in the modules' docstrings are executable and hold."""
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


WORKED = re.compile(r"``([^`]+=)`` -> ``([^`]+)``")


@pytest.mark.parametrize("name", ALL)
def test_every_generator_documents_a_worked_example(name):
    doc = get_task(name).generate.__doc__ or ""
    assert WORKED.search(doc), f"{name}: docstring lacks a ``prompt=`` -> ``target`` example"
