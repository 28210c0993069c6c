"""Training of MZSR's meta-learned initial point theta_M (REFERENCE sections 3 and 5).

Two stages, each one command configured by a TOML recipe (``training/recipes/``):

``python -m training pretrain --recipe R``
    Large-scale pretraining on MATLAB-bicubic LR/HR pairs (:mod:`training.pretrain`).
``python -m training meta --recipe R --pretrained FILE``
    Meta-transfer learning from the pretrained weights (:mod:`training.meta`).
``python -m training export --checkpoint CKPT --out FILE``
    Writes a theta_M file in the engine's format from any checkpoint (:mod:`training.export`).
``python -m training {pretrain,meta} --recipe R --benchmark N``
    Times N iterations, data prepared beforehand: seconds, FLOPs, GFLOP/s and the share of
    each part (:mod:`training.benchmark`).
``python -m training validate --recipe R --models A.pt B.pt``
    Validation PSNR of finished files on the recipe's held-out images (:mod:`training.evaluate`).
``python -m training.study {run,report} --arms FILE ...``
    Budget-matched recipe studies: arms of stages with equal CPU time (:mod:`training.study`).

Recipe values can be overridden on the command line with ``--set table.key=value``.

Both stages run on one CPU or GPU, or on several processes under ``torchrun``.
"""
