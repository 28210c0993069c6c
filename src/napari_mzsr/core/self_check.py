"""Predicting, from the image alone, whether the network beats bicubic interpolation on it.

MZSR can only test itself one scale down: the image's son ``degrade(I)`` is what the
network sees during adaptation, and ``I`` is its target. The self-check scores the
network on that son pair against plain bicubic interpolation of the same son (which is
the network's own input, :func:`~napari_mzsr.core.adaptation.make_son`):

    predicted gain = PSNR(net(up(son)), I) - PSNR(up(son), I)

It is measured on a window of the image (the centre, at most :data:`CHECK_SIDE` pixels
square) before adaptation and after, so a run can keep theta_M unadapted when the steps
hurt and fall back to interpolation when neither beats it. The fallback is Lanczos-3
rather than bicubic: on the validation split of ``benchmarks/real_images.py`` (photos
downscaled by four tools, with JPEG and noise, x2/x2.5/x3; synthetic fluorescence) it
was never more than 0.05 dB below bicubic on an image and above it on every set's
mean (+0.01 to +0.35 dB on photos, +1.2 dB on the cells). What it cannot see: a kernel
assumed wider than the image's own blur fits the son perfectly (the son was made with
it) and still over-sharpens the image; this is why the default assumes the narrowest
degradation (:mod:`napari_mzsr.pipeline.auto`), and why the check is a prediction,
reported with the result, not a guarantee. One scale further down
(:func:`coarser_check`) it also tests whether the image is alike across scales.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from .adaptation import Clamp, autocast, make_son, prepare, prepare_net
from .network import MZSRNet
from .noise import NoiseModel
from .resize import parse_scale

# Side of the check window in LR pixels. The check is one forward pass over it before
# adaptation and one after; benchmarks/real_images.py reports what it adds to a run.
CHECK_SIDE = 192
# Fewer son-pair pixels than this (per side, inside the border) say nothing reliable.
MIN_CHECKED_SIDE = 16
# The output where no network passes the check (module docstring: why Lanczos), and
# its kernel in :func:`~napari_mzsr.core.resize.imresize_tensor`.
FALLBACK = "lanczos"
FALLBACK_KERNEL = "lanczos3"


@dataclass(frozen=True)
class SelfCheck:
    """What the self-check predicted and which output it chose.

    Attributes
    ----------
    gain_unadapted, gain_adapted : float
        Predicted gain over bicubic in dB (son pair, every channel) of theta_M before
        adaptation and of the adapted network.
    choice : {"adapted", "unadapted", "lanczos"}
        The output the run gives: the adapted network, theta_M as it was, or Lanczos-3
        interpolation (:data:`FALLBACK`).
    threshold : float
        Smallest predicted gain (dB) for which a network is used.
    noise : float
        Root mean standard deviation of the noise added to the son during adaptation
        (network units; 0 when none was added).
    jpeg_quality : int or None
        JPEG quality the son was saved at (None: not compressed).
    gain_coarser : float or None
        Predicted gain of the network kept, one scale further down (the son's own son
        pair, :func:`coarser_check`); None where it was not measured.
    coarser_threshold : float or None
        Smallest ``gain_coarser`` for which that network is used.
    """

    gain_unadapted: float
    gain_adapted: float
    choice: str
    threshold: float
    noise: float = 0.0
    jpeg_quality: int | None = None
    gain_coarser: float | None = None
    coarser_threshold: float | None = None

    @property
    def fell_back_on_scale(self) -> bool:
        """Whether the son pair kept a network and the coarser level then refused it
        (the coarser level is measured only for a network the son pair kept)."""
        return self.choice == FALLBACK and self.gain_coarser is not None

    @property
    def predicted_gain(self) -> float:
        """Predicted gain over bicubic of the network chosen (0 for the fallback: it was
        not scored)."""
        if self.choice == FALLBACK:
            return 0.0
        return self.gain_adapted if self.choice == "adapted" else self.gain_unadapted

    def describe(self) -> str:
        """One line for a status bar or a summary."""
        gains = f"{self.gain_unadapted:+.2f} dB unadapted, {self.gain_adapted:+.2f} dB adapted"
        if self.choice == "adapted":
            return f"self-check: predicted gain over bicubic {self.gain_adapted:+.2f} dB"
        if self.choice == "unadapted":
            return f"self-check: the steps did not pay ({gains}); theta_M used unadapted"
        if self.fell_back_on_scale:
            return (
                f"self-check: the network's gain falls one scale down ({self.gain_coarser:+.2f}"
                f" dB there, needs {self.coarser_threshold:+.2f}): the image is not alike "
                "across scales (e.g. optics-limited); fell back to Lanczos interpolation"
            )
        return (
            f"self-check: no predicted gain over bicubic ({gains}, needs "
            f"{self.threshold:+.2f}); fell back to Lanczos interpolation"
        )

    def as_dict(self) -> dict[str, object]:
        """Plain values for metadata (JSON: an exact son pair's infinite gain is None)."""

        def db(value: float) -> float | None:
            return round(value, 3) if math.isfinite(value) else None

        return {
            "choice": self.choice,
            "predicted_gain_db": db(self.predicted_gain),
            "gain_unadapted_db": db(self.gain_unadapted),
            "gain_adapted_db": db(self.gain_adapted),
            "threshold_db": self.threshold,
            "noise": round(self.noise, 6),
            "jpeg_quality": self.jpeg_quality,
            "gain_coarser_db": None if self.gain_coarser is None else db(self.gain_coarser),
            "coarser_threshold_db": self.coarser_threshold,
        }


def _border(scale: float | tuple[float, float]) -> int:
    """Pixels left out at each side of the son pair: ``ceil`` of the larger factor."""
    return math.ceil(max(parse_scale(scale)))


def can_check(shape: tuple[int, int], scale: tuple[float, float]) -> bool:
    """Whether an image of ``shape`` is large enough for the self-check at ``scale``
    (:data:`MIN_CHECKED_SIDE` pixels inside the border on each side)."""
    return min(shape) >= MIN_CHECKED_SIDE + 2 * _border(scale)


def son_gain(
    net: MZSRNet,
    image: torch.Tensor,
    kernel: torch.Tensor,
    scale: float | tuple[float, float],
    degradation: str,
    *,
    autocast_dtype: torch.dtype | None = None,
    clamp: Clamp = (0.0, 1.0),
    noise: NoiseModel | None = None,
    seed: int = 0,
    jpeg_quality: int | None = None,
) -> float:
    """Predicted gain (dB) of ``net`` over bicubic on the son pair of ``image``.

    Parameters
    ----------
    net : MZSRNet
        The network to score (left in training layout, unchanged).
    image : Tensor, shape (1, C, h, w), float32
        The check window in network units, on the network's device.
    kernel, scale, degradation
        The son's degradation, as in :func:`~napari_mzsr.core.adaptation.make_son`.
    autocast_dtype : torch.dtype or None
        Precision of the forward pass.
    clamp : (float, float)
        Range of valid values in network units.
    noise : NoiseModel, optional
        Noise added to the son, as during adaptation.
    seed : int
        Seed of that noise: the same for every network scored on one image, so that
        the scores compare networks, not noise draws.
    jpeg_quality : int, optional
        JPEG quality of the son, as during adaptation.

    Returns
    -------
    float
        ``PSNR(net(up(son)), image) - PSNR(up(son), image)`` over the window less a
        border of ``ceil(max(scale))`` pixels; +inf or -inf where one side is exact.
    """
    generator = torch.Generator(image.device).manual_seed(seed)
    son_up = make_son(
        image, kernel, scale, degradation, clamp=clamp, noise=noise, generator=generator,
        jpeg_quality=jpeg_quality,
    )  # fmt: skip
    prepare_net(net)
    net.eval()
    with torch.no_grad(), autocast(image.device, autocast_dtype):
        out = net(prepare(son_up))
    net.train()
    border = _border(scale)
    inner = (..., slice(border, -border or None), slice(border, -border or None))
    target = image[inner]
    mse_net = float(((out.float().clamp(*clamp)[inner] - target) ** 2).mean())
    mse_bicubic = float(((son_up.clamp(*clamp)[inner] - target) ** 2).mean())
    if mse_net == 0 or mse_bicubic == 0:
        return math.copysign(math.inf, mse_bicubic - mse_net) if mse_net != mse_bicubic else 0.0
    return 10 * math.log10(mse_bicubic / mse_net)


def choose_output(
    gain_unadapted: float,
    gain_adapted: float,
    *,
    threshold: float,
    noise: float = 0.0,
    jpeg_quality: int | None = None,
) -> SelfCheck:
    """The output to give from the two predicted gains: the adapted network where it
    predicts at least as much as theta_M did, theta_M where only it clears
    ``threshold``, else Lanczos interpolation (:data:`FALLBACK`)."""
    if gain_adapted >= threshold and gain_adapted >= gain_unadapted:
        choice = "adapted"
    elif gain_unadapted >= threshold:
        choice = "unadapted"
    else:
        choice = FALLBACK
    return SelfCheck(gain_unadapted, gain_adapted, choice, threshold, noise, jpeg_quality)


def coarser_check(check: SelfCheck, gain_coarser: float, *, threshold: float) -> SelfCheck:
    """``check`` with the kept network's gain one scale further down: the fallback
    interpolation where it is below ``threshold``.

    Why: a network adapted on the son pair learns the image's look at the son's scale.
    Where the image is alike across scales (most photos) it scores alike one level
    further down; where it is not, because the optics fix the blur in physical units
    (a microscope sampled near Nyquist: the point spread is 2 son pixels, 1 image
    pixel, and would be 4 result pixels), the network over-sharpens the result although
    the son pair predicted a gain, and its score falls one level down. The check is one
    forward pass over the son of the check window.
    """
    if check.choice == FALLBACK:
        return check
    choice = FALLBACK if gain_coarser < threshold else check.choice
    return replace(check, choice=choice, gain_coarser=gain_coarser, coarser_threshold=threshold)
