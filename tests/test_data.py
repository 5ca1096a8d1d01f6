import pytest
import torch

from lengen.config import GroupConfig
from lengen.data import (
    IGNORE,
    TrainStream,
    collate,
    format_example,
    is_heldout,
    length_buckets,
    make_eval_set,
    read_eval_sets,
    write_eval_sets,
)
from lengen.tasks import Example
from lengen.tokenizer import default_tokenizer

TOK = default_tokenizer()


def test_format_example_and_loss_mask():
    ids, n_prompt = format_example("reverse_add", Example("4321+789=", "12220"))
    assert TOK.decode(ids) == "<bos><reverse_add>4321+789=12220<eos>"
    assert n_prompt == 2 + len("4321+789=")
    batch = collate([(ids, n_prompt), format_example("copy", Example("ab=", "ab"))], TOK.pad_id)
    x, y = batch["input_ids"], batch["labels"]
    assert x.shape == y.shape == (2, len(ids) - 1)
    # Loss exactly on target + eos: the labelled tokens of row 0 spell "12220<eos>".
    assert TOK.decode(y[0][y[0] != IGNORE]) == "12220<eos>"
    assert TOK.decode(y[1][y[1] != IGNORE]) == "ab<eos>"
    # Each label is the next input token (teacher forcing).
    j = (y[0] != IGNORE).nonzero()[0].item()
    assert TOK.decode(x[0, : j + 1]) == "<bos><reverse_add>4321+789="


def test_holdout_is_stable_and_about_one_in_m():
    hits = sum(is_heldout(f"{i}=", 10) for i in range(20000))
    assert 1700 < hits < 2300
    assert is_heldout("abc=", 7) == is_heldout("abc=", 7)


GROUP = GroupConfig(main={"reverse_add": 3}, aux={"no_carry": 6, "carry_only": 6}, eval_max=8)


def test_train_stream_is_a_function_of_step():
    a = TrainStream(GROUP, 16, seed=1, modulus=10)
    b = TrainStream(GROUP, 16, seed=1, modulus=10, start_step=5)
    assert torch.equal(a.batch(5)["input_ids"], next(iter(b))["input_ids"])
    assert not torch.equal(a.batch(5)["input_ids"], a.batch(6)["input_ids"])
    c = TrainStream(GROUP, 16, seed=2, modulus=10)
    assert not torch.equal(a.batch(5)["input_ids"], c.batch(5)["input_ids"])


def test_train_stream_samples_tasks_and_lengths_uniformly():
    s = TrainStream(GROUP, 64, seed=0, modulus=10)
    pairs = [p for k in range(60) for p in s.examples(k)[1]]
    counts = {t: sum(task == t for task, _ in pairs) for t in GROUP.tasks}
    assert all(abs(c / len(pairs) - 1 / 3) < 0.05 for c in counts.values()), counts
    lens = [max(len(op) for op in ex.prompt[:-1].split("+")) for task, ex in pairs if task == "reverse_add"]
    assert set(lens) == {1, 2, 3}  # 1..max training length, never beyond


def test_eval_sets_fixed_and_heldout():
    a = make_eval_set("reverse_add", 2, 50, seed=3, modulus=10)
    b = make_eval_set("reverse_add", 2, 50, seed=3, modulus=10)
    assert a == b and len(a) == 50
    assert all(is_heldout(e.prompt, 10) for e in a)
    assert make_eval_set("reverse_add", 2, 50, seed=4, modulus=10) != a


@pytest.mark.parametrize("task, length", [("reverse_add", 1), ("reverse_add", 3), ("no_carry", 2), ("copy", 1)])
def test_training_never_sees_evaluation_prompts(task, length):
    """Disjointness where it is hardest: tiny prompt spaces (length 1 addition has 100 prompts)."""
    group = GroupConfig(main={task: length}, aux={}, eval_max=length)
    eval_prompts = {e.prompt for l in range(1, length + 1) for e in make_eval_set(task, l, 200, 0, 10)}
    stream = TrainStream(group, 64, seed=0, modulus=10)
    train_prompts = {ex.prompt for k in range(40) for _, ex in stream.examples(k)[1]}
    assert eval_prompts and train_prompts
    assert not eval_prompts & train_prompts
    if length == 1 and task == "reverse_add":
        # Training still covers the rest of the space: 100 prompts, ~10% held out.
        assert 80 <= len(train_prompts) <= 95


def test_ape_offsets_are_bounded_by_each_examples_own_length():
    # Per example, U[0, max_seq_len - n] with n its own input length (the formal framework's official rule),
    # not the batch's padded length: a short example reaches the table's last row too.
    s = TrainStream(GROUP, 64, seed=0, modulus=10, max_seq_len=40)
    offs, lasts, short_lasts = [], [], []
    for k in range(30):
        b = s.batch(k)
        T = b["input_ids"].shape[1]
        n = (b["input_ids"] != s.tok.pad_id).sum(1)  # each example's real input positions
        last = b["pos_offset"] + n - 1
        offs += b["pos_offset"].tolist()
        lasts += last.tolist()
        short_lasts += last[n < T].tolist()  # examples shorter than the batch's longest
    assert min(offs) == 0 and max(lasts) == 39  # every row 0..max_seq_len-1 trained, no real token beyond
    assert max(short_lasts) == 39  # under the batch bound a short example could never reach the last row
    assert "pos_offset" not in TrainStream(GROUP, 8, 0, 10).batch(0)


def test_eval_set_files_roundtrip(tmp_path):
    sets = {("copy", l): make_eval_set("copy", l, 5, 0, 10) for l in (1, 2)}
    write_eval_sets(sets, tmp_path)
    assert read_eval_sets(tmp_path, ["copy"]) == sets


def test_workers_and_ranks_keep_the_stream():
    from torch.utils.data import DataLoader

    s = TrainStream(GROUP, 8, seed=0, modulus=10, start_step=3)
    loaded = [b["input_ids"] for _, b in zip(range(5), DataLoader(s, batch_size=None, num_workers=2))]
    for i, x in enumerate(loaded):  # two worker processes, batches still in order 3, 4, 5, ...
        assert torch.equal(x, s.batch(3 + i)["input_ids"])
    # DDP: the ranks' shares of global batch k are disjoint and together make the whole batch.
    full = TrainStream(GROUP, 8, seed=0, modulus=10).batch(7)["labels"]
    shares = [TrainStream(GROUP, 8, seed=0, modulus=10, rank=r, world_size=2).batch(7)["labels"] for r in (0, 1)]
    rows = lambda t: sorted(tuple(r[r != IGNORE].tolist()) for r in t)  # noqa: E731
    assert [len(x) for x in shares] == [4, 4]
    assert sorted(rows(shares[0]) + rows(shares[1])) == rows(full)


def test_length_buckets_sort_rows_and_cut_only_padding():
    seqs = [format_example("reverse_add", Example(f"{'1' * n}+{'2' * n}=", "3" * n)) for n in (5, 1, 9, 3, 7)]
    batch = collate(seqs, TOK.pad_id)
    chunks = length_buckets(batch["labels"], 2)
    lengths = [len(ids) - 1 for ids, _ in seqs]  # input positions of each row
    assert [c[0].tolist() for c in chunks] == [[1, 3, 0], [4, 2]]
    assert [c[1] for c in chunks] == [lengths[0], lengths[2]]
    for rows, T in chunks:  # everything cut is padding without a label
        assert (batch["labels"][rows, T:] == IGNORE).all() and (batch["input_ids"][rows, T:] == TOK.pad_id).all()
    assert len(length_buckets(batch["labels"], 8)) == 5  # never more chunks than rows
