"""lengen: length generalization in transformers, reproduced.

Where things are (read in this order):

- ``lengen.tasks``      task generators ``(rng, length) -> Example`` and their registry
- ``lengen.tokenizer``  character-level vocabulary + special tokens, maze nodes, task markers
- ``lengen.data``       the one formatter, the on-the-fly training stream, fixed evaluation sets
- ``lengen.model``      the Llama-style transformer (RoPE / NoPE / APE), SDPA and hooked paths, KV cache
- ``lengen.system``     the LightningModule (optimizer, schedule) and the per-length evaluation callback
- ``lengen.evaluate``   teacher-forced and greedy exact match, tidy records, the generalization gap
- ``lengen.train``      one run end to end, with resumption; loading records and checkpoints
- ``lengen.config``     frozen dataclasses mirroring ``params.yaml`` (strict validation), profiles
- ``lengen.figures``    seaborn figures from the tidy records
- ``lengen.pretrained`` SmolLM2-135M offline (GGUF -> safetensors) behind the small model's interface
- ``lengen.finetune``   the pretrained comparison: fine-tuning runs, records, claims, figures
- ``lengen.crasp``      an executable C-RASP[periodic, local] interpreter (Huang et al.)
- ``lengen.formal``     the formal framework: 8 algorithmic tasks, 17 languages, programs, training, report
- ``lengen.heads``      head-reuse metrics: attention differences, mean-ablation maps, rho vs the gap
- ``lengen.paths``      project paths (from this file, never the cwd)
"""

from lengen.paths import PROJ_ROOT

__version__ = "0.1.0"
__all__ = ["PROJ_ROOT", "__version__"]
