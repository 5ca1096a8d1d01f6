"""Attention-head reuse: do a main task and its auxiliaries use the same heads, and does it track transfer?

The paper (Extrapolation by Association, appendix on circuit sharing) claims that length-generalization
transfer goes with the main and auxiliary tasks re-using the same attention heads, measured two ways,
across training checkpoints. This package measures both on every kept checkpoint of the analysed runs
and correlates them with the run's generalization gap at that checkpoint.

The package, read in this order:

- ``lengen.heads.probe``       the model interface, task batches, one task's probe, one checkpoint's rows
- ``lengen.heads.run``         one run's rows: its kept checkpoints probed, each with the run's gap there
- ``lengen.heads.store``       each run's rows committed in ``reports/heads/runs/<run_id>/`` with the key
                               of what they were computed from, read back where the checkpoints are gone
- ``lengen.heads.statistics``  comparing two tasks' heads; Spearman's ρ, bootstrap CI, verdicts
- ``lengen.heads.report``      the paper's claims, the driver over runs, tables, records, summary, findings
- ``python -m lengen.heads``   a run's rows into the store right after it trains (``make queue``)

Parameters: the ``heads:`` section of params.yaml, parsed by ``lengen.config`` (``cfg.heads``).

Figures are drawn by ``lengen.plots`` (``plot_ablation_maps``, ``plot_metric_vs_gap``).

**Inputs and alignment.** For a pair (main task, auxiliary task) the analysed lengths are
``round(f * L)`` for each ``f`` in ``heads.length_fractions``, where ``L = min(main's, aux's maximum
training length)``: lengths at which *both* tasks are in-distribution (cpu profile: L = 8, f = 0.5, 1
-> lengths 4 and 8). At each length each task gets ``heads.n_examples`` examples of its evaluation
partition (``lengen.data.make_eval_set``: the first examples of the evaluation set the training runs
score). Sequences are the training format ``<bos> <marker> prompt target <eos>``, fed teacher-forced
(the input is the sequence without its last token). Related tasks of a group share the format and,
at equal length, the token count (``4321+789=12220`` vs ``4321+789=11110``); where they do not (the
control copy-first-op answers one digit shorter; maze prompts vary), positions are aligned from the
start and compared over the common window of ``T*`` positions, ``T*`` = the shortest input of the two
batches. Because attention is causal, a query row inside the window never sees a key outside it.

**Metric 1, attention difference.** Per task, average the attention pattern over its examples
(``Ā`` of shape layers x heads x T* x T*). Per head,
``D(l, h) = Σ_{q<T*} Σ_{k<T*} |Ā_main[l,h,q,k] − Ā_aux[l,h,q,k]| / T*``: the paper's summed absolute
difference over all query/key positions of prompt and answer, divided by the number of query rows so
it is comparable across lengths (each row is a distribution, so D is in [0, 2]; the division is a
constant per group and changes no rank correlation). Aggregate: the mean over heads, then over lengths.

**Metric 2, mean-ablation maps.** For every head (l, h) replace its output (the per-head attention
output before ``o_proj``) by its *per-position batch mean* over the task's examples (mean over the
examples whose input reaches that position), run the batch, and record the drop in teacher-forced exact
match and in answer log-likelihood (mean log-probability per answer token, incl. ``<eos>``) against the
clean run: one layers x heads map per task and measure. Two tasks' maps are compared by the mean
absolute difference (the paper's metric), their Spearman rank correlation, and the overlap of their
top-k heads. Maps are averaged over the pair's lengths before comparing.

**Across checkpoints.** One point per (run, kept checkpoint): the metrics averaged over the group's
auxiliaries, and the run's generalization gap at that step (``lengen.records.group_gap`` on the
records of that evaluation). Per category (arithmetic, strings, mazes, control) and position encoding,
Spearman's ρ between each metric and the gap with a percentile bootstrap CI (resampling points). A
difference metric "tracks" the gap when ρ's CI lies above 0 (a similarity metric: below 0).

**Random-head control.** Restrict the per-head differences (attention D, |exact-match drop
difference|, |log-likelihood drop difference|) to the k heads most important for the main task
(largest log-likelihood drop at that checkpoint) and to ``n_random_sets`` random sets of k heads (drawn
once per category, the same set for every point), and compare ρ of the top-k restriction with the
distribution of the random sets' ρ.

The metrics take any model with the :class:`HookedModel` interface (``lengen.model.Transformer`` and
the pretrained wrapper) and token batches from any formatter, so they run on both.
"""

from lengen.heads.probe import (
    HookedModel,
    ModelShape,
    TaskBatch,
    TaskProbe,
    analyse_checkpoint,
    answer_scores,
    attention_difference,
    checkpoint_paths,
    head_means,
    pair_lengths,
    probe_inputs,
    probe_task,
    task_batch,
)
from lengen.heads.report import (
    CLAIMS,
    FIGURES_DIR,
    HEAD_MEASURES,
    HEADS_DIR,
    METRICS,
    HeadRecords,
    analyse,
    analysed_runs,
    correlation_table,
    coverage,
    describe,
    format_rho,
    head_grid,
    heads_config,
    heads_runs,
    pair_heads,
    pairs_table,
    points_table,
    random_head_control,
    read_records,
    tables,
    write_records,
    write_summary,
)
from lengen.heads.run import KEYS, RUN_KEYS, RunRows, probe_run
from lengen.heads.statistics import (
    agrees,
    bootstrap_spearman,
    compare_maps,
    rankdata,
    spearman,
    top_heads,
    verdict,
)
from lengen.heads.store import STORE_DIR, entry_key, read_entry, run_rows, write_entry

__all__ = [
    "CLAIMS",
    "FIGURES_DIR",
    "HEADS_DIR",
    "HEAD_MEASURES",
    "HeadRecords",
    "HookedModel",
    "KEYS",
    "METRICS",
    "ModelShape",
    "RUN_KEYS",
    "RunRows",
    "STORE_DIR",
    "TaskBatch",
    "TaskProbe",
    "agrees",
    "analyse",
    "analyse_checkpoint",
    "analysed_runs",
    "answer_scores",
    "attention_difference",
    "bootstrap_spearman",
    "checkpoint_paths",
    "compare_maps",
    "correlation_table",
    "coverage",
    "describe",
    "entry_key",
    "format_rho",
    "head_grid",
    "head_means",
    "heads_config",
    "heads_runs",
    "pair_heads",
    "pair_lengths",
    "pairs_table",
    "points_table",
    "probe_inputs",
    "probe_run",
    "probe_task",
    "random_head_control",
    "rankdata",
    "read_entry",
    "read_records",
    "run_rows",
    "spearman",
    "tables",
    "task_batch",
    "top_heads",
    "verdict",
    "write_entry",
    "write_records",
    "write_summary",
]
