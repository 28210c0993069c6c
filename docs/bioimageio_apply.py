"""Apply a BioImage.IO package made by napari-mzsr with bioimageio.core alone.

    python docs/bioimageio_apply.py PACKAGE.zip LOW_RES.tif ORIGINAL.tif FIGURE.png

Runs in an environment WITHOUT napari-mzsr (see scripts/bioimageio_roundtrip.sh): it says
so, runs the package on the low-resolution image, prints the PSNR of bicubic
interpolation and of the package's result against the original, and writes a figure:
input, bicubic, package result, original.
"""

import importlib.util
import sys

import numpy as np
from bioimageio.core import Tensor, predict
from bioimageio.spec import load_model_description
from PIL import Image

package, low, original, figure = sys.argv[1:5]
print("napari_mzsr importable here:", importlib.util.find_spec("napari_mzsr") is not None)
lr = np.asarray(Image.open(low))
hr = np.asarray(Image.open(original)).astype(np.float64)
model = load_model_description(package)
tensor = Tensor.from_numpy(lr.transpose(2, 0, 1)[None], dims=("batch", "channel", "y", "x"))
sample = predict(model=model, inputs={model.inputs[0].id: tensor})
out = sample.members[model.outputs[0].id].data.values[0].transpose(1, 2, 0)
result = np.clip(np.rint(out), 0, 255)
size = (hr.shape[1], hr.shape[0])
bicubic = np.asarray(Image.fromarray(lr).resize(size, Image.BICUBIC)).astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray, shave: int = 2) -> float:
    d = (a - b)[shave:-shave, shave:-shave]
    return 10 * np.log10(255.0**2 / np.mean(d**2))


print(
    f"PSNR against the original: bicubic {psnr(bicubic, hr):.2f} dB, "
    f"package {psnr(result, hr):.2f} dB"
)
nearest = np.asarray(Image.fromarray(lr).resize(size, Image.NEAREST)).astype(np.float64)
row = np.concatenate([nearest, bicubic, result, hr], axis=1).astype(np.uint8)
Image.fromarray(row).save(figure)
print("wrote", figure)
