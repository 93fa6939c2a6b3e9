"""Analyses of classifiers and defenses that are not attacks or defenses themselves.

* :mod:`research.analysis.amplification` -- layer-wise error amplification E_l (Liao et al. 2018, Eq. 6, Fig. 5)
  for any perturbation or defense transformation; ``python -m research.analysis.amplification``.
"""
