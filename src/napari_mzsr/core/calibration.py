"""Few-shot calibration of theta_M to a real camera from a handful of (LR, HR) pairs.

The calibration trains a network (the plain :class:`~napari_mzsr.core.network.MZSRNet`
or a :class:`~napari_mzsr.core.scale_aware.ScaleAwareNet` bound to the pairs' factor: the
weights of a theta_M) in place and measures what it did; the pipeline
(:mod:`napari_mzsr.pipeline.calibrate`) loads the starting theta_M and turns the result
into a *camera profile*, a theta_M file like the shipped ones.

Methods (all take ``steps`` Adam updates on random patches):

``finetune``
    Plain fine-tuning on the target pairs (the baseline).
``drtl``
    DRTL's pre-training variant (distortion-relation guided transfer): each update adds
    to the target loss the losses of auxiliary synthetic distortions
    (:mod:`napari_mzsr.core.distortions`) of HR images, each auxiliary task drawn in
    proportion to its *relation* to the real distortion.
``drtl-meta``
    DRTL's meta-learning variant: the inner loop takes a plain SGD step on an
    auxiliary task (drawn by relation), the outer loss is the target pairs' loss
    before and after that step (first-order MAML by default, written functionally as
    ``training.meta``).

The relation of auxiliary task ``i`` is the cosine similarity between the gradient of
its loss and the gradient of the target loss at the current weights, both on the same
HR content (the target pairs' HR patches, distorted synthetically for the auxiliary
task), so that the two gradients differ only by the distortion. Relations are turned
into sampling weights by a softmax with a temperature relative to their spread;
tasks whose gradient points away from the target's (negative cosine) get weight 0.
They are re-measured every ``relation_every`` updates.

Network input: the LR image upsampled to the HR grid (MATLAB bicubic at ``scale``,
output shape that of the HR image), as at inference. A non-integer scale only changes
that upsampling: the network works at the output size.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.func import functional_call

from .distortions import (
    Distortion,
    FittedKernel,
    auxiliary_distortions,
    fit_kernel,
    synthetic_batch,
)
from .intensity import intensity_map
from .network import MZSRNet
from .pair_checks import PairRegistration, aligned_scores, check_pair
from .resize import imresize_tensor
from .scale_aware import ScaleAwareNet, receptive_radius
from .tensors import to_batch

METHODS = ("finetune", "drtl", "drtl-meta")
# HR pixels of context the MATLAB bicubic upsampling of the input adds on each side
# (two LR taps, up to x4): patches and scores keep the network's and this much.
BICUBIC_TAPS = 8


@dataclass(frozen=True)
class CalibrationOptions:
    """Hyper-parameters of a calibration (defaults as tuned on City100 pairs 1-5).

    Attributes
    ----------
    steps : int
        Adam updates.
    lr : float
        Adam learning rate, decayed to 0 by a half cosine.
    batch : int
        Target patches per update (and auxiliary patches for ``drtl``).
    patch : int
        Side of the HR patches.
    aux_weight : float
        Weight of the auxiliary loss against the target loss (``drtl``).
    temperature : float
        Softmax temperature of the relation weights, in units of the relations'
        standard deviation across tasks.
    relation_every : int
        Updates between two measurements of the relations.
    relation_momentum : float
        Share of the previous relations kept when a new measurement comes in (an
        exponential average: one batch of patches gives a noisy measurement).
    inner_lr : float
        SGD step of the meta-learning inner loop (``drtl-meta``).
    first_order : bool
        First-order meta-gradient (``drtl-meta``); False differentiates through the
        inner step.
    fitted_kernel : bool
        Add to the auxiliary tasks the blur kernel fitted to the target pairs
        (:func:`~napari_mzsr.core.distortions.fit_kernel`, point subsampling), clean and
        with noise of the fit's residual.
    holdout : float
        Fraction of each pair's rows (a band at the bottom) held back from training
        and used to measure the profile's PSNR.
    max_error : float
        Largest misplacement (HR pixels) of a pair accepted by :func:`check_pair`.
    """

    steps: int = 300
    lr: float = 3e-4
    batch: int = 8
    patch: int = 64
    aux_weight: float = 0.5
    temperature: float = 1.0
    relation_every: int = 50
    relation_momentum: float = 0.5
    inner_lr: float = 1e-2
    first_order: bool = True
    fitted_kernel: bool = True
    holdout: float = 0.1
    max_error: float = 1.0

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "patch", "relation_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "temperature", "inner_lr", "max_error"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if not 0 <= self.relation_momentum < 1:
            raise ValueError(f"relation_momentum must be in [0, 1), got {self.relation_momentum!r}")
        if not (math.isfinite(self.aux_weight) and self.aux_weight >= 0):
            raise ValueError(f"aux_weight must be a non-negative number, got {self.aux_weight!r}")
        if not 0 <= self.holdout < 0.5:
            raise ValueError(f"holdout must be in [0, 0.5), got {self.holdout!r}")


@dataclass
class PreparedPair:
    """One target pair as the network sees it.

    ``x`` and ``y`` are (N, C, H, W) float32 tensors: the LR image upsampled to the HR
    grid and the HR image (N > 1 when a 1-channel model sees a colour pair: one item per
    colour); ``lr`` (N, C, h, w) is the LR image. Rows ``[0, train_rows)`` are used for
    training, the rest held back.
    """

    name: str
    lr: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    train_rows: int
    registration: PairRegistration


@dataclass
class CalibrationStep:
    """Progress of one update (0-based ``step`` of ``steps``)."""

    step: int
    steps: int
    loss: float
    weights: np.ndarray | None = None


@dataclass
class Calibration:
    """Result of :func:`iter_calibrate`: the trained network and what was measured.

    ``record`` holds the calibration's provenance (method, scale, pairs and their
    registration, options, auxiliary tasks, fitted kernel, relation weights and
    history, held-back PSNR, seconds, seed), ready for a profile's ``training``.
    """

    network: MZSRNet
    record: dict[str, Any]
    relations: list[dict[str, Any]] = field(default_factory=list)
    held_out: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def network_context(net: MZSRNet | ScaleAwareNet) -> int:
    """HR pixels of context a patch needs on each side: the network's receptive radius
    (:func:`~napari_mzsr.core.scale_aware.receptive_radius`: one output pixel per 3x3
    layer, more per scale-aware adaptation) plus :data:`BICUBIC_TAPS`."""
    adaptations = net.adaptation_layers if isinstance(net, ScaleAwareNet) else ()
    return receptive_radius(net.layers, adaptations) + BICUBIC_TAPS


def _unit(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ValueError(f"pair images must be real numeric arrays, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("pair image contains NaN or infinite values")
    return intensity_map(arr, "dtype").forward(arr)


def prepare_pairs(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: float,
    channels: int,
    *,
    holdout: float = 0.1,
    max_error: float = 1.0,
    names: Sequence[str] | None = None,
) -> list[PreparedPair]:
    """Check every pair (:func:`~napari_mzsr.core.pair_checks.check_pair`) and make the
    network's input and target of each.

    Parameters
    ----------
    pairs : sequence of (lr, hr)
        Registered pairs: ``lr`` (h, w[, C]) and ``hr`` (H, W[, C]) with
        ``(H, W) = ceil((h, w) * scale)`` (one pixel of slack), uint8, uint16 or float in
        [0, 1]; never modified.
    scale : float
        Magnification from LR to HR (> 1, non-integer allowed).
    channels : int
        Channels of the model (1 or 3).
    holdout : float
        Fraction of rows held back at the bottom of each pair.
    max_error : float
        Registration tolerance in HR pixels.
    names : sequence of str, optional
        Names used in messages and provenance (default ``"pair 1"``, ...).

    Raises
    ------
    ValueError
        No pairs, a bad image, or a pair refused by the check (the message gives its
        measured shift and ratio).
    """
    if len(pairs) == 0:
        raise ValueError("pairs must hold at least one (lr, hr) pair")
    names = list(names) if names is not None else [f"pair {i + 1}" for i in range(len(pairs))]
    if len(names) != len(pairs):
        raise ValueError(f"got {len(names)} names for {len(pairs)} pairs")
    prepared = []
    for name, pair in zip(names, pairs, strict=True):
        try:
            lr, hr = pair
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected an (lr, hr) pair of arrays") from None
        lr_u, hr_u = _unit(lr), _unit(hr)
        if lr_u.ndim != hr_u.ndim or lr_u.shape[2:] != hr_u.shape[2:]:
            raise ValueError(f"{name}: LR {lr_u.shape} and HR {hr_u.shape} differ in channels")
        registration = check_pair(lr_u, hr_u, scale, max_error=max_error, name=name)
        y, small = to_batch(hr_u, channels), to_batch(lr_u, channels)
        x = imresize_tensor(small, scale, output_shape=y.shape[-2:]).clamp_(0, 1)
        train_rows = y.shape[-2] - round(holdout * y.shape[-2])
        prepared.append(PreparedPair(name, small, x, y, train_rows, registration))
    return prepared


def sample_patches(
    pairs: Sequence[PreparedPair], rng: np.random.Generator, count: int, size: int
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int]]]:
    """``count`` random aligned patches (input, target) of side ``size`` from the
    training rows of the pairs, and their ``(pair, row, column)``."""
    inputs, targets, where = [], [], []
    for _ in range(count):
        k = int(rng.integers(len(pairs)))
        pair = pairs[k]
        rows, cols = pair.train_rows, pair.y.shape[-1]
        if rows < size or cols < size:
            raise ValueError(
                f"{pair.name}: training area {rows}x{cols} is smaller than the patch {size}"
            )
        r, c = int(rng.integers(rows - size + 1)), int(rng.integers(cols - size + 1))
        n = int(rng.integers(pair.y.shape[0]))
        inputs.append(pair.x[n : n + 1, :, r : r + size, c : c + size])
        targets.append(pair.y[n : n + 1, :, r : r + size, c : c + size])
        where.append((k, r, c))
    return torch.cat(inputs), torch.cat(targets), where


class AuxiliarySource:
    """HR images for the auxiliary tasks: the target pairs' HR images and external ones.

    Parameters
    ----------
    images : sequence of Tensor (N, C, H, W)
        HR images in [0, 1] with the model's channels.
    """

    def __init__(self, images: Sequence[torch.Tensor]) -> None:
        self.images = [im for im in images if min(im.shape[-2:]) > 0]
        if not self.images:
            raise ValueError("the auxiliary source needs at least one HR image")

    def crops(self, rng: np.random.Generator, count: int, size: int) -> torch.Tensor:
        """``count`` random crops (count, C, size, size), from images big enough."""
        usable = [im for im in self.images if min(im.shape[-2:]) >= size]
        if not usable:
            raise ValueError(f"no auxiliary HR image is {size} px on a side")
        out = []
        for _ in range(count):
            im = usable[int(rng.integers(len(usable)))]
            r = int(rng.integers(im.shape[-2] - size + 1))
            c = int(rng.integers(im.shape[-1] - size + 1))
            n = int(rng.integers(im.shape[0]))
            out.append(im[n : n + 1, :, r : r + size, c : c + size])
        return torch.cat(out)


def _l1(net: torch.nn.Module, params: dict[str, torch.Tensor], x, y) -> torch.Tensor:
    return (functional_call(net, params, (x,)) - y).abs().mean()


def _flat_grad(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    params = [p for p in net.parameters() if p.requires_grad]
    loss = (net(x) - y).abs().mean()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])


def measure_relations(
    net: MZSRNet,
    pairs: Sequence[PreparedPair],
    distortions: Sequence[Distortion],
    scale: float,
    rng: np.random.Generator,
    *,
    count: int = 8,
    size: int = 64,
    centred: bool = True,
    context: int | None = None,
) -> np.ndarray:
    """Cosine similarity of each auxiliary task's loss gradient with the target's.

    Both gradients are taken at ``net``'s weights on the same HR content: ``count``
    target patches of side ``size``; for task ``i``, the HR patches (with a margin)
    distorted by ``distortions[i]``.

    ``centred``: subtract the mean of the auxiliary gradients from every gradient
    first. All tasks share a large common direction (at the shipped theta_M nearly
    every gradient has a cosine above 0.99 with the target's: whatever the blur, the
    real pairs and the synthetic ones want the same change of geometry and sharpness),
    which hides what is specific to each distortion. Ignored for a single task.

    ``context``: HR pixels of margin around each patch (default
    :func:`network_context`).

    Returns float64 (len(distortions),) in [-1, 1].
    """
    m = network_context(net) if context is None else context
    x, y, _ = sample_patches(pairs, rng, count, size + 2 * m)
    target = _flat_grad(net, x[..., m:-m, m:-m], y[..., m:-m, m:-m])
    grads = torch.stack(
        [_flat_grad(net, *synthetic_batch(y, d, scale, rng, m)) for d in distortions]
    )
    if centred and len(distortions) > 1:
        mean = grads.mean(dim=0)
        grads, target = grads - mean, target - mean
    sims = torch.nn.functional.cosine_similarity(grads, target[None], dim=1)
    return sims.double().cpu().numpy()


def relation_weights(relations: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Sampling weights of the auxiliary tasks from their relations.

    ``softmax(r / (temperature * std(r)))`` over the tasks with a positive relation
    (the others get 0: their gradient would pull away from the target's). All zero
    when no relation is positive. Float64, sums to 1 or to 0.

    Examples
    --------
    >>> w = relation_weights(np.array([0.9, 0.5, -0.2]))
    >>> bool(w[0] > w[1] > w[2] == 0), round(float(w.sum()), 6)
    (True, 1.0)
    """
    r = np.asarray(relations, dtype=np.float64)
    positive = r > 0
    if not positive.any():
        return np.zeros_like(r)
    spread = float(r[positive].std()) if positive.sum() > 1 else 1.0
    logits = (r - r[positive].max()) / (temperature * max(spread, 1e-6))
    w = np.where(positive, np.exp(logits), 0.0)
    return w / w.sum()


def _update_relations(
    net: MZSRNet,
    pairs: Sequence[PreparedPair],
    distortions: Sequence[Distortion],
    scale: float,
    options: CalibrationOptions,
    rng: np.random.Generator,
    relations: list[dict[str, Any]],
) -> np.ndarray:
    """Measure the relations, average them with the previous ones, append the record
    to ``relations`` and return the new task weights."""
    raw = measure_relations(net, pairs, distortions, scale, rng, size=options.patch)
    smoothed = raw
    if relations:
        previous = np.asarray(relations[-1]["smoothed"])
        smoothed = options.relation_momentum * previous + (1 - options.relation_momentum) * raw
    weights = relation_weights(smoothed, options.temperature)
    relations.append(
        {"relations": raw.tolist(), "smoothed": smoothed.tolist(), "weights": weights.tolist()}
    )
    return weights


def _lr_at(options: CalibrationOptions, step: int) -> float:
    return options.lr * 0.5 * (1 + math.cos(math.pi * step / options.steps))


def _prepare_net(net: MZSRNet) -> list[torch.Tensor]:
    net.train()
    return [p for p in net.parameters() if p.requires_grad]


def _descend(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, options: CalibrationOptions, step: int
) -> None:
    """One Adam update on ``loss`` at the cosine-decayed learning rate of ``step``."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in optimizer.param_groups:
        group["lr"] = _lr_at(options, step)
    optimizer.step()


def iter_finetune(
    net: MZSRNet,
    pairs: Sequence[PreparedPair],
    options: CalibrationOptions,
    rng: np.random.Generator,
) -> Iterator[CalibrationStep]:
    """Plain fine-tuning of ``net`` in place on the target pairs (the baseline)."""
    optimizer = torch.optim.Adam(_prepare_net(net), lr=options.lr)
    for step in range(options.steps):
        x, y, _ = sample_patches(pairs, rng, options.batch, options.patch)
        loss = (net(x) - y).abs().mean()
        _descend(optimizer, loss, options, step)
        yield CalibrationStep(step, options.steps, loss.item())


@dataclass
class _AuxiliaryTasks:
    """What both DRTL variants share: the auxiliary tasks, where their HR patches come
    from, and the task weights, re-measured every ``relation_every`` updates."""

    net: MZSRNet
    pairs: Sequence[PreparedPair]
    source: AuxiliarySource
    distortions: Sequence[Distortion]
    scale: float
    options: CalibrationOptions
    rng: np.random.Generator
    relations: list[dict[str, Any]]

    def __post_init__(self) -> None:
        self.context = network_context(self.net)
        self.weights = np.zeros(len(self.distortions))

    def weights_at(self, step: int) -> np.ndarray:
        """The task weights for ``step`` (measured anew, and recorded, when due)."""
        if step % self.options.relation_every == 0:
            self.weights = _update_relations(
                self.net,
                self.pairs,
                self.distortions,
                self.scale,
                self.options,
                self.rng,
                self.relations,
            )
            self.relations[-1]["step"] = step
        return self.weights

    @property
    def active(self) -> bool:
        """Whether the auxiliary loss counts (a weight, and a task with a positive
        relation)."""
        return bool(self.options.aux_weight) and self.weights.sum() > 0

    def batch(self, task: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` (input, target) patches of auxiliary task ``task``."""
        size = self.options.patch + 2 * self.context
        hr = self.source.crops(self.rng, count, size)
        return synthetic_batch(hr, self.distortions[task], self.scale, self.rng, self.context)


def iter_drtl(
    net: MZSRNet,
    pairs: Sequence[PreparedPair],
    source: AuxiliarySource,
    distortions: Sequence[Distortion],
    scale: float,
    options: CalibrationOptions,
    rng: np.random.Generator,
    relations: list[dict[str, Any]],
) -> Iterator[CalibrationStep]:
    """DRTL, pre-training variant: target loss plus ``aux_weight`` times the auxiliary
    loss, the auxiliary patches drawn by relation (``batch`` patches split among the
    tasks by a multinomial draw with the weights); ``relations`` receives each
    measurement (step, relations, weights)."""
    optimizer = torch.optim.Adam(_prepare_net(net), lr=options.lr)
    tasks = _AuxiliaryTasks(net, pairs, source, distortions, scale, options, rng, relations)
    for step in range(options.steps):
        weights = tasks.weights_at(step)
        x, y, _ = sample_patches(pairs, rng, options.batch, options.patch)
        loss = (net(x) - y).abs().mean()
        total = loss
        if tasks.active:
            counts = rng.multinomial(options.batch, weights)
            for i in np.flatnonzero(counts):
                n = int(counts[i])
                xa, ya = tasks.batch(int(i), n)
                total = total + options.aux_weight * n / options.batch * (net(xa) - ya).abs().mean()
        _descend(optimizer, total, options, step)
        yield CalibrationStep(step, options.steps, loss.item(), weights)


def iter_drtl_meta(
    net: MZSRNet,
    pairs: Sequence[PreparedPair],
    source: AuxiliarySource,
    distortions: Sequence[Distortion],
    scale: float,
    options: CalibrationOptions,
    rng: np.random.Generator,
    relations: list[dict[str, Any]],
) -> Iterator[CalibrationStep]:
    """DRTL, meta-learning variant. Each update: draw an auxiliary task by relation,
    take one SGD step (``inner_lr``) on its support patches with fast weights, and
    minimise the target query loss before and after that step (weights 1/2 each);
    the query is real target patches. ``aux_weight`` 0 or no positive relation leaves
    only the loss before the step (plain fine-tuning)."""
    params = _prepare_net(net)
    names = [name for name, p in net.named_parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=options.lr)
    tasks = _AuxiliaryTasks(net, pairs, source, distortions, scale, options, rng, relations)
    for step in range(options.steps):
        weights = tasks.weights_at(step)
        fast = dict(zip(names, params, strict=True))
        xq, yq, _ = sample_patches(pairs, rng, options.batch, options.patch)
        query = _l1(net, fast, xq, yq)
        total = query
        if tasks.active:
            task = int(rng.choice(len(distortions), p=weights))
            xs, ys = tasks.batch(task, options.batch)
            support = _l1(net, fast, xs, ys)
            grads = torch.autograd.grad(support, params, create_graph=not options.first_order)
            adapted = {
                name: w - options.inner_lr * g
                for (name, w), g in zip(fast.items(), grads, strict=True)
            }
            after = _l1(net, adapted, xq, yq)
            total = (1 - options.aux_weight) * query + options.aux_weight * after
        _descend(optimizer, total, options, step)
        yield CalibrationStep(step, options.steps, query.item(), weights)


@torch.no_grad()
def predict(net: MZSRNet, x: torch.Tensor) -> torch.Tensor:
    """``net(x)`` clipped to [0, 1], in eval mode (input already on the HR grid)."""
    net.eval()
    return net(x).clamp_(0, 1)


def held_out_scores(
    net: MZSRNet | None, pairs: Sequence[PreparedPair], scale: float, *, context: int
) -> float | None:
    """Mean aligned PSNR (Y, :func:`aligned_scores`) on the held-back rows of the
    pairs, ``context`` rows below their top left out (they see the training rows);
    ``net`` None scores the bicubic input. None when nothing is held back."""
    values = []
    shave = math.ceil(scale)
    for pair in pairs:
        start = pair.train_rows
        if pair.y.shape[-2] - start < 2 * context + 4 * shave:
            continue
        x = pair.x[..., start:, :]
        out = x if net is None else predict(net, x)
        for n in range(out.shape[0]):
            sr = out[n, :, context:].permute(1, 2, 0).cpu().numpy()
            hr = pair.y[n, :, start + context :].permute(1, 2, 0).cpu().numpy()
            if sr.shape[-1] == 1:
                sr, hr = sr[..., 0], hr[..., 0]
            values.append(aligned_scores(sr, hr, shave=shave).psnr)
    return float(np.mean(values)) if values else None


def _fit_to_pairs(pairs: Sequence[PreparedPair], scale: float) -> FittedKernel:
    """:func:`fit_kernel` on the training rows of the prepared pairs (the first item of
    each: one colour image, or the first colour for a 1-channel model)."""
    images = []
    for pair in pairs:
        # LR rows whose samples lie in the training rows of the HR image.
        lr_rows = max(1, int(pair.train_rows / scale - 1))
        lr = pair.lr[0].permute(1, 2, 0).cpu().numpy()[:lr_rows]
        images.append((lr, pair.y[0].permute(1, 2, 0).cpu().numpy()[: pair.train_rows]))
    return fit_kernel(images, scale)


def iter_calibrate(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    scale: float,
    *,
    network: MZSRNet | ScaleAwareNet,
    method: str = "drtl",
    options: CalibrationOptions | None = None,
    auxiliary_images: Sequence[np.ndarray] = (),
    distortions: Sequence[Distortion] | None = None,
    names: Sequence[str] | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Generator[CalibrationStep, None, Calibration]:
    """Calibrate a network to real pairs in place, yielding after every update
    and returning a :class:`Calibration` (``StopIteration.value``).

    Parameters
    ----------
    pairs : sequence of (lr, hr)
        Registered real pairs (see :func:`prepare_pairs`); checked before anything runs.
    scale : float
        Magnification from LR to HR.
    network : MZSRNet or ScaleAwareNet
        The starting theta_M's network, a scale-aware one bound to ``scale`` (its
        ``channels`` are the pairs' channels, its receptive radius gives the context of
        the patches, :func:`network_context`); moved to ``device`` and trained in place.
    method : {"finetune", "drtl", "drtl-meta"}
        See the module docstring.
    options : CalibrationOptions, optional
        Hyper-parameters.
    auxiliary_images : sequence of ndarray
        External HR images (H, W[, C]; uint8, uint16 or float in [0, 1]) for the
        auxiliary tasks, besides the pairs' own HR images.
    distortions : sequence of Distortion, optional
        Auxiliary tasks (default :func:`~napari_mzsr.core.distortions.auxiliary_distortions`).
    names : sequence of str, optional
        Names of the pairs for messages and provenance.
    seed : int
        Seed of the patch positions, task draws and noise (and of torch).
    device : torch.device or str
        Where the network and the pairs live.

    Returns
    -------
    Calibration
        ``network`` the trained network (on ``device``); ``record`` the provenance
        (method, pairs and their registration, options, relation weights, held-back
        PSNR of the bicubic input, the start and the result, seconds).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    options = options or CalibrationOptions()
    channels = network.channels
    prepared = prepare_pairs(
        pairs, scale, channels, holdout=options.holdout, max_error=options.max_error, names=names
    )
    tasks = tuple(distortions) if distortions is not None else auxiliary_distortions(scale)
    fitted = None
    if method != "finetune" and options.fitted_kernel:
        fitted = _fit_to_pairs(prepared, scale)
        tasks += (
            Distortion("fitted/point", fitted.kernel, "point"),
            Distortion("fitted/point/noise", fitted.kernel, "point", noise=fitted.residual),
        )
    if method != "finetune" and not tasks:
        raise ValueError(f"method {method!r} needs at least one auxiliary distortion")
    device = torch.device(device)
    for pair in prepared:
        pair.lr, pair.x, pair.y = pair.lr.to(device), pair.x.to(device), pair.y.to(device)
    external = [to_batch(_unit(im), channels).to(device) for im in auxiliary_images]
    source = AuxiliarySource([p.y[..., : p.train_rows, :] for p in prepared] + external)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = network.to(device)
    context = network_context(net)
    relations: list[dict[str, Any]] = []
    start = time.perf_counter()
    before = held_out_scores(net, prepared, scale, context=context)
    if method == "finetune":
        run = iter_finetune(net, prepared, options, rng)
    elif method == "drtl":
        run = iter_drtl(net, prepared, source, tasks, scale, options, rng, relations)
    else:
        run = iter_drtl_meta(net, prepared, source, tasks, scale, options, rng, relations)
    yield from run
    seconds = time.perf_counter() - start
    held_out = {
        "bicubic": held_out_scores(None, prepared, scale, context=context),
        "base": before,
        "profile": held_out_scores(net, prepared, scale, context=context),
    }
    held_out = {k: v for k, v in held_out.items() if v is not None}
    final_weights = relations[-1]["weights"] if relations else []
    record = {
        "method": method,
        "scale": float(scale),
        "pairs": [
            {
                "name": p.name,
                "lr_shape": [int(n) for n in np.shape(pair[0])[:2]],
                "hr_shape": [int(n) for n in np.shape(pair[1])[:2]],
                "shift": list(p.registration.shift),
                "ratio": p.registration.ratio,
                "misplacement": p.registration.error,
                "train_rows": p.train_rows,
            }
            for p, pair in zip(prepared, pairs, strict=True)
        ],
        "steps": options.steps,
        "options": {k: getattr(options, k) for k in options.__dataclass_fields__},
        "auxiliary": {
            "distortions": [d.name for d in tasks] if method != "finetune" else [],
            "external_images": len(external),
        },
        "fitted_kernel": None
        if fitted is None
        else {
            "kernel": np.round(fitted.kernel, 6).tolist(),
            "gain": fitted.gain,
            "offset": fitted.offset,
            "residual": fitted.residual,
        },
        "relation_weights": dict(zip([d.name for d in tasks], final_weights, strict=False)),
        "relation_history": relations,
        "held_out_psnr": held_out,
        "seconds": round(seconds, 2),
        "seed": seed,
    }
    return Calibration(net, record, relations, held_out, seconds)
