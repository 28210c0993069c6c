"""``kernel="estimate"``: the one place the kernel is estimated from the image.

The same for the API, the widget and the command line: the kernel is estimated once per
run, from the centre (at most :data:`ESTIMATE_SIDE` pixels square) of the image that
adaptation starts from (for a stack: the adaptation slice in ``"once"`` mode, the chosen
slice in ``"per_slice"`` mode), and every adaptation of the run uses it: one stack has
one optical blur.
"""

from __future__ import annotations

from ..core.kernel_estimation import KernelEstimate, estimate_kernel
from ..core.tiling import centre_window
from .images import ImageData
from .options import AdaptOptions

# A lazy image is never read whole: 1024 x 1024 pixels give hundreds of spectrum windows.
ESTIMATE_SIDE = 1024


def resolve_kernel(
    options: AdaptOptions, image: ImageData
) -> tuple[AdaptOptions, KernelEstimate | None]:
    """``options`` with the kernel estimated from ``image`` (a 2-D image) if they ask
    for an estimate, and the estimate; otherwise ``options`` unchanged and None."""
    if not options.estimate:
        return options, None
    centre = image.read(centre_window(image.shape, ESTIMATE_SIDE))
    model = options.model
    estimate = estimate_kernel(centre, options.scale, model.info.degradation, rgb=image.rgb)
    return options.with_kernel(estimate.kernel), estimate
