"""The formal framework of Huang et al. (arXiv 2410.02140): APE vs NoPE on 8 algorithmic tasks and 17
formal languages, C-RASP programs as executable predictions, and predicted-vs-observed.

- ``algorithmic``  the 8 tasks (``<bos> input <sep> answer <eos>``)
- ``languages``    the 17 languages as automata: members at a length, legal-next-symbol targets
- ``programs``     C-RASP[periodic, local] / C-RASP programs (``lengen.crasp``) per task, or the reason
                   the paper gives for why none exists
- ``config``       the ``formal:`` section of params.yaml as frozen dataclasses
- ``data``         ids and targets (LM labels or legal-next sets), batches, evaluation sets per bin
- ``train``        the training system (LM or multi-label objective), the grid -> selection -> seeds protocol
- ``report``       the predicted-vs-observed table and figure from the stage's records
"""
