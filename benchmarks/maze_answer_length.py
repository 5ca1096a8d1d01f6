"""Why a maze baseline generalizes by itself: exact match split by the answer's length.

    python benchmarks/maze_answer_length.py alone=runs/sp_far_alone-rope-s0 sp_dfs=runs/sp_far_dfs-rope-s0 \\
        --task shortest_path_far --train-nodes 4 --lengths 5-12

A maze of n nodes can still have a short answer (start next to end): such examples need no output
position the main task was trained on past its maximum, so "length" generalization in nodes partly
measures answers no longer than those seen in training. For each run (its last kept checkpoint,
``NAME=DIR`` a run directory ``runs/<run_id>[/<fingerprint>]``) this scores the profile's evaluation sets
of ``--task`` at each maze size with teacher-forced exact match and splits the examples by whether the answer has more
nodes than the longest answer at ``--train-nodes`` (2n-1 for ``dfs_trace``, n for ``shortest_path``).
Prints a table and appends one JSON line per run to ``benchmarks/maze_answer_length.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from _scoring import add_options, checkpoint, setup
from lengen.data import make_eval_sets
from lengen.engine import load_system
from lengen.evaluate import teacher_forced
from lengen.tasks import TASKS, get_task

LOG = Path(__file__).with_name("maze_answer_length.jsonl")


def longest_answer(task: str, nodes: int) -> int:
    """Most answer nodes a maze of ``nodes`` nodes can need (a far-query variant as its base task)."""
    return 2 * nodes - 1 if (get_task(task).variant_of or task) == "dfs_trace" else nodes


def split_scores(model, task: str, lengths: list[int], train_nodes: int, n: int, seed: int, modulus: int) -> list[dict]:
    """Per maze size: exact match over all examples, over answers within / past the training maximum."""
    cut = longest_answer(task, train_nodes)
    sets = make_eval_sets({(task, k) for k in lengths}, n, seed, modulus)
    rows = []
    for (_, k), examples in sets.items():
        exact = teacher_forced(model, examples).exact
        long = np.array([e.target.count("[") > cut for e in examples])
        rows.append(
            dict(
                nodes=k,
                n=len(examples),
                exact_match=round(float(exact.mean()), 3),
                n_long=int(long.sum()),
                em_short=round(float(exact[~long].mean()), 3) if (~long).any() else None,
                em_long=round(float(exact[long].mean()), 3) if long.any() else None,
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=DIR (a run dir runs/<run_id>[/<fingerprint>])")
    ap.add_argument("--task", default="dfs_trace", choices=[n for n, t in sorted(TASKS.items()) if t.family == "mazes"])
    ap.add_argument("--train-nodes", type=int, required=True, help="the main task's maximum training size")
    add_options(ap, lengths="5-12")
    args = ap.parse_args()
    data, lengths = setup(args)
    for spec in args.runs:
        name, search_dir = spec.split("=", 1)
        model = load_system(checkpoint(Path(search_dir), args.step)).model.eval()
        rows = split_scores(model, args.task, lengths, args.train_nodes, data.n_eval, data.seed, data.holdout_modulus)
        print(f"{name}: answers longer than {longest_answer(args.task, args.train_nodes)} nodes are 'long'")
        print(" nodes  all    short  long (n_long)")
        for r in rows:
            print(
                f" {r['nodes']:5d}  {r['exact_match']:.3f}  {r['em_short'] if r['em_short'] is not None else '-':5}"
                f"  {r['em_long'] if r['em_long'] is not None else '-'} ({r['n_long']})"
            )
        with open(LOG, "a") as f:
            f.write(
                json.dumps(
                    dict(name=name, search_dir=search_dir, task=args.task, train_nodes=args.train_nodes, rows=rows)
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
