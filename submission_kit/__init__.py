"""The submission library: what sample submissions and participants' Python code may import at run time.

The harness mounts this package (and nothing else of the project) read-only into every sandbox and puts it on
the run's ``PYTHONPATH``; its content, weights included, is part of every work unit's key (the environment
fingerprint, :mod:`harness.library`). Importing the package itself imports no third-party module; torch is
imported by the modules that need it.

Modules: ``contract`` (the uint8 PNG / integer-ε contract, shared with the referee; numpy and Pillow only),
``sdk`` (arguments, batches, tensors in [0, 1], saving), ``zoo`` (reference CIFAR-10 models and their weights),
``attack_methods`` (gradient and universal attacks, the wrapper sample attacks use), ``defense_blocks``
(classify wrapper, denoising filters, v_def), and the run-time parts of the seed methods: ``hgd`` (Liao et al.
2018), ``prn`` (Akhtar et al. 2018), ``feature_denoising`` (Xie et al. 2019).
"""
