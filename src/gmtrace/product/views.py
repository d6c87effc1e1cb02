"""What a person looks at beside the numbers: an image's fingerprint and its
spectrum, as 8-bit RGB arrays (PNG files for `analyze --save-views`, data URLs for
the report and the web page).

"Spectrum" means one thing throughout gmtrace: the centred log magnitude spectrum
of an image's 3x3 high-pass residual (`core.spectrum.log_spectrum`), which the
spectral baseline and the network's image-spectrum branch read; for a set of
images, the mean of theirs (`core.spectrum.mean_spectrum`). The fingerprint is the
network's, on the image's centre crop (a smaller image is reflect-padded)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from gmtrace.core.spectrum import log_spectrum, mean_spectrum
from gmtrace.data.augment import crop
from gmtrace.readout.inference import infer


def to_8bit(a: np.ndarray) -> np.ndarray:
    """An array [H, W] or [H, W, 3] stretched from its 1st to its 99th percentile to
    RGB uint8 [H, W, 3]."""
    lo, hi = np.percentile(a, [1, 99])
    x = (np.clip((a - lo) / (hi - lo + 1e-9), 0, 1) * 255).astype(np.uint8)
    return np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x


def png_data(rgb: np.ndarray, scale: int = 1) -> str:
    """A PNG data URL of RGB uint8 pixels, enlarged `scale` times (nearest)."""
    im = Image.fromarray(rgb)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_views(img: np.ndarray, analyzer) -> dict[str, np.ndarray]:
    """{"fingerprint", "spectrum"} of one RGB image, each RGB uint8 of the model's
    input size."""
    c = crop(img, analyzer.image_size_)  # centred; a smaller image is reflect-padded
    fp = infer(analyzer.model_, analyzer.readout_, c[None], fingerprints=True).fingerprint[0]
    return {"fingerprint": to_8bit(fp), "spectrum": to_8bit(log_spectrum(c))}


def set_views(crops: list[np.ndarray], analyzer=None) -> dict[str, np.ndarray]:
    """{"spectrum"[, "fingerprint"]} of a set of same-size crops: their mean spectrum
    and (with a model) their mean fingerprint, RGB uint8."""
    out = {"spectrum": to_8bit(mean_spectrum(crops))}
    if analyzer is not None:
        inf = infer(analyzer.model_, analyzer.readout_, np.stack(crops), fingerprints=True)
        out["fingerprint"] = to_8bit(inf.fingerprint.mean(axis=0))
    return out
