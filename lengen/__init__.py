"""lengen: length generalization in transformers, reproduced.

Where things are (read in this order):

- ``lengen.tasks``      task generators ``(rng, length) -> Example`` and their registry (markers, ``split``)
- ``lengen.tokenizer``  character-level vocabulary + special tokens, maze nodes, task markers
- ``lengen.config``     frozen dataclasses mirroring ``params.yaml``, every section checked (no torch), profiles
- ``lengen.data``       the one formatter, the prompt hold-out and its leak check, training stream, eval sets
- ``lengen.model``      the Llama-style transformer (RoPE / NoPE / APE), SDPA and hooked paths, KV cache
- ``lengen.system``     the LightningModule: loss, the one optimizer factory and schedule
- ``lengen.engine``     the one run engine (Lightning): evaluation callback, checkpoints, early stop, resume,
                        read-back of finished runs, fingerprints over parameters and code
- ``lengen.sources``    the import closure of a module or notebook and a hash of its code
- ``lengen.evaluate``   teacher-forced and greedy exact match per (task, length)
- ``lengen.records``    the tidy records: schema, loading, per-run summary, the generalization gap
- ``lengen.runtime``    device, precision, CPU and float path, provenance of a result
- ``lengen.train``      a main run (group × position encoding × seed) on the engine, and the stage's outputs
- ``lengen.analysis``   tables and findings over the records (transfer, ranges, gaps, grid)
- ``lengen.plots``      every figure (runs, heads, formal, pretrained) and the one ``save``
- ``lengen.pretrained`` SmolLM2-135M offline (GGUF -> safetensors) behind the small model's interface
- ``lengen.finetune``   the pretrained comparison: fine-tunes on the engine, records, claims
- ``lengen.crasp``      an executable C-RASP[periodic, local] interpreter (Huang et al.)
- ``lengen.formal``     the formal framework: 8 algorithmic tasks, 17 languages, programs, training, report
- ``lengen.heads``      head reuse: probes (probe), one run's rows (run) and their store (store, written right
                        after the run trains: ``python -m lengen.heads``), statistics, the stage's tables (report)
- ``lengen.notebook``   runs a notebook with papermill (the DVC stages' command)
- ``lengen.paths``      project paths (from this file, never the cwd)
"""

from lengen.paths import PROJ_ROOT

__version__ = "0.1.0"
__all__ = ["PROJ_ROOT", "__version__"]
