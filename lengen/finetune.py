"""Stage ``pretrained``: does pretraining act as an implicit auxiliary task?

The paper fine-tunes SmolLM-360M checkpoints along their pretraining trajectory and finds that length
generalization improves with pretraining; with the pretrained model, related auxiliaries still transfer,
the control does not, and string copy generalizes on its own. We have one checkpoint, not a trajectory:
**pretrained vs the same architecture randomly initialized** (same steps, data, learning rate) is our
stand-in for "more vs less pretraining".

Read top to bottom: parameters (the ``pretrained:`` section of params.yaml) -> one fine-tuning run ->
zero-shot -> the whole stage (resumable) -> summaries, the paper's claims beside our numbers, figures.

Runs. Each ``(group, init)`` in ``pretrained.runs`` fine-tunes :func:`lengen.pretrained.build_model`
on the group's training stream (``lengen.data.TrainStream``: the same tasks, formats, held-out
partition and per-batch determinism as the small-model runs) with AdamW and the project's schedule
(``lengen.system.lr_lambda``), then scores every (task, length) with ``lengen.evaluate.score_sets`` —
the wrapper speaks lengen token ids, so nothing is re-implemented. Full fine-tuning, not LoRA: at this
size on CPU a LoRA step (r=16 on every projection) was only ~15% faster than a full step with fused
AdamW (measured: 2.0 vs 2.4 s at batch 16, 1 thread) and learns more slowly per step.

Records are the small-model runs' tidy format (``lengen.evaluate.RECORD_FIELDS`` + ``final``), one CSV
per run in ``reports/pretrained/records/``; the ``pos_encoding`` column holds the **initialization**
(``pretrained`` | ``scratch``; both models use SmolLM2's RoPE), the zero-shot check is the run
``<group>-zero_shot`` at step 0. ``reports/pretrained/runs/<run_id>.json`` keeps each run's
fingerprint, timings and loss curve; a re-run skips every run whose fingerprint matches (so a killed
stage resumes at run granularity).
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from lengen import paths
from lengen.config import PRECISIONS, Config, DataConfig, GroupConfig, _build, _fail, _positive
from lengen.data import IGNORE, TrainStream, make_eval_sets
from lengen.evaluate import score_sets
from lengen.pretrained import INITS, MODEL_DIR, MODELS, PROVENANCE, build_model
from lengen.records import RECORD_FIELDS
from lengen.runtime import autocast_context

BETAS = (0.9, 0.98)  # the paper's AdamW betas (as the small-model runs)
EPS = 1e-8


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class Claims:
    """Which configured groups test which of the paper's claims (group names from ``groups``)."""

    scratch: str  # fine-tuned from both inits: pretraining vs none
    related: str  # main task with related auxiliaries (transfer expected)
    control: str  # main task with the control auxiliary (no transfer expected)
    alone: str  # a main task alone that should generalize on its own (string copy)


@dataclass(frozen=True)
class PretrainedParams:
    """The ``pretrained:`` section of params.yaml."""

    model: str  # smollm2 (the converted checkpoint) | tiny (2-layer random Llama, smoke/tests)
    seed: int  # scratch initialization and the new tokens' embedding rows
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_frac: float  # linear warmup, then constant ...
    decay_frac: float  # ... then cosine decay to 0 over this fraction of the steps
    grad_clip: float  # 0 = off
    precision: str  # bf16-mixed | 32-true | 16-mixed (as train.precision)
    threads: int  # torch threads on CPU
    eval_every: int  # steps between intermediate evaluations; 0 = only at the end
    n_eval: int  # examples per (task, length)
    eval_batch_size: int
    groups: dict[str, GroupConfig]  # this stage's task groups (lengths fit its budget)
    runs: dict[str, list[str]]  # group -> initializations to fine-tune it from
    claims: Claims

    def __post_init__(self):
        if self.model not in MODELS:
            _fail("pretrained.model", f"{self.model!r} is not one of {MODELS}")
        for k in ("steps", "batch_size", "lr", "threads", "n_eval", "eval_batch_size"):
            _positive(f"pretrained.{k}", getattr(self, k))
        for k in ("weight_decay", "grad_clip", "eval_every"):
            _positive(f"pretrained.{k}", getattr(self, k), allow_zero=True)
        for k in ("warmup_frac", "decay_frac"):
            if not 0 <= getattr(self, k) < 1:
                _fail(f"pretrained.{k}", f"must be in [0, 1), got {getattr(self, k)}")
        if self.warmup_frac + self.decay_frac > 1:
            _fail("pretrained.decay_frac", "warmup_frac + decay_frac > 1")
        if self.precision not in PRECISIONS:
            _fail("pretrained.precision", f"{self.precision!r} is not one of {PRECISIONS}")
        for g, inits in self.runs.items():
            if g not in self.groups:
                _fail("pretrained.runs", f"unknown group {g!r}; groups: {sorted(self.groups)}")
            bad = [i for i in inits if i not in INITS]
            if bad or not inits:
                _fail(f"pretrained.runs.{g}", f"needs one or more of {INITS}, got {inits}")
        for claim, g in dataclasses.asdict(self.claims).items():
            need = ("pretrained", "scratch") if claim == "scratch" else ("pretrained",)
            if any(i not in self.runs.get(g, []) for i in need):
                _fail(f"pretrained.claims.{claim}", f"group {g!r} must be in pretrained.runs with {list(need)}")


def load_params(cfg: Config) -> PretrainedParams:
    """Parse and validate the ``pretrained:`` section (strict, as every other section)."""
    if "pretrained" not in cfg.extra:
        _fail("pretrained", f"section missing in the {cfg.profile!r} profile")
    return _build(PretrainedParams, cfg.extra["pretrained"], "pretrained")


# ---------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning job: a group from one initialization; ``zero_shot``: no steps, main task only."""

    group_name: str
    group: GroupConfig
    init: str
    params: PretrainedParams
    data: DataConfig
    zero_shot: bool = False

    @property
    def run_id(self) -> str:
        return f"{self.group_name}-{'zero_shot' if self.zero_shot else self.init}"

    @property
    def pos_encoding(self) -> str:
        """The records' ``pos_encoding`` column: the initialization (see the module docstring)."""
        return self.init

    @property
    def seed(self) -> int:
        return self.params.seed

    def fingerprint(self, model_dir: Path = MODEL_DIR) -> str:
        """Hash of everything that determines the run's records (the checkpoint's hash included)."""
        p = dataclasses.asdict(self.params)
        for k in ("groups", "runs", "claims", "threads", "eval_batch_size"):  # not result-determining
            p.pop(k)
        prov = Path(model_dir) / PROVENANCE
        data = {k: getattr(self.data, k) for k in ("seed", "holdout_modulus", "eval_step")}  # what the stage reads
        blob = dict(params=p, group=self.group.fingerprint_dict(), init=self.init, zero_shot=self.zero_shot,
                    data=data, checkpoint=prov.read_text() if prov.exists() else None)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _optimizer(model: torch.nn.Module, p: PretrainedParams) -> torch.optim.Optimizer:
    # No weight decay on 1-D parameters (norms), as lengen.system. Fused AdamW: its step over 135M
    # parameters took 0.1-0.2 s instead of 0.65 s at one thread here.
    params = [q for q in model.parameters() if q.requires_grad]
    return torch.optim.AdamW(
        [{"params": [q for q in params if q.dim() >= 2], "weight_decay": p.weight_decay},
         {"params": [q for q in params if q.dim() < 2], "weight_decay": 0.0}],
        lr=p.lr, betas=BETAS, eps=EPS, fused=True,
    )


def _evaluate(model, run: FinetuneRun, sets, step: int, final: bool) -> list[dict]:
    model.eval()
    with autocast_context(run.params.precision, _device()):
        rows = score_sets(model, sets, run_id=run.run_id, group_name=run.group_name, group=run.group, step=step,
                          seed=run.seed, pos_encoding=run.pos_encoding, batch_size=run.params.eval_batch_size)
    model.train()
    return [dict(r, final=final) for r in rows]


def finetune(run: FinetuneRun, model_dir: Path = MODEL_DIR, progress: bool = True) -> tuple[pd.DataFrame, dict]:
    """Fine-tune (``run.params.steps`` steps; none for zero-shot), evaluate, return (records, info).

    info: wall time, seconds per step, the training loss per step, parameter count, device, threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(run.params.threads)
    try:
        return _finetune(run, model_dir, progress)
    finally:
        torch.set_num_threads(threads)  # the caller's setting (tests run at one thread)


def _finetune(run: FinetuneRun, model_dir: Path, progress: bool) -> tuple[pd.DataFrame, dict]:
    from lengen.system import lr_lambda

    p, d, dev = run.params, run.data, _device()
    t0 = time.time()
    model = build_model(p.model, run.init, p.seed, model_dir).to(dev).train()
    sets = make_eval_sets(run.group.eval_keys(d.eval_step), p.n_eval, d.seed, d.holdout_modulus)
    steps = 0 if run.zero_shot else p.steps
    stream = TrainStream(run.group, p.batch_size, d.seed, d.holdout_modulus)
    opt = _optimizer(model, p)
    warmup, decay = round(p.warmup_frac * steps), round(p.decay_frac * steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_lambda(s, warmup, decay, steps, 0.0))
    records, losses, t_train, t_eval = [], [], 0.0, 0.0
    t_start = time.time()
    for k in range(steps):
        t1 = time.time()
        batch = stream.batch(k)
        x, y = batch["input_ids"].to(dev), batch["labels"].to(dev)
        with autocast_context(p.precision, dev):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE)
        loss.backward()
        if p.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), p.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(loss.item(), 5))
        t_train += time.time() - t1
        if progress and ((k + 1) % max(1, steps // 10) == 0 or k == 0):
            print(f"[pretrained] {run.run_id} step {k + 1}/{steps} loss {losses[-1]:.3f} "
                  f"({t_train / (k + 1):.2f} s/step)", flush=True)
        if p.eval_every and (k + 1) % p.eval_every == 0 and k + 1 < steps:
            t2 = time.time()
            records += _evaluate(model, run, sets, k + 1, final=False)
            t_eval += time.time() - t2
    t2 = time.time()
    records += _evaluate(model, run, sets, steps, final=True)
    t_eval += time.time() - t2
    info = dict(run_id=run.run_id, wall_s=round(time.time() - t0, 1), load_s=round(t_start - t0, 1),
                train_s=round(t_train, 1), s_per_step=round(t_train / max(steps, 1), 3), eval_s=round(t_eval, 1),
                steps=steps, batch_size=p.batch_size, n_params=model.num_params(), device=str(dev),
                threads=torch.get_num_threads(), losses=losses)
    del model, opt
    gc.collect()
    return pd.DataFrame(records)[list(RECORD_FIELDS) + ["final"]], info


# ---------------------------------------------------------------------------------------------
# The stage


def stage_runs(cfg: Config) -> list[FinetuneRun]:
    """The zero-shot checks (one per distinct main task, on the first group that has it, auxiliaries
    dropped: the check is on the main task), then every configured (group, init) fine-tune."""
    p = load_params(cfg)
    out, seen = [], set()
    for g, inits in p.runs.items():
        group = p.groups[g]
        if "pretrained" in inits and group.main_task not in seen:
            seen.add(group.main_task)
            main_only = dataclasses.replace(group, aux={}, baseline=None)
            out.append(FinetuneRun(g, main_only, "pretrained", p, cfg.data, zero_shot=True))
    for g, inits in p.runs.items():
        out += [FinetuneRun(g, p.groups[g], init, p, cfg.data) for init in inits]
    return out


def zero_shot_id(cfg: Config, task: str) -> str:
    """The run id of the zero-shot check of main task ``task``."""
    return next(r.run_id for r in stage_runs(cfg) if r.zero_shot and r.group.main_task == task)


def run_or_load(run: FinetuneRun, model_dir: Path = MODEL_DIR, out_dir: Path = paths.PRETRAINED_DIR,
                progress: bool = True) -> pd.DataFrame:
    """The run's records: read back if an earlier run with the same fingerprint finished, else computed
    and written (``records/<run_id>.csv`` and ``runs/<run_id>.json``)."""
    out_dir = Path(out_dir)
    rec_file, info_file = out_dir / "records" / f"{run.run_id}.csv", out_dir / "runs" / f"{run.run_id}.json"
    fp = run.fingerprint(model_dir)
    if rec_file.exists() and info_file.exists() and json.loads(info_file.read_text()).get("fingerprint") == fp:
        if progress:
            print(f"[pretrained] {run.run_id}: up to date, records read back", flush=True)
        return pd.read_csv(rec_file)
    records, info = finetune(run, model_dir, progress)
    rec_file.parent.mkdir(parents=True, exist_ok=True)
    info_file.parent.mkdir(parents=True, exist_ok=True)
    records.to_csv(rec_file, index=False)  # records first: the info file marks the run complete
    info_file.write_text(json.dumps(dict(info, fingerprint=fp), indent=1) + "\n")
    if progress:
        print(f"[pretrained] {run.run_id}: done in {info['wall_s']:.0f} s", flush=True)
    return records


def run_stage(cfg: Config, model_dir: Path = MODEL_DIR, out_dir: Path = paths.PRETRAINED_DIR,
              progress: bool = True) -> pd.DataFrame:
    """Every run of the stage (resuming), then ``summary.json``; returns all records."""
    runs = stage_runs(cfg)
    records = pd.concat([run_or_load(r, model_dir, out_dir, progress) for r in runs], ignore_index=True)
    summary = summarize_runs(records, cfg).set_index("run_id").select_dtypes("number")  # DVC metrics: numbers
    clean = summary.astype(object).where(summary.notna(), None)  # NaN is not JSON: null
    (Path(out_dir) / "summary.json").write_text(json.dumps(clean.to_dict("index"), indent=1) + "\n")
    return records


def _files(cfg: Config, out_dir: Path, kind: str) -> list[Path]:
    """The configured runs' files (never stale ones of runs no longer configured)."""
    ext = {"records": "csv", "runs": "json"}[kind]
    files = [Path(out_dir) / kind / f"{r.run_id}.{ext}" for r in stage_runs(cfg)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise FileNotFoundError(f"no pretrained-comparison {kind} {missing} in {out_dir}; run `dvc repro pretrained`")
    return files


def load_records(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR) -> pd.DataFrame:
    """The stage's records, every configured run (for the figures notebook)."""
    return pd.concat([pd.read_csv(f) for f in _files(cfg, out_dir, "records")], ignore_index=True)


def load_infos(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR) -> list[dict]:
    """Per run: timings, steps, batch, parameter count, the loss per step."""
    return [json.loads(f.read_text()) for f in _files(cfg, out_dir, "runs")]


def timings(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR) -> pd.DataFrame:
    """What the budget bought: per run, steps × batch, seconds per step, wall time."""
    df = pd.DataFrame(load_infos(cfg, out_dir)).drop(columns=["losses", "fingerprint"])
    df["examples"] = df.steps * df.batch_size
    return df[["run_id", "steps", "batch_size", "examples", "s_per_step", "train_s", "eval_s", "load_s", "wall_s",
               "threads", "device", "n_params"]]


def load_losses(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR) -> pd.DataFrame:
    """Training loss per run and step (tidy)."""
    rows = [dict(run_id=i["run_id"], step=k + 1, loss=v) for i in load_infos(cfg, out_dir)
            for k, v in enumerate(i["losses"])]
    return pd.DataFrame(rows, columns=["run_id", "step", "loss"])


# ---------------------------------------------------------------------------------------------
# Summaries and the paper's claims

NEAR_ZERO = 0.05  # zero-shot exact match below this is "near zero"
MARGIN = 0.05  # a difference in exact match smaller than this is "no difference"
GENERALIZES = 0.5  # mean exact match over (L, 2L] at least this: "generalizes on its own"


def _final(records: pd.DataFrame) -> pd.DataFrame:
    from lengen.figures import final_records

    return final_records(records)


def _range_mean(records: pd.DataFrame, run_id: str, task: str, lo: int, hi: int) -> float:
    """Final exact match of ``task`` in run ``run_id``, averaged over lengths lo..hi."""
    f = _final(records)
    m = f[(f.run_id == run_id) & (f.task == task) & f.length.between(lo, hi)]
    return float(m.exact_match.mean()) if len(m) else float("nan")


def summarize_runs(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per run: main-task exact match in-distribution / transfer / beyond, aux in-distribution
    and the generalization gap (``lengen.train.summarize``, the small-model runs' summary)."""
    from lengen.train import summarize

    rows = []
    for run in stage_runs(cfg):
        df = records[records.run_id == run.run_id]
        if len(df):
            rows.append(dict(summarize(df, run), zero_shot=run.zero_shot))
    return pd.DataFrame(rows)


def claims_table(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """The paper's pretrained-model claims, the measure we use for each, our numbers and whether they
    agree (thresholds NEAR_ZERO, MARGIN, GENERALIZES above)."""
    p = load_params(cfg)
    c = p.claims
    rows = []

    def add(claim: str, measure: str, ours: str, agrees: bool | str):
        rows.append(dict(claim=claim, measure=measure, ours=ours,
                         agrees=agrees if isinstance(agrees, str) else "yes" if agrees else "no"))

    g = p.groups[c.scratch]
    main, L = g.main_task, g.main_max
    zs = _range_mean(records, zero_shot_id(cfg, main), main, 1, g.eval_max)
    add("zero-shot accuracy on the main task is near zero", f"{main}, mean exact match over lengths 1–{g.eval_max}",
        f"{zs:.2f}", zs < NEAR_ZERO)

    pre_in, scr_in = (_range_mean(records, f"{c.scratch}-{i}", main, 1, L) for i in INITS)
    pre_tr, scr_tr = (_range_mean(records, f"{c.scratch}-{i}", main, L + 1, 2 * L) for i in INITS)
    add("length generalization improves with pretraining",
        f"{main} ≤{L} alone: exact match over {L + 1}–{2 * L} (and 1–{L}), pretrained vs scratch",
        f"{pre_tr:.2f} vs {scr_tr:.2f} ({pre_in:.2f} vs {scr_in:.2f})", pre_tr > scr_tr + MARGIN)

    rel, ctl = p.groups[c.related], p.groups[c.control]
    hi = rel.transfer_max
    alone_tr = _range_mean(records, f"{c.scratch}-pretrained", main, L + 1, hi)
    rel_tr = _range_mean(records, f"{c.related}-pretrained", rel.main_task, rel.main_max + 1, hi)
    ctl_tr = _range_mean(records, f"{c.control}-pretrained", ctl.main_task, ctl.main_max + 1, hi)
    related_transfers = rel_tr > alone_tr + MARGIN
    add("related auxiliaries transfer in the pretrained model",
        f"{rel.main_task} over {rel.main_max + 1}–{hi}: + {', '.join(rel.aux)} vs alone",
        f"{rel_tr:.2f} vs {alone_tr:.2f}", related_transfers)
    # "no transfer from the control" says something only where the related auxiliaries do transfer
    control_flat = ctl_tr <= alone_tr + MARGIN
    add("the control auxiliary does not transfer",
        f"{ctl.main_task} over {ctl.main_max + 1}–{hi}: + {', '.join(ctl.aux)} vs alone",
        f"{ctl_tr:.2f} vs {alone_tr:.2f}", "vacuous" if control_flat and not related_transfers else control_flat)

    a = p.groups[c.alone]
    cp_in = _range_mean(records, f"{c.alone}-pretrained", a.main_task, 1, a.main_max)
    cp_tr = _range_mean(records, f"{c.alone}-pretrained", a.main_task, a.main_max + 1, 2 * a.main_max)
    add(f"{a.main_task} generalizes on its own (pretrained)",
        f"{a.main_task} ≤{a.main_max} alone: exact match over {a.main_max + 1}–{2 * a.main_max} (and 1–{a.main_max})",
        f"{cp_tr:.2f} ({cp_in:.2f})", cp_tr >= GENERALIZES)
    return pd.DataFrame(rows)


def describe_claims(table: pd.DataFrame) -> str:
    """Markdown list: each claim, what we measured, and whether it agrees."""
    verdict = {"yes": "agrees", "no": "does not agree",
               "vacuous": "agrees only vacuously (the related auxiliaries did not transfer either)"}
    return "\n".join(f"- **{r.claim}** — {r.measure}: **{r.ours}** → {verdict[r.agrees]}" for r in table.itertuples())


# ---------------------------------------------------------------------------------------------
# Figures (from the records files; the figures notebook calls these too)


def _main_curves(records: pd.DataFrame, runs: dict[str, str], task: str) -> pd.DataFrame:
    f = _final(records)
    parts = [f[(f.run_id == rid) & (f.task == task)].assign(curve=label) for label, rid in runs.items()]
    return pd.concat(parts, ignore_index=True)


def _shade(ax, main_max: int, aux_max: int | None = None) -> None:
    ax.axvspan(0.5, main_max + 0.5, color="tab:green", alpha=0.10, label=f"main trained (≤{main_max})")
    if aux_max:
        ax.axvspan(main_max + 0.5, aux_max + 0.5, color="tab:orange", alpha=0.07, label=f"aux trained (≤{aux_max})")


def plot_init_comparison(records: pd.DataFrame, cfg: Config, ax=None):
    """Main-task exact match vs length: fine-tuned from the pretrained checkpoint vs from scratch
    (same steps, data, lr), with the pretrained model's zero-shot curve."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    p = load_params(cfg)
    g = p.groups[p.claims.scratch]
    data = _main_curves(records, {"pretrained, fine-tuned": f"{p.claims.scratch}-pretrained",
                                  "scratch, fine-tuned": f"{p.claims.scratch}-scratch",
                                  "pretrained, zero-shot": zero_shot_id(cfg, g.main_task)}, g.main_task)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    _shade(ax, g.main_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", ax=ax)
    ax.set(title=f"{g.main_task} ≤{g.main_max}: pretrained vs scratch ({p.model}, {p.steps} steps)",
           xlabel="length", ylabel="exact match", ylim=(-0.03, 1.03))
    ax.legend(fontsize=8)
    return ax.figure


def plot_aux_comparison(records: pd.DataFrame, cfg: Config):
    """Left: the pretrained model's main task alone, + related auxiliaries, + the control (auxiliary
    tasks dashed). Right: the task that should generalize on its own."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    p = load_params(cfg)
    c = p.claims
    rel, ctl, alone = p.groups[c.related], p.groups[c.control], p.groups[c.alone]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.2))
    main = rel.main_task
    data = _main_curves(records, {"alone": f"{c.scratch}-pretrained", f"+ {', '.join(rel.aux)}": f"{c.related}-pretrained",
                                  f"+ {', '.join(ctl.aux)} (control)": f"{c.control}-pretrained"}, main)
    _shade(a1, rel.main_max, rel.transfer_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", lw=2.2, ax=a1)
    f = _final(records)
    aux = f[((f.run_id == f"{c.related}-pretrained") | (f.run_id == f"{c.control}-pretrained")) & (f.role == "aux")]
    if len(aux):
        sns.lineplot(data=aux, x="length", y="exact_match", hue="task", ls="--", lw=1, alpha=0.6,
                     palette="gray", ax=a1)
    a1.set(title=f"pretrained: {main} ≤{rel.main_max} ± auxiliaries", ylim=(-0.03, 1.03), ylabel="exact match")
    a1.legend(fontsize=7)
    data = _main_curves(records, {"fine-tuned": f"{c.alone}-pretrained", "zero-shot": zero_shot_id(cfg, alone.main_task)},
                        alone.main_task)
    _shade(a2, alone.main_max)
    sns.lineplot(data=data, x="length", y="exact_match", hue="curve", marker="o", ax=a2)
    a2.set(title=f"pretrained: {alone.main_task} ≤{alone.main_max} alone", ylim=(-0.03, 1.03), ylabel="exact match")
    a2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_losses(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR, ax=None):
    """Training loss per step of every run (log scale)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    sns.lineplot(data=load_losses(cfg, out_dir), x="step", y="loss", hue="run_id", lw=1, ax=ax)
    ax.set(yscale="log", title="training loss (restricted-vocabulary cross-entropy)")
    return ax.figure


def save_figure(fig, name: str, out_dir: Path = paths.PRETRAINED_DIR) -> str:
    """Save under ``reports/pretrained/figures/`` (this stage's output; reports/figures is the figures
    stage's)."""
    f = Path(out_dir) / "figures" / f"{name}.png"
    f.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f, dpi=120, bbox_inches="tight")
    return str(f.relative_to(paths.PROJ_ROOT) if f.is_relative_to(paths.PROJ_ROOT) else f)
