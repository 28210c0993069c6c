"""Training pairs, meta-learning tasks and the multi-step loss schedule.

A pair is (input, target): the HR patch degraded to LR, clipped to [0, 1] and
bicubically upsampled back to the HR size (the network's input, ZSSR convention),
and the HR patch itself. Pretraining degrades with the MATLAB bicubic downscale;
a meta-learning task with a Gaussian kernel from the paper's distribution
(REFERENCE section 3) and direct or bicubic subsampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.kernels import gaussian_kernel
from napari_mzsr.core.resize import imresize_tensor


def kernel_size(scale: float) -> int:
    """Odd grid covering +-3 sigma of the widest kernel at ``scale`` (variance 2.5 s);
    15 at x2, the paper's size."""
    return 2 * math.ceil(3 * math.sqrt(2.5 * scale)) + 1


def sample_kernel(rng: np.random.Generator, scale: float, variance_min: float = 1.0) -> np.ndarray:
    """A Gaussian kernel from the paper's distribution: theta ~ U[0, pi),
    l1 ~ U[m, 2.5 s], l2 ~ U[m, l1] (variances), so its range grows with the scale.

    The paper has ``m = variance_min = 1``; a smaller ``m`` also covers sharp kernels
    such as g^d_0.2, which lie outside the paper's range.
    """
    theta = rng.uniform(0.0, math.pi)
    l1 = rng.uniform(variance_min, 2.5 * scale)
    l2 = rng.uniform(variance_min, l1)
    return gaussian_kernel(l1, l2, theta, size=kernel_size(scale))


def task_kernel(
    rng: np.random.Generator, scale: float, variance_min: float = 1.0, identity_share: float = 0.0
) -> np.ndarray:
    """A meta-learning task's kernel: with probability ``identity_share`` the 1x1
    identity (no blur: with bicubic subsampling, the plain MATLAB-bicubic LR of the
    paper's Table 1), else :func:`sample_kernel`. Draws nothing extra when
    ``identity_share`` is 0, so recipes without it keep their random stream."""
    if identity_share > 0 and rng.random() < identity_share:
        return np.ones((1, 1))
    return sample_kernel(rng, scale, variance_min)


def make_pairs(
    hr: torch.Tensor,
    scale: float,
    kernel: torch.Tensor | None = None,
    degradation: str = "direct",
) -> torch.Tensor:
    """Network inputs for HR patches ``hr`` (N, C, P, P).

    Parameters
    ----------
    hr : Tensor
        HR patches in [0, 1]; also the targets.
    scale : float
        Downscaling factor (non-integer allowed).
    kernel : Tensor or None
        Blur kernel; ``None`` means the plain MATLAB bicubic downscale of pretraining.
    degradation : {"direct", "bicubic"}
        Subsampling after the blur.

    Returns
    -------
    Tensor (N, C, P, P): the clipped LR upsampled bicubically to the HR size.
    """
    if kernel is None:
        lr = imresize_tensor(hr, 1.0 / scale)
    else:
        lr = degrade_tensor(hr, kernel, scale, degradation)
    return imresize_tensor(lr.clamp(0, 1), scale, output_shape=hr.shape[-2:])


def multi_step_weights(iteration: int, steps: int, anneal_iterations: int) -> np.ndarray:
    """MAML++ multi-step loss weights of the query losses after each inner step.

    They start uniform (``1 / steps``) and move linearly, within ``anneal_iterations``
    meta-iterations, to a floor of ``0.03 / steps`` on every step but the last, which
    gets the rest. (The original MZSR code meant to do this but, by a bug, kept the
    weights uniform.) They always sum to one.
    """
    weights = np.full(steps, 1.0 / steps)
    if steps == 1:
        return weights
    decay = 1.0 / steps / max(anneal_iterations, 1)
    floor = 0.03 / steps
    weights[:-1] = np.maximum(weights[:-1] - iteration * decay, floor)
    weights[-1] = min(weights[-1] + iteration * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return weights
