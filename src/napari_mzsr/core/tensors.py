"""The one conversion between images (H, W) / (H, W, C) and network batches (N, C, H, W)."""

from __future__ import annotations

import numpy as np
import torch


def to_batch(unit: np.ndarray, channels: int) -> torch.Tensor:
    """A float32 image in unit range as a batch for a network of ``channels`` channels.

    Parameters
    ----------
    unit : ndarray, shape (H, W) or (H, W, 3), float32
        Grey or RGB image.
    channels : {1, 3}
        The network's channels. A grey image feeds a 3-channel network as three equal
        channels; an RGB image feeds a 1-channel network as a batch of three images.

    Returns
    -------
    Tensor, shape (1, channels, H, W) or, RGB into 1 channel, (3, 1, H, W)
    """
    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))
    if t.ndim == 3:
        t = t.permute(2, 0, 1)
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
