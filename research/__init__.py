"""Research code around the submission library: training, data generation, tables, metrics and analyses.

Nothing here is mounted into a sandbox or hashed into a unit key; commands run as ``python -m research.<topic>.<x>``
from the repository root. One folder per paper or topic:

``zoo`` (CIFAR-10 model training and evaluation), ``uap`` (universal perturbations, Moosavi-Dezfooli et al. 2017),
``lee2018`` (v_def of Lee et al. 2018), ``hgd`` (Liao et al. 2018), ``prn`` (Akhtar et al. 2018),
``feature_denoising`` (Xie et al. 2019), ``analysis`` (analyses any defense can use); ``cifar10`` (the data set
reader), ``provenance`` (software/hardware records written next to every result) and ``cli`` (the parent parser
of every command: ``--seed``, ``--out``, ``--threads``, ``--images``) are shared by all of them. Training functions
take their recipe as a frozen, keyword-only config dataclass (``TrainConfig`` and the like) whose defaults are the
recipe the committed weights were made with.
"""
