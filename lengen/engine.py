"""The one run engine: every kind of training in lengen goes through :func:`fit`.

Main runs (``lengen.train``), formal-framework runs (``lengen.formal.train``) and fine-tunes of the
pretrained model (``lengen.finetune``) differ only in their system (a LightningModule), their training
stream and how they are scored. Everything else lives here, built on Lightning's own parts:

- the ``Trainer``; ``ModelCheckpoint`` for ``last.ckpt`` (the full training state a killed run resumes
  from) and, where the head analysis needs them, weights-only checkpoints at every evaluation step;
  ``EarlyStopping`` where a protocol stops early (checked right after each evaluation);
- one evaluation path: the :class:`Evaluate` callback calls the run's scoring function every
  ``eval_every`` steps and once after the last step, and keeps the tidy records in its state, so they
  travel inside ``last.ckpt`` and a resumed run ends with the complete history;
- one fingerprint: a hash of the run's parameters **and** of the code that determines its result
  (``lengen.sources``: the import closure of the run's modules, comments and formatting
  ignored). A finished run is read back only under the same fingerprint; any change trains anew.

A run lives in ``<root>/<run_id>/<fingerprint>/``::

    checkpoints/last.ckpt          full state while the run is unfinished (deleted once it finishes)
    checkpoints/step=000500.ckpt   weights + hyperparameters at each evaluation (``keep_checkpoints``)
    logs/metrics.csv               Lightning's CSV log (namespaced keys: train/loss, lr-AdamW, val/...)
    records.jsonl                  the records so far (rewritten after each evaluation, to watch a run)
    segments.jsonl                 where each start of an unfinished run trained (kept in run.json at the end)
    records.csv, run.json          written when the run finishes; run.json marks it finished

A run trains a compiled model (``torch.compile`` of the network's forward, dynamic shapes so the varying
sequence lengths share one graph) where that pays: :func:`resolve_compile` reads ``RunSpec.compile``
(``auto`` | ``compiled`` | ``eager``); ``auto`` compiles only on CPUs measured to gain and only for runs
long enough to pay back the one-time compile (benchmarks/README.md, speed). The compile happens in the
first steps and is part of the run's wall time; ``run.json`` says whether the run was compiled.

Because the fingerprint is part of the path, runs of two profiles or two parameter sets that share a run
id never overwrite each other: switching back finds the earlier run finished and reads it back.
Checkpoints are written atomically (temporary file, then rename), so a kill never leaves a truncated
``last.ckpt``; a checkpoint damaged otherwise is reported with its path and what to do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lengen.config.core import COMPILE_SETTINGS
from lengen.runtime import autocast_context, default_device, provenance, resolve_precision
from lengen.sources import code_hash, import_closure
from lengen.system import LengenSystem

# CPU kernels (torch.backends.cpu.get_cpu_capability()) on which a compiled training step was measured faster
# than eager, at both model sizes and precisions (benchmarks/README.md, speed): AVX-512 CPUs (Intel Xeon with
# AMX, AMD Zen 4). AVX2-only CPUs and GPUs are not measured yet, so ``auto`` trains them eager.
COMPILE_PAYS_ON = ("AVX512",)
# The compile costs ~15-40 s with a warm inductor cache (minutes on a cold one) on a 2-core CPU, and saves
# ~30-45% of each step: shorter runs do not pay it back, so ``auto`` trains them eager.
COMPILE_MIN_STEPS = 1000

Rows = list[dict]
ScoreFn = Callable[[torch.nn.Module, int, bool], Rows]  # (model, step, final) -> tidy records


@dataclass(frozen=True)
class StopRule:
    """Stop once the monitored score (logged by :class:`Evaluate`) reaches ``at``."""

    monitor: str
    at: float


@dataclass(frozen=True)
class RunSpec:
    """What the engine needs to know about one run, whatever its kind."""

    run_id: str
    root: Path  # runs of this kind live in root/<run_id>/<fingerprint>/
    params: Mapping  # JSON-able: everything that determines the result (not how fast it is computed)
    code: tuple[str, ...]  # modules whose import closure determines the result (lengen.sources roots)
    seed: int  # initialization seed (the data stream has its own)
    steps: int  # 0: no training, only the final evaluation (e.g. a zero-shot check)
    precision: str = "32-true"  # Lightning precision, or "auto" (lengen.runtime.resolve_precision)
    threads: int = 1  # torch intra-op threads on CPU
    devices: int = 1  # > 1: Lightning's DDP over that many devices
    grad_clip: float = 0.0  # 0 = off
    eval_every: int = 0  # steps between evaluations (0 = only after the last step)
    checkpoint_every: int | None = None  # steps between last.ckpt saves; None = eval_every, 0 = never
    keep_checkpoints: bool = False  # a weights-only checkpoint at every evaluation step (head analysis)
    stop: StopRule | None = None
    log_every_n_steps: int = 50
    compile: str = "auto"  # auto | compiled | eager: train a torch.compile'd network (resolve_compile)
    extra_info: Mapping = field(default_factory=dict)  # more to record in run.json (not fingerprinted)

    @cached_property
    def fingerprint(self) -> str:
        blob = json.dumps({"params": self.params, "code": self.code_hash}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @cached_property
    def code_hash(self) -> str:
        """Hash of the code roots' import closure; a root given as a .py file outside the package counts too."""
        files = import_closure(*self.code) + sorted(str(c) for c in self.code if str(c).endswith(".py"))
        return code_hash(files)

    def __post_init__(self):
        if self.compile not in COMPILE_SETTINGS:
            raise ValueError(f"compile={self.compile!r} must be one of {COMPILE_SETTINGS}")

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / self.run_id / self.fingerprint

    @property
    def every_checkpoint(self) -> int:
        return self.eval_every if self.checkpoint_every is None else self.checkpoint_every


@dataclass
class Outcome:
    records: pd.DataFrame  # every evaluation, tidy (the scoring function's rows + step/final)
    info: dict  # run.json: the spec, fingerprint, steps trained, wall time, provenance
    run_dir: Path
    read_back: bool  # True: finished earlier under the same fingerprint, nothing trained


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read; the message names the file and what to do."""


# ---------------------------------------------------------------------------------------------------------
# Lightning parts


class Evaluate(L.Callback):
    """The one evaluation path: ``score(model, step, final)`` every ``every`` steps and after the last.

    The records are the callback's state, saved in every checkpoint, so a run killed and resumed ends
    with the full history. ``monitor`` (optional) turns an evaluation's rows into one number, logged as
    ``monitor_name`` for :class:`StopAtScore` and the CSV log.
    """

    def __init__(
        self,
        score: ScoreFn,
        every: int,
        precision: str,
        run_dir: Path,
        monitor: Callable[[Rows], float] | None = None,
        monitor_name: str = "val/score",
        announce: Callable[[Rows, int], str] | None = None,
    ):
        self.score, self.every, self.precision, self.run_dir = score, every, precision, Path(run_dir)
        self.monitor, self.monitor_name, self.announce = monitor, monitor_name, announce
        self.records: Rows = []
        self.evaluated: list[tuple[int, bool]] = []  # (step, final) already scored
        self.wall_s_before = 0.0  # training time spent by earlier sessions of this run
        self._t0 = time.time()

    def evaluate(self, model: torch.nn.Module, step: int, final: bool, is_global_zero: bool = True) -> Rows:
        if (step, final) in self.evaluated:
            return []
        was_training = model.training
        model.eval()
        device = next(model.parameters()).device
        # eager even when the network is compiled for training: an inference graph would be one more compile
        # (~20-30 s) for evaluations that take a few seconds each (benchmarks/README.md, speed)
        with torch.no_grad(), autocast_context(self.precision, device), torch.compiler.set_stance("force_eager"):
            rows = [{**r, "step": step, "final": final} for r in self.score(model, step, final)]
        model.train(was_training)
        self.records.extend(rows)
        self.evaluated.append((step, final))
        if is_global_zero:  # under DDP every rank scores the same sets; one writes and reports
            with open(self.run_dir / "records.jsonl", "w") as f:
                f.writelines(json.dumps(r, default=str) + "\n" for r in self.records)
            if self.announce:
                print(self.announce(rows, step), flush=True)
        return rows

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if not self.every or step % self.every or step >= trainer.max_steps:
            return  # the evaluation after the last step is the final one (fit() calls it)
        rows = self.evaluate(pl_module.model, step, final=False, is_global_zero=trainer.is_global_zero)
        if self.monitor and rows:
            pl_module.log(self.monitor_name, float(self.monitor(rows)), on_step=True, on_epoch=False)

    def wall_s(self) -> float:
        return self.wall_s_before + time.time() - self._t0

    def state_dict(self) -> dict:
        return {"records": self.records, "evaluated": self.evaluated, "wall_s": self.wall_s()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.records = list(state_dict["records"])
        self.evaluated = [tuple(e) for e in state_dict["evaluated"]]
        self.wall_s_before = float(state_dict["wall_s"])
        self._t0 = time.time()


class StopAtScore(EarlyStopping):
    """Lightning's EarlyStopping on the score :class:`Evaluate` logs, checked right after each evaluation.

    The training stream is endless, so there is no epoch end or validation loop to hook; patience is
    unlimited: only reaching the threshold stops. Lightning's threshold test is strict (``>``) and runs on the
    logged float32 score, so "reaches ``at``" is tested as ``> at - 1e-6``: distinct from ``at`` in float32
    (``at - 1e-9`` rounds to ``at``), and above ``at - 1/n`` for scores that are fractions of n < 10^6 examples.
    """

    def __init__(self, rule: StopRule, every: int):
        super().__init__(
            monitor=rule.monitor,
            mode="max",
            stopping_threshold=rule.at - 1e-6,
            patience=2**31,
            check_on_train_epoch_end=False,
            strict=False,
            verbose=False,
        )
        self.every = every

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.every and trainer.global_step % self.every == 0:
            self._run_early_stopping_check(trainer)

    def on_validation_end(self, trainer, pl_module):
        pass  # no validation loop: checked in on_train_batch_end


class KeptCheckpoints(ModelCheckpoint):
    """A weights-only checkpoint (``step=000500.ckpt``) at every evaluation step, for the head analysis."""

    def __init__(self, dirpath: Path, every: int):
        super().__init__(
            dirpath=dirpath,
            filename="step={step:06d}",
            auto_insert_metric_name=False,
            every_n_train_steps=every,
            save_top_k=-1,
            save_weights_only=True,
            enable_version_counter=False,
        )

    @property
    def state_key(self) -> str:  # distinct from the resume checkpoint's (same trigger, other role)
        return "KeptCheckpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file, then rename: a kill mid-write leaves the previous checkpoint intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        tmp = Path(f"{path}.tmp")
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)


def check_checkpoint(path: Path) -> None:
    """Raise :class:`CheckpointError` naming ``path`` if it cannot be loaded."""
    try:
        torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as e:  # noqa: BLE001 -- any failure to read means the same to the user
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is truncated or corrupt. "
            f"Delete its run directory ({Path(path).parent.parent}) to train the run again."
        ) from e


def load_system(checkpoint: Path, cls: type[L.LightningModule] | None = None) -> L.LightningModule:
    """A trained system from a (kept) checkpoint, on CPU; a damaged file is named with what to do."""
    cls = cls or LengenSystem
    check_checkpoint(Path(checkpoint))
    return cls.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)


# ---------------------------------------------------------------------------------------------------------
# Compiled training


def resolve_compile(setting: str, device: torch.device | str, steps: int) -> bool:
    """Whether a run of ``steps`` steps on ``device`` trains compiled: ``compiled`` / ``eager`` as said;
    ``auto`` compiles on the CPUs of :data:`COMPILE_PAYS_ON` (where a C++ compiler for inductor is found)
    for runs of at least :data:`COMPILE_MIN_STEPS` steps, else trains eager."""
    if setting not in COMPILE_SETTINGS:
        raise ValueError(f"compile={setting!r} must be one of {COMPILE_SETTINGS}")
    if setting != "auto" or steps <= 0:
        return setting == "compiled" and steps > 0
    return (
        torch.device(device).type == "cpu"
        and torch.backends.cpu.get_cpu_capability() in COMPILE_PAYS_ON
        and steps >= COMPILE_MIN_STEPS
        and any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++"))
    )


def compile_network(system: L.LightningModule) -> None:
    """Compile the network's forward in place (``nn.Module.compile``: parameter names and checkpoints stay
    as they are). Dynamic shapes: batches of every sequence length run one graph instead of one each."""
    system.model.compile(dynamic=True)


# ---------------------------------------------------------------------------------------------------------
# One run


def read_back(spec: RunSpec) -> Outcome | None:
    """The finished run under this fingerprint, or None."""
    d = spec.run_dir
    info_file, records_file = d / "run.json", d / "records.csv"
    if not (info_file.exists() and records_file.exists()):
        return None
    info = json.loads(info_file.read_text())
    if info.get("fingerprint") != spec.fingerprint or not info.get("finished"):
        return None
    return Outcome(pd.read_csv(records_file), info, d, read_back=True)


def fit(
    spec: RunSpec,
    build: Callable[[], tuple[L.LightningModule, object, Evaluate]],
    progress: bool = True,
    callbacks: list[L.Callback] | None = None,
) -> Outcome:
    """Train the run (resuming from ``last.ckpt``) or read it back if it already finished.

    ``build()`` -> (system, training data, evaluator): the data is a LightningDataModule or a DataLoader;
    it is called only when something must be trained or scored.
    """
    done = read_back(spec)
    if done is not None:
        if progress:
            print(
                f"[engine] {spec.run_id}: finished earlier under fingerprint {spec.fingerprint}, read back", flush=True
            )
        return done
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners in the reports
    d, threads = spec.run_dir, torch.get_num_threads()
    ckpt_dir = d / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(spec.threads)
    try:
        prov = provenance()  # where and from which commit the run is made: taken before the code can change
        # A killed run may resume on another machine, another float path: every start notes where it trains, and
        # run.json keeps them all (``runtime.trained_on`` names each machine). A start without a checkpoint begins
        # the list again (nothing earlier is in the run); one line per machine under DDP.
        segments, resumed = d / "segments.jsonl", (ckpt_dir / "last.ckpt").exists()
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            with segments.open("a" if resumed else "w") as f:
                keys = ("processor", "cpu_id", "float_path", "gpu", "date")
                f.write(json.dumps({k: prov[k] for k in keys} | {"resumed": resumed}) + "\n")
        L.seed_everything(spec.seed, workers=True, verbose=False)
        system, data, evaluator = build()
        precision = resolve_precision(spec.precision, default_device())
        # torch.compile's cache lives as long as the process, and a process may train many runs (the formal
        # stage's workers, a notebook): after ``recompile_limit`` (8) graphs of the forward dynamo runs the rest
        # eager, another float path, so a run's digits would depend on what the process trained before. Every
        # run starts from an empty cache, as in a fresh process (benchmarks/compile_history.py).
        torch.compiler.reset()
        compiled = resolve_compile(spec.compile, default_device(), spec.steps)
        if compiled:
            compile_network(system)
        extra: list[L.Callback] = [evaluator]
        if spec.stop is not None:
            extra.append(StopAtScore(spec.stop, spec.eval_every))
        if spec.keep_checkpoints and spec.eval_every:
            extra.append(KeptCheckpoints(ckpt_dir, spec.eval_every))
        if spec.every_checkpoint:
            extra.append(
                ModelCheckpoint(
                    dirpath=ckpt_dir,
                    every_n_train_steps=spec.every_checkpoint,
                    save_top_k=0,
                    save_last=True,
                    enable_version_counter=False,
                )
            )
        trainer = L.Trainer(
            max_steps=spec.steps,
            accelerator="auto",
            devices=spec.devices,
            strategy="ddp" if spec.devices > 1 else "auto",  # NCCL on GPUs, gloo on CPUs (Lightning's choice)
            num_nodes=int(os.environ.get("LENGEN_NUM_NODES", "1")),  # several nodes: docs/scaling.md
            precision=precision,
            gradient_clip_val=spec.grad_clip or None,
            logger=CSVLogger(d, name="logs", version=""),
            callbacks=[*extra, LearningRateMonitor(logging_interval="step"), *(callbacks or [])],
            plugins=[AtomicCheckpointIO()],
            enable_checkpointing=bool(spec.every_checkpoint),
            enable_progress_bar=progress,
            enable_model_summary=False,
            log_every_n_steps=spec.log_every_n_steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        last = ckpt_dir / "last.ckpt"
        if last.exists():
            check_checkpoint(last)
        if spec.steps:
            fit_kw = {"datamodule": data} if isinstance(data, L.LightningDataModule) else {"train_dataloaders": data}
            trainer.fit(system, ckpt_path=last if last.exists() else None, **fit_kw)
        step = trainer.global_step
        evaluator.evaluate(system.model, step, final=True, is_global_zero=trainer.is_global_zero)
        if spec.keep_checkpoints and spec.steps and (not spec.eval_every or step % spec.eval_every):
            # The last step was no evaluation step, so no kept checkpoint holds it. save_checkpoint is collective
            # under DDP (rank 0 writes, every rank waits): every rank calls it, decided without the file system.
            trainer.save_checkpoint(ckpt_dir / f"step={step:06d}.ckpt", weights_only=True)
        if not trainer.is_global_zero:
            return Outcome(pd.DataFrame(evaluator.records), {}, d, read_back=False)
        for path in sorted(ckpt_dir.glob("step=*.ckpt")):  # what the head analysis will read must be whole
            check_checkpoint(path)
        records = pd.DataFrame(evaluator.records)
        records.to_csv(d / "records.csv", index=False)
        prov["float_path"]["compiled"] = compiled  # inductor's kernels are another float path than eager's
        info = {
            "run_id": spec.run_id,
            "fingerprint": spec.fingerprint,
            "finished": True,
            "params": spec.params,
            "code": list(spec.code),
            "code_hash": spec.code_hash,
            "steps": step,
            "stopped_early": spec.steps > 0 and step < spec.steps,
            "wall_s": round(evaluator.wall_s(), 1),
            "threads": spec.threads,
            "devices": spec.devices,
            "precision": precision,
            "compile": {"setting": spec.compile, "compiled": compiled},
            "provenance": prov,
            "segments": [json.loads(line) for line in segments.read_text().splitlines()],
            **spec.extra_info,
        }
        (d / "run.json").write_text(json.dumps(info, indent=1, default=str) + "\n")  # marks the run finished
        last.unlink(missing_ok=True)  # a finished run is read back from its records, never resumed
        segments.unlink()
        return Outcome(records, info, d, read_back=False)
    finally:
        torch.set_num_threads(threads)
