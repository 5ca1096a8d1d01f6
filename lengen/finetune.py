"""Stage ``pretrained``: does pretraining act as an implicit auxiliary task?

The paper fine-tunes SmolLM-360M checkpoints along their pretraining trajectory and finds that length
generalization improves with pretraining; with the pretrained model, related auxiliaries still transfer,
the control does not, and string copy generalizes on its own. We have one checkpoint, not a trajectory:
**pretrained vs the same architecture randomly initialized** (same steps, data, learning rate) is our
stand-in for "more vs less pretraining".

Read top to bottom: parameters (the ``pretrained:`` section of params.yaml) -> one fine-tuning run ->
zero-shot -> the whole stage (resumable) -> records, timings and losses read back. What the records say (summaries
over seeds, the paper's claims) is ``lengen.finetune_claims``, outside this module so that it is outside a
fine-tune's fingerprint; the figures are drawn by ``lengen.plots.pretrained``, the claims worded by ``lengen.claims``.

Runs. Each ``(group, init)`` in ``pretrained.runs``, at each seed of ``pretrained.seeds``, fine-tunes
:func:`lengen.pretrained.build_model` through the one run engine (``lengen.engine``: Lightning, resumable,
read back when finished, fingerprint over parameters and code) on the group's training stream
(``lengen.data.LengenDataModule``: the same tasks, formats, held-out partition and per-batch determinism as
the small-model runs) with the project's optimizer and schedule (``lengen.system``), then scores every
(task, length) with ``lengen.evaluate.score_sets`` — the wrapper speaks lengen token ids, so nothing is re-implemented.
Full fine-tuning, not LoRA: at this size on CPU a LoRA step (r=16 on every projection) was only ~15%
faster than a full step with fused AdamW (measured: 2.0 vs 2.4 s at batch 16, 1 thread) and learns more
slowly per step. A seed draws the scratch initialization and the new tokens' embedding rows (so it
matters to the zero-shot check too); the training stream and the evaluation sets are ``data.seed``'s,
the same at every seed, as for the small-model runs.

Records are the small-model runs' tidy format (``lengen.records.RECORD_FIELDS`` + ``final``), one CSV
per run in ``reports/pretrained/records/``; the ``pos_encoding`` column holds the **initialization**
(``pretrained`` | ``scratch``; both models use SmolLM2's RoPE). Run ids are the small-model runs' scheme with
the initialization for the encoding, ``<group>-<init>-s<seed>``; the zero-shot check is the run
``<group>-zero_shot-s<seed>`` at step 0. ``reports/pretrained/runs/<run_id>/<fingerprint>/`` is the engine's run
directory (``run.json`` with timings and provenance, the Lightning log with the loss per step).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from lengen import paths
from lengen.config import Config, DataConfig, GroupConfig, PretrainedParams, run_id
from lengen.data import LengenDataModule, make_eval_sets
from lengen.engine import Evaluate, Outcome, RunSpec, fit, read_back
from lengen.evaluate import score_sets
from lengen.pretrained import MODEL_DIR, PROVENANCE, build_model
from lengen.records import RECORD_FIELDS, summarize
from lengen.runtime import tally, trained_on
from lengen.system import LengenSystem

BETAS = (0.9, 0.98)  # the paper's AdamW betas (as the small-model runs)
EPS = 1e-8
TRAINED_ON = "trained_on.json"  # in the stage's directory: where its runs trained (runtime.tally)


# ---------------------------------------------------------------------------------------------
# Parameters


def load_params(cfg: Config) -> PretrainedParams:
    """The ``pretrained:`` section (typed and validated by ``lengen.config`` with every other section)."""
    if cfg.pretrained is None:
        raise ValueError(f"params: pretrained: section missing in the {cfg.profile!r} profile")
    return cfg.pretrained


# ---------------------------------------------------------------------------------------------
# One run


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning job: a group from one initialization at one seed; ``zero_shot``: no steps, main task only."""

    group_name: str
    group: GroupConfig
    init: str
    seed: int  # one of params.seeds
    params: PretrainedParams
    data: DataConfig
    zero_shot: bool = False

    @property
    def run_id(self) -> str:
        return run_id(self.group_name, "zero_shot" if self.zero_shot else self.init, self.seed)

    @property
    def pos_encoding(self) -> str:
        """The records' ``pos_encoding`` column: the initialization (see the module docstring)."""
        return self.init

    def fingerprint_dict(self, model_dir: Path = MODEL_DIR) -> dict:
        """Everything that determines the run's records (the checkpoint's provenance included)."""
        p = dataclasses.asdict(self.params)
        # not result-determining; of the seeds, only this run's own counts (adding a seed keeps the others).
        # threads stays: on a CPU it is part of the float path (1 vs 2 threads differ in the last bits).
        for k in ("groups", "runs", "claims", "seeds", "eval_batch_size"):
            p.pop(k)
        prov = Path(model_dir) / PROVENANCE
        data = {k: getattr(self.data, k) for k in ("seed", "holdout_modulus", "eval_step")}  # what the stage reads
        return dict(
            params=p,
            seed=self.seed,
            group=self.group.fingerprint_dict(),
            init=self.init,
            zero_shot=self.zero_shot,
            data=data,
            checkpoint=prov.read_text() if prov.exists() else None,
        )


CODE = ("lengen.finetune",)  # the code a fine-tune's result depends on (its import closure)


class PretrainedSystem(LengenSystem):
    """The core system (loss, AdamW, schedule) around the wrapped pretrained LM instead of lengen's model."""

    def __init__(self, model_name: str, init: str, seed: int, model_dir: str, **optim):
        super().__init__(
            model_config={"name": model_name, "init": init, "seed": seed, "model_dir": str(model_dir)}, **optim
        )

    def build_model(self) -> torch.nn.Module:
        c = self.hparams.model_config
        return build_model(c["name"], c["init"], c["seed"], Path(c["model_dir"]))


def run_spec(run: FinetuneRun, model_dir: Path = MODEL_DIR, out_dir: Path = paths.PRETRAINED_DIR) -> RunSpec:
    """The engine's view of a fine-tune: ``<out_dir>/runs/<run id>/<fingerprint>/``."""
    p = run.params
    return RunSpec(
        run_id=run.run_id,
        root=Path(out_dir) / "runs",
        params=run.fingerprint_dict(model_dir),
        code=CODE,
        seed=run.seed,
        steps=0 if run.zero_shot else p.steps,
        precision=p.precision,
        threads=p.threads,
        grad_clip=p.grad_clip,
        eval_every=p.eval_every,
        log_every_n_steps=1,
        extra_info={"batch_size": p.batch_size, "model": p.model, "init": run.init, "zero_shot": run.zero_shot},
    )


def finetune(
    run: FinetuneRun, model_dir: Path = MODEL_DIR, out_dir: Path = paths.PRETRAINED_DIR, progress: bool = True
) -> pd.DataFrame:
    """Fine-tune through the engine (none for zero-shot) or read the finished run back; writes and returns
    the run's records (``<out_dir>/records/<run_id>.csv``)."""
    return _fit(run, model_dir, out_dir, progress).records


def _fit(run: FinetuneRun, model_dir: Path, out_dir: Path, progress: bool) -> Outcome:
    """:func:`finetune`'s work; the outcome's records are the stage's columns, its info the run's ``run.json``."""
    p, d = run.params, run.data
    spec = run_spec(run, model_dir, out_dir)

    def build():
        steps = spec.steps
        system = PretrainedSystem(
            p.model,
            run.init,
            run.seed,
            str(model_dir),
            lr=p.lr,
            betas=BETAS,
            eps=EPS,
            weight_decay=p.weight_decay,
            warmup_steps=round(p.warmup_frac * steps),
            decay_steps=round(p.decay_frac * steps),
            total_steps=steps,
            min_lr_frac=0.0,
            fused=True,
        )  # fused AdamW: 3-6x faster optimizer steps over 135M parameters
        sets = make_eval_sets(run.group.eval_keys(d.eval_step), p.n_eval, d.seed, d.holdout_modulus)

        def score(model, step: int, final: bool) -> list[dict]:
            return score_sets(
                model,
                sets,
                run_id=run.run_id,
                group_name=run.group_name,
                group=run.group,
                step=step,
                seed=run.seed,
                pos_encoding=run.pos_encoding,
                batch_size=p.eval_batch_size,
            )

        data = LengenDataModule(run.group, p.batch_size, d.seed, d.holdout_modulus)
        return system, data, Evaluate(score, p.eval_every, p.precision, spec.run_dir)

    with warnings.catch_warnings():
        # Lightning warns that the checkpoint's modules start in eval mode (transformers loads them so); the
        # model has no dropout (SmolLM2: attention_dropout 0), so train and eval mode compute the same.
        warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
        out = fit(spec, build, progress=progress)
    records = out.records[[*RECORD_FIELDS, "final"]]
    rec_file = Path(out_dir) / "records" / f"{run.run_id}.csv"
    rec_file.parent.mkdir(parents=True, exist_ok=True)
    records.to_csv(rec_file, index=False)
    return dataclasses.replace(out, records=records)


def stage_runs(cfg: Config) -> list[FinetuneRun]:
    """Seed by seed (a stage stopped part-way has whole seeds): the zero-shot checks (one per distinct main
    task, on the first group that has it, auxiliaries dropped: the check is on the main task), then every
    configured (group, init) fine-tune."""
    p = load_params(cfg)
    checks, seen = [], set()
    for g, inits in p.runs.items():
        group = p.groups[g]
        if "pretrained" in inits and group.main_task not in seen:
            seen.add(group.main_task)
            checks.append((g, dataclasses.replace(group, aux={}, baseline=None)))
    out = []
    for s in p.seeds:
        out += [FinetuneRun(g, main_only, "pretrained", s, p, cfg.data, zero_shot=True) for g, main_only in checks]
        out += [FinetuneRun(g, p.groups[g], init, s, p, cfg.data) for g, inits in p.runs.items() for init in inits]
    return out


def runs_of(cfg: Config, group: str, init: str) -> list[FinetuneRun]:
    """The runs of ``(group, init)``, one per seed; ``init="zero_shot"``: the zero-shot checks of the group's main
    task (run on the first group that has it)."""
    runs = stage_runs(cfg)
    if init == "zero_shot":
        task = load_params(cfg).groups[group].main_task
        return [r for r in runs if r.zero_shot and r.group.main_task == task]
    return [r for r in runs if not r.zero_shot and r.group_name == group and r.init == init]


def workers(cfg: Config) -> int:
    """Fine-tunes trained side by side: one per ``pretrained.threads`` of the CPU's usable cores (two 1-thread
    fine-tunes trained 1.26x as many as one 2-thread fine-tune on 2 cores: benchmarks/parallel_runs_finetune_zen3.json);
    one at a time on an accelerator."""
    if torch.cuda.is_available():
        return 1
    return max(1, len(os.sched_getaffinity(0)) // load_params(cfg).threads)


def run_stage(
    cfg: Config, model_dir: Path = MODEL_DIR, out_dir: Path = paths.PRETRAINED_DIR, progress: bool = True
) -> pd.DataFrame:
    """Every run of the stage (resuming; :func:`workers` at a time, in spawned processes: a forked OpenMP pool
    can hang), then ``summary.json`` and ``trained_on.json`` (where the runs trained, for the report headers);
    returns all records."""
    runs = stage_runs(cfg)
    n = min(workers(cfg), sum(read_back(run_spec(r, model_dir, out_dir)) is None for r in runs))
    if n > 1:
        # seed by seed, each seed's fine-tunes before its short zero-shot checks (these fill the last gaps)
        order = sorted(range(len(runs)), key=lambda i: (runs[i].seed, runs[i].zero_shot))
        with ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {i: pool.submit(_fit, runs[i], model_dir, out_dir, False) for i in order}
            outcomes = [futures[i].result() for i in range(len(runs))]
    else:
        outcomes = [_fit(r, model_dir, out_dir, progress) for r in runs]
    records = pd.concat([o.records for o in outcomes], ignore_index=True)
    summary = summarize_runs(records, cfg).set_index("run_id").select_dtypes("number")  # DVC metrics: numbers
    clean = summary.astype(object).where(summary.notna(), None)  # NaN is not JSON: null
    (Path(out_dir) / "summary.json").write_text(json.dumps(clean.to_dict("index"), indent=1) + "\n")
    machines = tally(trained_on(o.info) for o in outcomes)
    (Path(out_dir) / TRAINED_ON).write_text(json.dumps(machines, indent=1) + "\n")
    return records


def _finished(cfg: Config, out_dir: Path, model_dir: Path = MODEL_DIR) -> list[tuple[FinetuneRun, Outcome]]:
    """The configured runs and their outcomes as the engine stored them (never stale ones of runs no longer
    configured)."""
    done = [(r, read_back(run_spec(r, model_dir, out_dir))) for r in stage_runs(cfg)]
    missing = [r.run_id for r, o in done if o is None]
    if missing:
        raise FileNotFoundError(
            f"pretrained-comparison runs {missing} not finished in {out_dir}; run `dvc repro pretrained`"
        )
    return done


def load_records(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR, missing_ok: bool = False) -> pd.DataFrame | None:
    """The stage's records, every configured run (for the figures notebook); with ``missing_ok``, None while
    some are missing (a study produced in pieces: its claims are then "not tested")."""
    files = [Path(out_dir) / "records" / f"{r.run_id}.csv" for r in stage_runs(cfg)]
    missing = [f.name for f in files if not f.exists()]
    if missing and missing_ok:
        return None
    if missing:
        raise FileNotFoundError(f"no pretrained-comparison records {missing} in {out_dir}; run `dvc repro pretrained`")
    return pd.concat([pd.read_csv(f) for f in files], ignore_index=True)


def load_trained_on(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR) -> list[dict]:
    """Where the stage's runs trained (``lengen.runtime.tally``); runs with records but no such file (written
    before it existed) count as unknown; empty where the profile has no pretrained comparison."""
    path = Path(out_dir) / TRAINED_ON
    if path.exists():
        return json.loads(path.read_text())
    runs = stage_runs(cfg) if cfg.pretrained else []
    return tally(None for r in runs if (Path(out_dir) / "records" / f"{r.run_id}.csv").exists())


def timings(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR, model_dir: Path = MODEL_DIR) -> pd.DataFrame:
    """What the budget bought: per run, steps × batch, seconds per step (evaluation included), wall time."""
    rows = []
    for _, o in _finished(cfg, out_dir, model_dir):
        i = o.info
        rows.append(
            dict(
                run_id=i["run_id"],
                steps=i["steps"],
                batch_size=i["batch_size"],
                examples=i["steps"] * i["batch_size"],
                wall_s=i["wall_s"],
                s_per_step=round(i["wall_s"] / i["steps"], 3) if i["steps"] else None,
                threads=i["threads"],
                device=i["provenance"]["device"],
            )
        )
    return pd.DataFrame(rows)


LOSS_COLUMNS = ("run_id", "fine_tune", "seed", "step", "loss")  # fine_tune: <group>-<init>, the run id less its seed


def load_losses(cfg: Config, out_dir: Path = paths.PRETRAINED_DIR, model_dir: Path = MODEL_DIR) -> pd.DataFrame:
    """Training loss per run and step (tidy, :data:`LOSS_COLUMNS`), from each run's Lightning CSV log."""
    frames = []
    for r, o in _finished(cfg, out_dir, model_dir):
        log = o.run_dir / "logs" / "metrics.csv"
        if o.info["steps"] and log.exists():
            df = pd.read_csv(log).dropna(subset=["train/loss"])
            frames.append(
                pd.DataFrame(
                    dict(
                        run_id=r.run_id,
                        fine_tune=f"{r.group_name}-{r.init}",
                        seed=r.seed,
                        step=df.step + 1,
                        loss=df["train/loss"],
                    )
                )
            )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(LOSS_COLUMNS))


def summarize_runs(records: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    """One row per run: main-task exact match in-distribution / transfer / beyond, aux in-distribution
    and the generalization gap (``lengen.records.summarize``, the small-model runs' summary)."""
    rows = []
    for run in stage_runs(cfg):
        df = records[records.run_id == run.run_id]
        if len(df):
            rows.append(dict(summarize(df, run), zero_shot=run.zero_shot))
    return pd.DataFrame(rows)
