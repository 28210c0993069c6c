"""The one conversion between images (H, W) / (H, W, C) and network batches (N, C, H, W)."""

from __future__ import annotations

import numpy as np
import torch


def to_batch(unit: np.ndarray, channels: int) -> torch.Tensor:
    """A float32 image in unit range as a batch for a network of ``channels`` channels.

    Parameters
    ----------
    unit : ndarray, shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), float32
        Grey or RGB image; a fourth (alpha) channel is ignored.
    channels : {1, 3}
        The network's channels. A grey image feeds a 3-channel network as three equal
        channels; an RGB image feeds a 1-channel network as a batch of three images.

    Returns
    -------
    Tensor, shape (1, channels, H, W) or, RGB into 1 channel, (3, 1, H, W)
        Its own memory: writing to it never changes ``unit``.

    Raises
    ------
    ValueError
        An image with 2 or more than 4 channels.
    """
    t = torch.from_numpy(np.array(unit, dtype=np.float32, copy=True))
    if t.ndim == 3 and t.shape[-1] == 1:
        t = t[..., 0]
    if t.ndim == 3:
        if t.shape[-1] not in (3, 4):
            raise ValueError(f"image must have 1, 3 or 4 channels, got {t.shape[-1]}")
        t = t[..., :3].permute(2, 0, 1)
        return t[None] if channels == 3 else t[:, None]
    t = t[None, None]
    return t.expand(1, channels, *t.shape[-2:]).contiguous()


def from_batch(batch: torch.Tensor, rgb: bool) -> np.ndarray:
    """Inverse of :func:`to_batch` for a network's output, as a float32 numpy array."""
    if rgb:
        t = batch[0] if batch.shape[0] == 1 else batch[:, 0]
        return t.permute(1, 2, 0).float().cpu().numpy()
    # A 3-channel network sees a grey image as three equal channels; average them back.
    return batch[0].mean(dim=0).float().cpu().numpy()
