"""Where in the answer a trained run fails: teacher-forced accuracy per answer position, per length.

    python benchmarks/answer_positions.py s0=runs/arith_carry-rope-s0 s1=runs/arith_carry-rope-s1 \\
        --task reverse_add --lengths 1-16

Exact match says *whether* a length fails; this says *where*. Reverse add's answer has a fixed width
(n+1 digits, then ``<eos>``), so each position is one digit of the sum: a failure confined to the last
digit (the final carry) is a different thing from an answer that goes wrong from its second digit on
(the model lost its alignment with the operands). For each run (``NAME=DIR``, DIR a run directory
``runs/<run_id>/<fingerprint>``, or ``runs/<run_id>`` holding one fingerprint) this scores the profile's
evaluation sets of ``--task`` at the last kept checkpoint (or ``--step``), prints one row per
length (exact match, then the accuracy at each answer position, ``<eos>`` last) and appends one JSON
line per run to ``benchmarks/answer_positions.jsonl``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _scoring import add_options, checkpoint, setup
from lengen.data import make_eval_sets
from lengen.engine import load_system
from lengen.evaluate import answer_position_accuracy, teacher_forced

LOG = Path(__file__).with_name("answer_positions.jsonl")


def position_rows(model, task: str, lengths: list[int], n: int, seed: int, modulus: int) -> list[dict]:
    """Per length: exact match and the accuracy at each answer position (``<eos>`` last)."""
    sets = make_eval_sets({(task, k) for k in lengths}, n, seed, modulus)
    rows = []
    for (_, k), examples in sorted(sets.items()):
        acc, _ = answer_position_accuracy(model, examples)
        rows.append(
            dict(
                length=k,
                n=len(examples),
                exact_match=round(teacher_forced(model, examples).exact_match, 3),
                position_accuracy=[round(float(a), 3) for a in acc],
            )
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="NAME=DIR (a run dir runs/<run_id>[/<fingerprint>])")
    ap.add_argument("--task", default="reverse_add")
    add_options(ap, lengths="1-16")
    args = ap.parse_args()
    data, lengths = setup(args)
    for spec in args.runs:
        name, run_dir = spec.split("=", 1)
        ckpt = checkpoint(Path(run_dir), args.step)
        model = load_system(ckpt).model.eval()
        rows = position_rows(model, args.task, lengths, data.n_eval, data.seed, data.holdout_modulus)
        print(f"{name} ({ckpt}): accuracy per answer position, <eos> last")
        for r in rows:
            print(
                f" {r['length']:3d}  em {r['exact_match']:.3f} | "
                + " ".join(f"{a:.2f}" for a in r["position_accuracy"])
            )
        info = ckpt.parent.parent / "run.json"  # where the run trained (its bits depend on the float path)
        trained_on = json.loads(info.read_text())["provenance"].get("processor") if info.exists() else None
        with open(LOG, "a") as f:
            f.write(
                json.dumps(
                    dict(
                        name=name,
                        checkpoint=str(ckpt),
                        task=args.task,
                        profile=args.profile,
                        trained_on=trained_on,
                        rows=rows,
                    )
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
