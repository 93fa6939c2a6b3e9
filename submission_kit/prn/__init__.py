"""Perturbation Rectifying Network (PRN) and perturbation detector against universal adversarial perturbations.

N. Akhtar, J. Liu, A. Mian, "Defense against Universal Adversarial Perturbations", CVPR 2018 (the seed paper of
issue 7), at CIFAR-10 scale:

* :mod:`~research.prn.pool` / ``python -m research.prn.make_pool``: pools of real UAPs ρ ∈ 𝒫 (Moosavi-Dezfooli et
  al. 2017), computed with :func:`submission_kit.attack_methods.universal.sgd_universal_perturbation` (Shafahi et al.
  2020,
  the default) or :func:`submission_kit.attack_methods.universal.universal_perturbation` (DeepFool, the seed's),
  disjoint
  train / test pools;
* :mod:`~research.prn.synthetic`: synthetic perturbations 𝒫_s (Algorithm 1 and its ℓ2 variant);
* :mod:`~submission_kit.prn.network` / ``python -m research.prn.train``: the rectifier ℛ (PRN), trained as pre-input
  layers of the frozen target classifier 𝒞;
* :mod:`~submission_kit.prn.detector` / ``python -m research.prn.train_detector``: the detector 𝒟 = ℬ(ℱ(I − ℛ(I))),
  ℱ = log-absolute 2-D DCT of the grayscale difference, ℬ = a binary SVM;
* :mod:`~submission_kit.prn.defense`: the defense (classify 𝒞(ℛ(I)) if 𝒟 detects a perturbation, else 𝒞(I)) used by
  ``defenses/prn`` and ``defenses/prn_always``;
* ``python -m research.prn.metrics``: the seed's Tables 1, 4 and 5 (metrics in
  :mod:`research.analysis.detection_metrics`).

Images are float tensors (N, 3, H, W) in [0, 1]; perturbations are float (3, H, W) on the same scale. See
``docs/prn.md`` for the commands in order, the measured speeds and the scale-downs.
"""
