"""The 8 algorithmic generators and the 17 languages, checked by independent implementations
(Counter / int / sorted for the tasks; regular expressions with partial matching, or direct predicates
plus brute-force completion, for the languages); and the batches built from them."""

import itertools
import random
from collections import Counter

import numpy as np
import pytest
import regex
import torch

from lengen.data import IGNORE
from lengen.formal import data
from lengen.formal.algorithmic import ALGORITHMIC, make_tasks
from lengen.formal.languages import LANGUAGES


def check_answer(name: str, inp: tuple, ans: tuple) -> bool:
    """The correct answer, computed without the generators' code."""
    if name == "bin_majority":
        c = Counter(inp)
        return c["0"] != c["1"] and ans == (max("01", key=c.__getitem__),)
    if name == "majority":
        (top, k), *rest = Counter(inp).most_common()
        return (not rest or rest[0][1] < k) and ans == (top,)
    if name == "bin_majority_interleave":
        streams = [inp[r::3] for r in range(3)]
        return (
            len(inp) % 3 == 0
            and ans == tuple("1" if s.count("1") > s.count("0") else "0" for s in streams)
            and all(s.count("1") != s.count("0") for s in streams)
        )
    if name == "unique_copy":
        return len(set(inp)) == len(inp) and ans == inp
    if name == "repeat_copy":
        return set(inp) <= {"a", "b"} and ans == inp
    if name == "sort":
        return len(set(inp)) == len(inp) and ans == tuple(sorted(inp, key=lambda t: int(t[1:-1])))
    if name == "parity":
        return ans == ("e" if inp.count("1") % 2 == 0 else "o",)
    if name == "addition":
        a, b = "".join(inp[:-1]).split("+")
        return (
            inp[-1] == "="
            and (a == "0" or a[0] == "1")
            and (b == "0" or b[0] == "1")
            and int("".join(ans), 2) == int(a, 2) + int(b, 2)
            and (ans == ("0",) or ans[0] == "1")
        )
    raise KeyError(name)


@pytest.mark.parametrize("name", list(ALGORITHMIC))
def test_generators_give_correct_answers_and_lengths(name):
    task, rng = ALGORITHMIC[name], random.Random(0)
    for length in task.lengths(1, 150)[::7] + [task.lengths(1, 150)[-1]]:
        for _ in range(20):
            ex = task.sample(rng, length)
            assert len(ex.input) == length and check_answer(name, ex.input, ex.answer), (length, ex)
            assert len(task.sequence(ex)) <= task.max_tokens(length)
            assert set(ex.input) | set(ex.answer) <= set(task.symbols)


def test_lengths_respect_each_tasks_constraints():
    assert ALGORITHMIC["bin_majority_interleave"].lengths(1, 10) == [3, 6, 9]
    assert ALGORITHMIC["addition"].lengths(1, 6) == [4, 5, 6]
    with pytest.raises(ValueError):
        ALGORITHMIC["bin_majority_interleave"].sample(random.Random(0), 4)
    big = make_tasks(600)["unique_copy"].sample(random.Random(0), 500)
    assert len(set(big.input)) == 500


def test_the_format_is_bos_input_sep_answer_eos():
    ex = ALGORITHMIC["parity"].sample(random.Random(0), 5)
    seq = ALGORITHMIC["parity"].sequence(ex)
    assert seq[0] == "<bos>" and seq[6] == "<sep>" and seq[-1] == "<eos>" and seq[7] in ("e", "o")
    assert ALGORITHMIC["parity"].answer_start(ex) == 6


# ----------------------------------------------------------------------------------------------------
# Languages: an independent definition each. REGEX: `regex` partial matching answers "is this a
# prefix of a member?"; PREDICATE: membership by a direct rule, prefixes by brute-force completion.


def dyck(n: int) -> str:
    inner = ""
    for _ in range(n):
        inner = f"(?:a{inner}b)*"
    return inner


REGEX = {
    "D-2": dyck(2),
    "D-3": dyck(3),
    "D-4": dyck(4),
    "D-12": dyck(12),
    "Tomita-1": "1*",
    "Tomita-2": "(?:10)*",
    "Tomita-4": "(?:0{0,2}1)*0{0,2}",
    "Tomita-5": "(?:00|11|(?:01|10)(?:00|11)*(?:01|10))*",
    "Tomita-7": "0*1*0*1*",
    "aa*bb*cc*dd*ee*": "a+b+c+d+e+",
    "{a,b}*d{b,c}*": "[ab]*d[bc]*",
    "(aa)*": "(?:aa)*",
    "(aaaa)*": "(?:aaaa)*",
    "(abab)*": "(?:abab)*",
    "{0,1,2}*02*": "[012]*02*",
}


def tomita3(w: str) -> bool:
    """No odd-length run of 1s immediately followed by an odd-length run of 0s (maximal runs)."""
    runs = [(ch, len(list(g))) for ch, g in itertools.groupby(w)]
    return not any(a[0] == "1" and a[1] % 2 and b[0] == "0" and b[1] % 2 for a, b in itertools.pairwise(runs))


PREDICATE = {"Tomita-3": tomita3, "Tomita-6": lambda w: (w.count("0") - w.count("1")) % 3 == 0}


def legal_next_independent(name: str, alphabet, prefix: str) -> frozenset:
    if name in REGEX:
        pat = REGEX[name]
        legal = {c for c in alphabet if regex.fullmatch(pat, prefix + c, partial=True)}
        return frozenset(legal | ({"<eos>"} if regex.fullmatch(pat, prefix) else set()))
    member = PREDICATE[name]  # every prefix of these can be completed within 2 symbols
    legal = {
        c
        for c in alphabet
        if any(member(prefix + c + "".join(w)) for k in range(3) for w in itertools.product(alphabet, repeat=k))
    }
    return frozenset(legal | ({"<eos>"} if member(prefix) else set()))


def test_every_language_has_an_independent_definition():
    assert set(REGEX) | set(PREDICATE) == set(LANGUAGES)


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_samples_are_members_with_correct_legal_next_sets(name):
    lang = LANGUAGES[name]
    rng = np.random.default_rng(0)
    lengths = lang.lengths(1, 150)
    for length in (lengths[0], lengths[len(lengths) // 4], lengths[-1]):
        for w in lang.sample(rng, length, 12):
            assert len(w) == length
            got = lang.legal_next(w)
            for i in range(0, length + 1, max(1, length // 25)):  # a spread of prefixes
                assert got[i] == legal_next_independent(name, lang.alphabet, w[:i]), (w[:i], got[i])
            assert "<eos>" in got[-1]


@pytest.mark.parametrize("name", ["D-2", "Tomita-3", "(abab)*", "{0,1,2}*02*"])
def test_feasible_lengths_are_exactly_those_with_members(name):
    lang = LANGUAGES[name]
    for n in range(1, 13 if len(lang.alphabet) == 2 else 8):  # every string of that length
        members = [
            w
            for w in map("".join, itertools.product(lang.alphabet, repeat=n))
            if legal_next_independent(name, lang.alphabet, w) >= {"<eos>"}
        ]
        assert (n in lang.lengths(1, 13)) == bool(members), n


def test_sampling_is_close_to_uniform_over_members():
    lang = LANGUAGES["Tomita-4"]  # 24 members of length 5 (no 000)
    words = lang.sample(np.random.default_rng(0), 5, 4800)
    counts = Counter(words)
    assert len(counts) == 24 and max(counts.values()) < 2 * min(counts.values())


# ----------------------------------------------------------------------------------------------------
# Batches


def test_lm_labels_supervise_answer_and_eos_only():
    task = ALGORITHMIC["bin_majority"]
    tok = task.tokenizer()
    ex = task.sample(random.Random(0), 3)
    enc = data.encode(task, tok, ex)
    assert enc.labels[:4] == [IGNORE] * 4  # <bos> x x x: nothing predicted before <sep>
    assert enc.labels[4:6] == [tok.stoi[ex.answer[0]], tok.eos_id] and enc.labels[6] == IGNORE


def test_multilabel_targets_and_mask():
    lang = LANGUAGES["(aa)*"]
    tok = lang.tokenizer()
    batch = data.collate([data.encode(lang, tok, w) for w in ("aa", "aaaa")], tok.pad_id)
    assert batch["targets"].shape == (2, 5, 2) and batch["mask"].sum().item() == 3 + 5
    assert batch["targets"][1, :, 1].tolist() == [1, 0, 1, 0, 1]  # <eos> legal after even prefixes
    assert batch["targets"][0, 3:].sum() == 0  # padding carries no target


def test_eval_sets_are_seeded_and_stream_offsets_cover_the_table():
    task = data.get_task("majority")
    a, b = data.eval_sets(task, [[1, 5], [6, 9]], 10, 7), data.eval_sets(task, [[1, 5], [6, 9]], 10, 7)
    assert a == b and all(6 <= len(x.input) <= 9 for x in a["6-9"])
    stream = iter(data.TrainStream(task, task.tokenizer(), 1, 5, 32, seed=1, max_positions=40))
    offsets = torch.cat([next(stream)["pos_offset"] for _ in range(20)])
    assert offsets.min() == 0 and offsets.max() >= 30
    lang_stream = iter(data.TrainStream(LANGUAGES["D-2"], LANGUAGES["D-2"].tokenizer(), 1, 10, 8, seed=1))
    assert "pos_offset" not in next(lang_stream) and next(lang_stream)["targets"].shape[0] == 8


# The official code's APE offsets (lacoco-lab/length_generalization), per example, max test length 150:
# algorithmic/language_modeling_train.py draws random.randint(0, 150 - L) for the one-answer-token tasks,
# randint(0, 150 - 3k) for interleaved majority (3k bits), randint(0, (150 - L) * 2) for copy and sort;
# formal_lang_suite/train_with_ce.py draws torch.randint(n_positions / 2) with n_positions = 2 x the longest.
OFFICIAL_HIGH = {
    "bin_majority": lambda L: 150 - L,
    "majority": lambda L: 150 - L,
    "parity": lambda L: 150 - L,
    "bin_majority_interleave": lambda L: 150 - L,
    "unique_copy": lambda L: (150 - L) * 2,
    "repeat_copy": lambda L: (150 - L) * 2,
    "sort": lambda L: (150 - L) * 2,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_HIGH))
def test_ape_offset_is_bounded_by_the_example_as_in_the_official_code(name):
    task = data.get_task(name)
    n_pos = data.max_positions(task, 150)
    for L in task.lengths(1, 50):
        n_ids = len(data.encode(task, task.tokenizer(), task.sample(random.Random(L), L)).ids)
        assert data.offset_high(task, n_ids, n_pos) == OFFICIAL_HIGH[name](L)


def test_ape_offsets_reach_the_last_row_from_every_length_and_never_past_it():
    task = data.get_task("majority")
    tok = task.tokenizer()
    n_pos = data.max_positions(task, 150)  # 154 = <bos> 150 <sep> answer <eos>
    stream = data.TrainStream(task, tok, 1, 50, 64, seed=3, max_positions=n_pos)
    ends, short_ends = [], []
    for k in range(60):
        b = stream.batch(k)
        n_ids = (b["input_ids"] != tok.pad_id).sum(1)
        end = b["pos_offset"] + n_ids  # one past the example's last position
        assert (b["pos_offset"] >= 0).all() and (end <= n_pos).all()
        ends.append(end)
        short_ends.append(end[n_ids <= 10])
    ends, short_ends = torch.cat(ends), torch.cat(short_ends)
    assert (ends == n_pos).any() and (short_ends == n_pos).any()  # even a short example ends on the last row
    # every row up to the longest test sequence is trained often: the answer-predicting <sep> of an example
    # sits at position >= 140 in ~ (1/50) sum_L P(offset >= 140 - L - 1) ~ 9% of examples (the official 9-10%)
    seps = []
    for k in range(60):
        b = stream.batch(k)
        seps.append(b["pos_offset"] + (b["input_ids"] != tok.pad_id).sum(1) - 3)
    assert 0.06 < (torch.cat(seps) >= 140).float().mean() < 0.13


def test_language_offsets_are_uniform_below_half_the_table_whatever_the_length():
    lang = LANGUAGES["D-2"]
    n_pos = data.max_positions(lang, 150)
    assert n_pos == 2 * 151  # twice the longest test sequence <bos> w
    assert data.offset_high(lang, 3, n_pos) == data.offset_high(lang, 51, n_pos) == 150
    stream = data.TrainStream(lang, lang.tokenizer(), 1, 50, 64, seed=2, max_positions=n_pos)
    offsets = torch.cat([stream.batch(k)["pos_offset"] for k in range(40)])
    assert offsets.min() == 0 and offsets.max() == 150 and abs(offsets.float().mean().item() - 75) < 5
    assert (offsets + 51 <= n_pos).all()


def test_offsets_are_a_function_of_the_step():
    task = data.get_task("sort", 150)
    s1 = data.TrainStream(task, task.tokenizer(), 1, 50, 16, seed=5, max_positions=data.max_positions(task, 150))
    s2 = data.TrainStream(task, task.tokenizer(), 1, 50, 16, seed=5, max_positions=data.max_positions(task, 150))
    assert torch.equal(s1.batch(7)["pos_offset"], s2.batch(7)["pos_offset"])
    assert not torch.equal(s1.batch(7)["pos_offset"], s1.batch(8)["pos_offset"])


def test_padded_positions_fit_the_table_and_change_no_prediction():
    from lengen.model import ModelConfig, Transformer

    task = data.get_task("bin_majority")
    tok = task.tokenizer()
    n_pos, rows = data.max_positions(task, 20), data.table_rows(task, 20, 10)
    stream = data.TrainStream(task, tok, 1, 10, 32, seed=0, max_positions=n_pos)
    model = Transformer(
        ModelConfig(vocab_size=len(tok), n_layer=1, n_head=2, d_model=16, max_seq_len=rows, pos_encoding="ape")
    )
    b = stream.batch(0)
    logits = model(b["input_ids"], pos_offset=b["pos_offset"])  # padded positions run past n_pos, not the table
    k = int((b["input_ids"] != tok.pad_id).sum(1).argmin())  # the shortest example, alone and unpadded
    n = int((b["input_ids"][k] != tok.pad_id).sum())
    alone = model(b["input_ids"][k : k + 1, :n], pos_offset=b["pos_offset"][k : k + 1])
    torch.testing.assert_close(logits[k : k + 1, :n], alone, rtol=1e-4, atol=1e-5)
