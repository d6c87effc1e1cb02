"""Up-sampling peaks in the spectrum: the physics feature of nets/model.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gmtrace.nets.fen import box_residual
from gmtrace.nets.model import (
    N_PEAK_FEATURES,
    PEAK_FREQUENCIES,
    GMTraceModel,
    ModelConfig,
    SpectrumEncoder,
    peak_prominence,
)


def _prominence(x: torch.Tensor) -> torch.Tensor:
    return peak_prominence(SpectrumEncoder.log_spectrum(x)).reshape(len(x), -1, 3)


def test_transposed_upsampling_peaks_sit_at_its_factor():
    """A stride-2 transposed conv of a feature map with content at low frequencies
    (here its mean) repeats that content at 1/2: the point (1/2, 1/2) stands out;
    stride 4 repeats it at 1/4 too; white noise has no peaks."""
    torch.manual_seed(0)
    z = torch.rand(8, 3, 16, 16)
    k = torch.rand(3, 1, 4, 4) + 0.5
    up2 = F.conv_transpose2d(torch.rand(8, 3, 32, 32), k, stride=2, padding=1, groups=3)
    up4 = F.conv_transpose2d(z, k, stride=4, groups=3)
    noise = torch.randn(8, 3, 64, 64)
    i2, i4 = PEAK_FREQUENCIES.index(1 / 2), PEAK_FREQUENCIES.index(1 / 4)
    p2, p4, pn = _prominence(up2), _prominence(up4), _prominence(noise)
    assert p2.shape == (8, len(PEAK_FREQUENCIES), 3)
    assert p2[:, i2, 2].mean() > 2.0 and p2[:, i4, 2].mean() < 0.5
    assert p4[:, i2, 2].mean() > 2.0 and p4[:, i4, 2].mean() > 2.0
    assert pn[:, :, 2].mean(0).abs().max() < 0.5  # no point peak in white noise
    assert pn[:, :, :2].mean(0).abs().max() < 0.1  # rows and columns: flat


def test_model_reads_peaks_and_loads_configs_without_them():
    with_peaks = GMTraceModel(ModelConfig().with_gms(3))
    old = ModelConfig.from_dict({**ModelConfig().to_dict(), "peaks": None} | {"peaks": False})
    without = GMTraceModel(old.with_gms(3))
    assert with_peaks.n_features - without.n_features == 2 * N_PEAK_FEATURES
    legacy = ModelConfig().to_dict()
    del legacy["peaks"]  # a config saved before the field existed
    assert ModelConfig.from_dict(legacy).peaks is False
    with_peaks.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = with_peaks(x).features
        s = with_peaks.spectrum.log_spectrum(box_residual(x))
        radial = with_peaks.image_norm(with_peaks.spectrum.radial(s))
    # the image's radial spectrum stays the last block of the head features (the
    # readout's detection probe on the spectrum alone reads it there)
    torch.testing.assert_close(h[:, -ModelConfig().spectrum_bins :], radial)
