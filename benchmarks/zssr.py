"""A ZSSR-style from-scratch baseline (Shocher et al., CVPR 2018; REFERENCE section 9).

A randomly initialised 8-layer network (no biases, as ZSSR) is trained on the test image
alone: each iteration takes one crop ("father") of an augmented copy of the LR image,
degrades it with the true kernel ("son"), upsamples the son back and fits the network to
map it onto the father with the L1 loss and Adam. ZSSR's learning-rate policy decides when
to lower the learning rate and when to stop. Inference is ZSSR's 8-way geometric
self-ensemble (4 rotations x flip) combined by the median, with back-projection.

Known limitations, kept because ZSSR has them too:

* The self-ensemble rotates and flips the LR image. For an anisotropic kernel the rotated
  image was blurred by a rotated kernel, which the network was not trained for; and with
  direct subsampling a flip moves the sampling grid by one HR pixel. ZSSR ensembled anyway.
* x4 is done in one step, not with ZSSR's gradual SR (x2 then x4).
* Errors and sons use this project's degradation convention (no half-pixel kernel shift).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from napari_mzsr.core.adaptation import make_son, prepare, prepare_net
from napari_mzsr.core.degradation import degrade_tensor
from napari_mzsr.core.network import MZSRNet
from napari_mzsr.core.resize import imresize_tensor, parse_scale

from .machine import synchronize


@dataclass(frozen=True)
class ZSSRConfig:
    """ZSSR's hyper-parameters (defaults from its ``configs.py``).

    ``affine`` enables the random scale/shear/rotation augmentation on top of flips and
    rotations by 90 degrees.
    """

    max_iters: int = 3000
    lr: float = 1e-3
    min_lr: float = 9e-6
    crop_size: int = 128
    test_every: int = 50
    check_every: int = 60
    slope_range: int = 256
    min_iters: int = 256
    change_ratio: float = 1.5
    back_projection_iters: int = 10
    features: int = 64
    layers: int = 8
    init_variance: float = 0.1
    affine: bool = True
    ensemble: bool = True
    seed: int = 0


class LearningRatePolicy:
    """ZSSR's learning-rate policy.

    The reconstruction error of the whole LR image is recorded every ``test_every``
    iterations. Every ``check_every`` iterations (and at least ``min_iters`` after the
    last change) a line is fitted to the errors of the last ``slope_range`` iterations;
    when the fitted slope is not clearly negative compared with its own standard error
    (``-change_ratio * slope < std``) the learning rate is divided by 10. Training stops
    when it falls below ``min_lr``.
    """

    def __init__(self, config: ZSSRConfig) -> None:
        self.config = config
        self.lr = config.lr
        self.steps: list[int] = []
        self.errors: list[float] = []
        self.changes: list[int] = [0]

    def record(self, iteration: int, error: float) -> None:
        """Store the reconstruction error measured at ``iteration``."""
        self.steps.append(iteration)
        self.errors.append(error)

    def update(self, iteration: int) -> float:
        """Apply the policy after ``iteration`` (0-based); returns the learning rate."""
        cfg = self.config
        due = (iteration + 1) % cfg.check_every == 0
        if due and iteration - self.changes[-1] > cfg.min_iters:
            window = cfg.slope_range // cfg.test_every
            (slope, _), cov = np.polyfit(self.steps[-window:], self.errors[-window:], 1, cov=True)
            if -cfg.change_ratio * slope < math.sqrt(cov[0, 0]):
                self.lr /= 10
                self.changes.append(iteration)
        return self.lr

    @property
    def done(self) -> bool:
        return self.lr < self.config.min_lr


class ZSSRNet(MZSRNet):
    """ZSSR's network: MZSR's layers without biases, weights drawn from a normal of
    variance ``init_variance / fan_in``."""

    def __init__(
        self,
        channels: int,
        features: int = 64,
        layers: int = 8,
        init_variance: float = 0.1,
        generator: torch.Generator | None = None,
    ) -> None:
        # Read by reset_parameters, which the base class calls while it builds the net.
        self.init_variance = init_variance
        super().__init__(channels, features, layers, bias=False, generator=generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for conv in self.body:
            if isinstance(conv, nn.Conv2d):
                std = math.sqrt(self.init_variance / (9 * conv.in_channels))
                with torch.no_grad():
                    conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * std)


@dataclass
class ZSSRStats:
    """What a run did and where its time went (seconds, device synchronised)."""

    iterations: int = 0
    final_lr: float = 0.0
    tests: int = 0
    train_s: float = 0.0
    test_s: float = 0.0
    infer_s: float = 0.0


def _affine_crop(image: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """A ``size`` x ``size`` crop of ``image`` (1, C, H, W) seen through a random zoom-out
    (0.5-1), shear and rotation, sampled bicubically with mirrored borders."""
    h, w = image.shape[-2:]
    zoom = rng.uniform(0.5, 1.0)
    shear = rng.normal(0.0, 0.1)
    angle = rng.uniform(0.0, 2 * math.pi)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    matrix = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) / zoom
    offsets = (np.arange(size) - (size - 1) / 2).astype(np.float64)
    qx, qy = np.meshgrid(offsets, offsets)
    delta = np.einsum("ij,jyx->yxi", matrix, np.stack([qx, qy]))  # (size, size, (x, y))
    extent = np.abs(delta).max(axis=(0, 1))
    cx = rng.uniform(min(extent[0], w / 2), max(w - extent[0], w / 2))
    cy = rng.uniform(min(extent[1], h / 2), max(h - extent[1], h / 2))
    # Pixel centres to grid_sample's [-1, 1] (align_corners=False).
    gx = (cx + delta[..., 0]) / w * 2 - 1
    gy = (cy + delta[..., 1]) / h * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], axis=-1)[None]).to(image)
    out = F.grid_sample(image, grid, mode="bicubic", padding_mode="reflection", align_corners=False)
    return out.clamp_(0, 1)


def sample_father(
    image: torch.Tensor,
    size: int,
    rng: np.random.Generator,
    affine: bool = True,
    quarter_turns: bool = True,
) -> torch.Tensor:
    """One training target: a random crop of ``image`` (1, C, H, W) after ZSSR's
    augmentation (5 %: as is; else about half flips/rot90 only, half random affine).
    Without ``quarter_turns`` only half turns (unequal factors: a quarter turn, like
    an arbitrary rotation, would swap them)."""
    h, w = image.shape[-2:]
    size = min(size, h, w)
    mode = rng.random()
    if affine and mode >= 0.5:
        return _affine_crop(image, size, rng)
    y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
    crop = image[..., y : y + size, x : x + size]
    if mode >= 0.05:
        turns = int(rng.integers(4)) if quarter_turns else 2 * int(rng.integers(2))
        crop = torch.rot90(crop, turns, dims=(-2, -1))
        if rng.random() < 0.5:
            crop = crop.flip(-1)
    return crop.contiguous()


def _forward(net: nn.Module, lr_image: torch.Tensor, scale: float, shape=None) -> torch.Tensor:
    up = imresize_tensor(lr_image, scale, output_shape=shape)
    return net(prepare(up)).clamp_(0, 1)


def train_zssr(
    lr_image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float,
    method: str,
    config: ZSSRConfig = ZSSRConfig(),
    on_iteration: Callable[[ZSSRNet, ZSSRStats], None] | None = None,
) -> tuple[ZSSRNet, ZSSRStats]:
    """Train a ZSSR network on ``lr_image`` (1, C, h, w) float32 in [0, 1].

    Parameters
    ----------
    lr_image : Tensor
        The test image; its device is used for training.
    kernel : Tensor, shape (k, k)
        Blur kernel of the degradation, in the project's convention.
    scale : float
        Super-resolution factor.
    method : {"direct", "bicubic"}
        Subsampling of the degradation.
    config : ZSSRConfig
        Hyper-parameters; ``max_iters`` caps the run.
    on_iteration : callable(net, stats), optional
        Called after every iteration, outside the timed parts: a run of ``k``
        iterations is the first ``k`` of a longer one, so it can read the network
        after any count.

    Returns
    -------
    net : ZSSRNet
    stats : ZSSRStats
        Iterations run, final learning rate and the time of training and quick tests.
    """
    device = lr_image.device
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = ZSSRNet(
        lr_image.shape[1], config.features, config.layers, config.init_variance, generator
    ).to(device)
    # The layouts MZSR's adaptation uses, so that both methods run as fast as this CPU allows.
    prepare_net(net, training=True)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    policy = LearningRatePolicy(config)
    son_of_input = make_son(lr_image, kernel, scale, method)
    equal = _equal_factors(scale)
    stats = ZSSRStats()
    for iteration in range(config.max_iters):
        synchronize(device)
        start = time.perf_counter()
        father = sample_father(lr_image, config.crop_size, rng, config.affine and equal, equal)
        son_up = prepare(make_son(father, kernel, scale, method), training=True)
        loss = (net(son_up) - father).abs().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        stats.train_s += time.perf_counter() - start
        if iteration % config.test_every == 0:
            start = time.perf_counter()
            with torch.no_grad():
                rec = net(prepare(son_of_input, training=True)).clamp_(0, 1)
                policy.record(iteration, float(((rec - lr_image) ** 2).mean()))
            stats.tests += 1
            stats.test_s += time.perf_counter() - start
        for group in optimizer.param_groups:
            group["lr"] = policy.update(iteration)
        stats.iterations = iteration + 1
        if on_iteration is not None:
            on_iteration(net, stats)
        if policy.done:
            break
    stats.final_lr = policy.lr
    return net, stats


def _equal_factors(scale: float | tuple[float, float]) -> bool:
    sy, sx = parse_scale(scale)
    return sy == sx


def back_project(
    sr: torch.Tensor, lr_image: torch.Tensor, kernel: torch.Tensor, scale: float, method: str
) -> torch.Tensor:
    """One back-projection step: add the upsampled error of the re-degraded ``sr``."""
    error = lr_image - degrade_tensor(sr, kernel, scale, method, output_shape=lr_image.shape[-2:])
    return (sr + imresize_tensor(error, scale, output_shape=sr.shape[-2:])).clamp_(0, 1)


def zssr_infer(
    net: nn.Module,
    lr_image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float,
    method: str,
    config: ZSSRConfig = ZSSRConfig(),
) -> torch.Tensor:
    """ZSSR's final test: per geometric variant, infer, undo the transform and
    back-project; median of the variants; back-project again. Returns (1, C, H, W)."""
    outputs = []
    prepare_net(net)
    net.eval()
    with torch.no_grad():
        for k in range(8 if config.ensemble else 1):
            if k % 2 and not _equal_factors(scale):
                continue  # a quarter turn would swap unequal factors
            x = torch.rot90(lr_image, k % 4, dims=(-2, -1))
            x = x.flip(-1) if k >= 4 else x
            y = _forward(net, x, scale)
            y = y.flip(-1) if k >= 4 else y
            y = torch.rot90(y, -(k % 4), dims=(-2, -1)).contiguous()
            for _ in range(config.back_projection_iters):
                y = back_project(y, lr_image, kernel, scale, method)
            outputs.append(y)
        ordered = torch.stack(outputs).sort(dim=0).values
        n = len(outputs)
        # The median of an even count is the mean of the two middle values, as np.median.
        sr = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2
        for _ in range(config.back_projection_iters):
            sr = back_project(sr, lr_image, kernel, scale, method)
    return sr


def zssr_super_resolve(
    lr_image: np.ndarray,
    kernel: np.ndarray,
    scale: int,
    method: str,
    config: ZSSRConfig = ZSSRConfig(),
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, ZSSRStats]:
    """Super-resolve a uint8 (H, W) or (H, W, 3) image with ZSSR; returns uint8 and the
    run's statistics (``infer_s`` included)."""
    device = torch.device(device)
    unit = torch.from_numpy(lr_image.astype(np.float32) / 255.0)
    x = (unit[None, None] if unit.ndim == 2 else unit.permute(2, 0, 1)[None]).to(device)
    k = torch.from_numpy(np.asarray(kernel, dtype=np.float32)).to(device)
    net, stats = train_zssr(x, k, scale, method, config)
    synchronize(device)
    start = time.perf_counter()
    sr = zssr_infer(net, x, k, scale, method, config)[0]
    synchronize(device)
    stats.infer_s = time.perf_counter() - start
    sr = sr[0] if lr_image.ndim == 2 else sr.permute(1, 2, 0)
    return np.rint(sr.cpu().numpy() * 255.0).astype(np.uint8), stats
