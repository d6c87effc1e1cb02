"""`gmtrace zoo synth`: a tier of thousands of shallow, randomly configured GMs.

Yang et al., "Model Synthesis for Zero-Shot Model Attribution" (arXiv 2307.15977)
train a fingerprint extractor on 5,760 synthesized generators and generalize to
unseen real ones; Park and Owens (Community Forensics, CVPR 2025) find that more
generators beat more images. This tier follows them on a CPU budget: each GM is a
small network applied to real photograph crops, built, optionally fitted for a
few steps and sampled in a fraction of a second.

Two kinds (`SYNTH_KINDS`):

* ``synth_decoder`` (task "autoencode"): a stem conv, ``depth`` down blocks
  (strided conv, conv + average pool or conv + max pool), same-resolution blocks
  at the bottleneck, then ``depth`` up-sampling blocks back to full size, each
  followed by ``blocks - 1`` same-resolution blocks; optional residual blocks or
  U-Net concatenation of the encoder maps.
* ``synth_translator`` (task "translate"): a stem conv and ``depth * blocks``
  same-resolution blocks, no resampling; optional residual blocks or a U-Net
  style long skip (the stem's map concatenated before the output conv).

What varies, each choice balanced over the tier by `Balancer`: kind, content
domain, up-sampler (the 4 of `layers.UPSAMPLERS`), normalization (4), block
activation (8), last activation (4), kernel size (1, 3, 5), depth (1, 2, 3),
width (4, 8, 16, 32), blocks per level (1, 2), skip (none, residual, unet),
down-sampling (strided, avg, max), how far the output reaches into its last
activation (`HEAD_STDS`), and the fit: none (random weights, a third of the GMs),
or 5-30 Adam steps of reconstruction of real crops under an L1 or MSE pixel loss,
optionally plus an L2 distance between fixed random conv features
(`layers.RandomFeatures`). The rest is a `zoo.recipe.Recipe` (its models.csv
columns): weight init (default, N(0, 0.02), xavier, kaiming, orthogonal), norm
epsilon and momentum, Adam betas and learning rate, eval- or train-mode sampling,
8-bit conversion.

Outputs: the output conv is calibrated on the first input crops (data-dependent
init: its pre-activation gets mean 0 and the drawn std, whatever the init did to
the signal's scale), the output passes the last activation, is mapped to [-1, 1]
as `layers.output_to_image` does, then standardized per channel to the statistics
of the GM's real inputs on the first batch (both affines recorded in the config).
A draw whose images are non-finite, flat or collapsed (`recipe.diversity` under
`COLLAPSE_BELOW`) is redrawn with a new weight seed, at half the learning rate and
from the third draw with torch's default init (the row records what was used);
a GM still collapsed after `MAX_ATTEMPTS` draws keeps its most diverse draw with
collapsed = 1. Every fake image records its input crop (source photograph,
collection and box) in meta.json, and `pairs/<gm>/` holds the crop itself under
the image's file name. Ground truth is `describe()` of the module itself; the
layout is `gmtrace zoo build`'s, so `GMDataset.from_zoo` reads it. GM i is seeded
from (seed, i) alone, so the number of workers never changes a byte.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from gmtrace.core.runtime import cpu_count, progress, seed_everything, set_threads
from gmtrace.core.schema import LOSS_TYPES
from gmtrace.data.dataset import GMTRACE_CODEBASE, LOSS_COLUMNS, MODELS_COLUMNS, write_csv
from gmtrace.data.images import png_bytes, to_float
from gmtrace.zoo import losses as L
from gmtrace.zoo.builder import (
    _PHOTOS,
    ZooError,
    _photos,
    finished_gms,
    one_line,
    write_gm,
    write_json,
    zoo_versions,
)
from gmtrace.zoo.families import Balancer
from gmtrace.zoo.introspect import describe
from gmtrace.zoo.layers import (
    ACTIVATIONS,
    LAST_ACTIVATIONS,
    NORMS,
    UPSAMPLERS,
    DownBlock,
    RandomFeatures,
    ResBlock,
    UpBlock,
    act,
    last_act,
    norm,
    output_to_image,
)
from gmtrace.zoo.photos import Photo
from gmtrace.zoo.real import (
    CropPool,
    RealSource,
    crop_order,
    domains,
    random_crop,
    write_real,
)
from gmtrace.zoo.recipe import (
    ADAM_BETAS,
    COLLAPSE_BELOW,
    INITS,
    NORM_EPS,
    NORM_MOMENTUM,
    SAMPLE_MODES,
    TO_8BIT,
    Recipe,
    diversity,
    initialize,
    make_optimizer,
    to_8bit,
)

PRESET = "synth"
KERNELS = (1, 3, 5)
DEPTHS = (1, 2, 3)
WIDTHS = (4, 8, 16, 32)
BLOCKS = (1, 2)
SKIPS = ("none", "residual", "unet")
DOWNSAMPLERS = ("strided", "avg", "max")
# std of the output conv's pre-activation after data-dependent calibration: how
# far into its last activation (tanh, sigmoid, hardtanh) a GM reaches
HEAD_STDS = (0.5, 1.0, 2.0)
# a third of the GMs keep random weights, a third fit a pixel loss, a third add L2
FITS = ("none", "none", "l1", "mse", "l1+l2", "mse+l2")
FIT_STEPS = (5, 10, 15, 20, 25, 30)
FIT_LRS = (5e-4, 1e-3, 2e-3)  # Adam's learning rate
FIT_BATCH = 4
FIT_POOL = 8  # real crops a GM is fitted on
MAX_CHANNELS = 64
MAX_ATTEMPTS = 4  # weight draws of a GM; a GM with no usable draw fails
INIT_FALLBACK = 2  # from this draw on, torch's default init
MIN_RAW_STD = 1e-5  # per channel, before standardization
MIN_REL_STD = 1e-5  # pre-activation std relative to its mean: below, float noise
MIN_IMAGE_STD = 1.0  # median spatial std of the final images, 0-255 scale
CHUNK = 8  # GMs per worker task
CALIBRATE = 8  # input crops the output conv is calibrated on
# config keys a build adds to the planned config
RESULT_KEYS = ("head", "affine", "redraws")

# ---------------------------------------------------------------------------
# the networks


class ConvBlock(nn.Module):
    """Same-resolution block: conv (kernel k) - norm - activation."""

    gmtrace_block = True

    def __init__(self, cin: int, cout: int, k: int, norm_kind: str, act_kind: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, k, 1, k // 2), norm(norm_kind, cout), act(act_kind)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MaxPoolDown(DownBlock):
    """`layers.DownBlock` with max pooling in place of its average pooling."""

    def __init__(self, cin: int, cout: int, norm_kind: str, act_kind: str):
        super().__init__(cin, cout, norm_kind, act_kind, pool=True)
        self.body[1] = nn.MaxPool2d(2)


def down_block(kind: str, cin: int, cout: int, norm_kind: str, act_kind: str) -> nn.Module:
    """Halve the map: strided 4x4 conv, 3x3 conv + avg pool, or 3x3 conv + max pool."""
    if kind == "max":
        return MaxPoolDown(cin, cout, norm_kind, act_kind)
    if kind not in ("strided", "avg"):
        raise ValueError(f"unknown down-sampling {kind!r}")
    return DownBlock(cin, cout, norm_kind, act_kind, pool=kind == "avg")


def same_block(cfg: dict, cin: int, cout: int) -> nn.Module:
    """A same-resolution block: residual when the GM's skip is residual."""
    if cfg["skip"] == "residual" and cin == cout:
        return ResBlock(cout, cfg["norm"], cfg["act"])
    return ConvBlock(cin, cout, cfg["kernel"], cfg["norm"], cfg["act"])


class SynthNet(nn.Module):
    """Shared stem and output of both kinds. The output passes the last activation,
    `output_to_image` and a per-channel affine (buffers, identity until the build
    standardizes the GM)."""

    def __init__(self, cfg: dict, res: int):
        super().__init__()
        self.cfg, self.res = dict(cfg), res
        k, w = cfg["kernel"], cfg["width"]
        self.stem = nn.Sequential(nn.Conv2d(3, w, k, 1, k // 2), act(cfg["act"]))
        self.register_buffer("out_scale", torch.ones(1, 3, 1, 1))
        self.register_buffer("out_shift", torch.zeros(1, 3, 1, 1))

    def make_head(self, ch: int) -> None:
        k = self.cfg["kernel"]
        self.head = nn.Sequential(nn.Conv2d(ch, 3, k, 1, k // 2), last_act(self.cfg["last"]))

    def finish(self, h: torch.Tensor) -> torch.Tensor:
        y = output_to_image(self.head(h), self.cfg["last"])
        return y * self.out_scale + self.out_shift

    def example_input(self) -> torch.Tensor:
        return torch.randn(2, 3, self.res, self.res)


SYNTH_KINDS: dict[str, tuple[str, type[SynthNet]]] = {}  # kind -> (task, class)


def register_synth(kind: str, task: str) -> Callable[[type[SynthNet]], type[SynthNet]]:
    """Class decorator: register a `SynthNet` subclass as kind `kind` doing `task`."""

    def wrap(cls: type[SynthNet]) -> type[SynthNet]:
        SYNTH_KINDS[kind] = (task, cls)
        cls.kind = kind
        return cls

    return wrap


def build_synth(kind: str, cfg: dict, res: int) -> SynthNet:
    """The module of a synthesized GM, from its kind and config (weights: torch's
    default init under the current seed; `init_weights` applies the config's)."""
    if kind not in SYNTH_KINDS:
        raise KeyError(f"unknown synth kind {kind!r}; known: {', '.join(SYNTH_KINDS)}")
    return SYNTH_KINDS[kind][1](cfg, res)


@register_synth("synth_decoder", "autoencode")
class SynthDecoder(SynthNet):
    """Encode a crop down by 2^depth, decode it back with `depth` up-sampling blocks."""

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        d, w, nb = cfg["depth"], cfg["width"], cfg["blocks"]
        if res % 2**d:
            raise ValueError(f"resolution {res} is not divisible by 2^{d}")
        chans = [min(w * 2**i, MAX_CHANNELS) for i in range(d + 1)]
        self.enc = nn.ModuleList(
            down_block(cfg["down"], chans[i], chans[i + 1], cfg["norm"], cfg["act"])
            for i in range(d)
        )
        self.mid = nn.Sequential(*(same_block(cfg, chans[d], chans[d]) for _ in range(nb)))
        self.ups, self.post, ch = nn.ModuleList(), nn.ModuleList(), chans[d]
        for i in reversed(range(d)):
            self.ups.append(UpBlock(cfg["up"], ch, chans[i], cfg["norm"], cfg["act"]))
            ch = chans[i] * (2 if cfg["skip"] == "unet" else 1)
            post = []
            for _ in range(nb - 1):
                post.append(same_block(cfg, ch, chans[i]))
                ch = chans[i]
            self.post.append(nn.Sequential(*post))
        self.make_head(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        for down in self.enc:
            feats.append(down(feats[-1]))
        h = self.mid(feats[-1])
        for i, (up, post) in enumerate(zip(self.ups, self.post, strict=True)):
            h = up(h)
            if self.cfg["skip"] == "unet":
                h = torch.cat([h, feats[-2 - i]], dim=1)
            h = post(h)
        return self.finish(h)


@register_synth("synth_translator", "translate")
class SynthTranslator(SynthNet):
    """A same-resolution stack of `depth * blocks` blocks after the stem."""

    def __init__(self, cfg: dict, res: int):
        super().__init__(cfg, res)
        w = cfg["width"]
        n = cfg["depth"] * cfg["blocks"]
        self.body = nn.Sequential(*(same_block(cfg, w, w) for _ in range(n)))
        self.make_head(w * (2 if cfg["skip"] == "unet" else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.stem(x)
        h = self.body(h0)
        if self.cfg["skip"] == "unet":
            h = torch.cat([h, h0], dim=1)
        return self.finish(h)


# ---------------------------------------------------------------------------
# planning


def sample_synth_config(b: Balancer) -> dict:
    """One GM's config; every choice is balanced over the tier by `b`."""
    kind = str(b.pick("kind", tuple(SYNTH_KINDS)))
    cfg = {
        "kind": kind,
        "task": SYNTH_KINDS[kind][0],
        "norm": b.pick("norm", NORMS),
        "act": b.pick("act", ACTIVATIONS),
        "last": b.pick("last", LAST_ACTIVATIONS),
        "kernel": int(b.pick("kernel", KERNELS)),
        "depth": int(b.pick("depth", DEPTHS)),
        "width": int(b.pick("width", WIDTHS)),
        "blocks": int(b.pick("blocks", BLOCKS)),
        "skip": b.pick("skip", SKIPS),
        "head_std": float(b.pick("head_std", HEAD_STDS)),
    }
    if kind == "synth_decoder":
        cfg["up"] = b.pick("up", UPSAMPLERS)
        cfg["down"] = b.pick("down", DOWNSAMPLERS)
    fit = str(b.pick("fit", FITS))
    cfg["pixel_loss"] = fit.split("+")[0]
    cfg["feature_loss"] = fit.endswith("+l2")
    cfg["recipe"] = synth_recipe(b, fitted=fit != "none").to_dict()
    return cfg


def synth_recipe(b: Balancer, fitted: bool) -> Recipe:
    """The `Recipe` columns of a synthesized GM: its brief Adam fit (steps 0 when
    unfitted), weight init, normalization epsilon and momentum, sampling mode and
    8-bit conversion, each balanced by `b`. There is no latent: the GM maps crops."""
    return Recipe(
        steps=int(b.pick("steps", FIT_STEPS)) if fitted else 0,
        batch=FIT_BATCH if fitted else 0,
        optimizer="adam",
        lr=float(b.pick("lr", FIT_LRS)) if fitted else 0.0,
        betas=tuple(b.pick("betas", ADAM_BETAS)) if fitted else (0.5, 0.999),
        init=str(b.pick("init", INITS)),
        norm_eps=float(b.pick("norm_eps", NORM_EPS)),
        norm_momentum=float(b.pick("norm_momentum", NORM_MOMENTUM)),
        sample_mode=str(b.pick("sample_mode", SAMPLE_MODES)),
        to_8bit=str(b.pick("to_8bit", TO_8BIT)),
    )


@dataclass
class SynthSpec:
    """Everything a worker needs to build one synthesized GM."""

    name: str
    index: int
    seed: int  # the tier's seed; the GM's own seeds derive from (seed, index)
    domain: str
    resolution: int
    n_images: int
    config: dict

    @property
    def kind(self) -> str:
        return self.config["kind"]


def gm_seed(seed: int, index: int, attempt: int = 0) -> int:
    """The weight seed of GM `index` on its `attempt`-th draw (0 = first)."""
    return int(np.random.SeedSequence([seed, index, attempt]).generate_state(1)[0] >> 1)


def plan_synth(
    n: int, seed: int, resolution: int, images_per_gm: int, domain_names: list[str]
) -> list[SynthSpec]:
    """The tier's first `n` GMs, deterministic in (seed, domains); GM i's config does
    not depend on n, so a larger n extends a tier."""
    b = Balancer(np.random.default_rng([seed, 7331]))
    return [
        SynthSpec(
            name=f"synth_{i:05d}",
            index=i,
            seed=seed,
            domain=str(b.pick("domain", domain_names)),
            resolution=resolution,
            n_images=images_per_gm,
            config=sample_synth_config(b),
        )
        for i in range(n)
    ]


# ---------------------------------------------------------------------------
# one GM (runs in a worker)


def draw_crops(
    photos: list[Photo], res: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[dict]]:
    """`n` random crops (`random_crop`, as `CropPool` and `write_real` cut them; the
    photos taken in `crop_order`, so collections take turns) and, per crop, its
    source photograph, collection and box (x, y, size) in the photograph."""
    crops, boxes = [], []
    for i in crop_order(photos, n, rng):
        crop, (x, y, size) = random_crop(photos[i], res, rng)
        crops.append(crop)
        p = photos[i]
        boxes.append({"source": p.name, "collection": p.collection, "x": x, "y": y, "size": size})
    return np.stack(crops), boxes


_FEATURES: list[RandomFeatures] = []


def _features() -> RandomFeatures:
    if not _FEATURES:  # built once per process, without touching the global RNG
        with torch.random.fork_rng(devices=[]):
            _FEATURES.append(RandomFeatures(seed=2))
    return _FEATURES[0]


def fit(net: SynthNet, pool: CropPool, recipe: Recipe) -> list[float]:
    """The recipe's brief fit: reconstruct real crops under the config's pixel loss
    (plus the L2 feature loss), on random windows of half the crop size (the nets
    are fully convolutional; a quarter of the cost). Returns each step's loss."""
    cfg = net.cfg
    if recipe.steps == 0:
        return []
    pixel = L.l1_loss if cfg["pixel_loss"] == "l1" else L.mse_loss
    opt = make_optimizer(net.parameters(), recipe)
    net.train()
    history = []
    res = pool.pixels.shape[1]
    win = res // 2  # at least 16 px: a depth-3 decoder's bottleneck is 2 x 2
    for _ in range(recipe.steps):
        x = pool.batch(recipe.batch)
        i, j = pool.rng.integers(0, res - win + 1, size=2)
        x = torch.from_numpy(np.ascontiguousarray(x[:, :, i : i + win, j : j + win]))
        y = net(x)
        loss = pixel(y, x)
        if cfg["feature_loss"]:
            loss = loss + L.l2_feature_loss(_features()(y), _features()(x))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(round(float(loss.item()), 6))
    return history


def _sig(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def sampling_mode(net: SynthNet) -> None:
    """Normalization in eval mode, or in train mode (batch statistics) as the
    recipe's `sample_mode` says."""
    net.train(net.cfg["recipe"]["sample_mode"] == "train")


def calibrate_head(net: SynthNet, x: torch.Tensor) -> dict | None:
    """Data-dependent init of the output conv (Salimans and Kingma 2016 style): scale
    and shift it so its pre-activation on `x` has mean 0 and std `head_std` per
    channel, whatever the init did to the signal's scale. Returns the gain and shift
    applied (new weight = gain * w, new bias = gain * b + shift), or None when the
    pre-activation is non-finite or carries no signal above float noise."""
    conv, seen = net.head[0], []
    hook = conv.register_forward_hook(lambda _m, _i, out: seen.append(out.double()))
    sampling_mode(net)
    with torch.no_grad():
        net(x)
    hook.remove()
    pre = seen[0]
    mean, std = pre.mean(dim=(0, 2, 3)), pre.std(dim=(0, 2, 3))
    if not torch.isfinite(pre).all() or (std <= MIN_REL_STD * mean.abs()).any() or not std.all():
        return None
    gain = _sig((net.cfg["head_std"] / std).tolist())
    shift = _sig((-mean * torch.tensor(gain, dtype=torch.float64)).tolist())
    with torch.no_grad():
        g = torch.tensor(gain)
        conv.weight.mul_(g.view(-1, 1, 1, 1))
        conv.bias.mul_(g).add_(torch.tensor(shift))
    return {"gain": gain, "shift": shift}


def standardize(net: SynthNet, y: torch.Tensor, x: torch.Tensor) -> dict | None:
    """Set the net's output affine so `y` (its raw output on inputs `x`) gets the
    per-channel mean and std of `x`. None when `y` is non-finite or flat."""
    if not torch.isfinite(y).all():
        return None
    y64, x64 = y.double(), x.double()
    std = y64.std(dim=(0, 2, 3))
    if (std < MIN_RAW_STD).any():
        return None
    scale = x64.std(dim=(0, 2, 3)).clamp_min(1e-3) / std
    shift = x64.mean(dim=(0, 2, 3)) - scale * y64.mean(dim=(0, 2, 3))
    affine = {"scale": _sig(scale.tolist()), "shift": _sig(shift.tolist())}
    net.out_scale.copy_(torch.tensor(affine["scale"]).view(1, 3, 1, 1))
    net.out_shift.copy_(torch.tensor(affine["shift"]).view(1, 3, 1, 1))
    return affine


def sample(net: SynthNet, inputs: torch.Tensor) -> tuple[np.ndarray, dict] | None:
    """The GM's images of `inputs` (floats in [-1, 1]) and its output affine, set on
    the first batch of 32; None when they are non-finite."""
    sampling_mode(net)
    out, affine = [], None
    with torch.no_grad():
        for start in range(0, len(inputs), 32):
            x = inputs[start : start + 32]
            y = net(x)
            if affine is None:
                affine = standardize(net, y, x)
                if affine is None:
                    return None
                y = y * net.out_scale + net.out_shift
            if not torch.isfinite(y).all():
                return None
            out.append(y.clamp(-1, 1).numpy())
    return np.concatenate(out), affine


def image_checks(x: np.ndarray, real: np.ndarray) -> tuple[bool, float, bool]:
    """(flat, diversity, collapsed) of a GM's images (floats [N, 3, H, W]) against its
    real inputs (uint8 [N, H, W, 3]): flat when the median spatial std is under
    `MIN_IMAGE_STD` grey levels; collapsed when `recipe.diversity` (the images' spread
    across inputs as a share of the inputs' own) is under `COLLAPSE_BELOW`, i.e. the
    GM draws about the same image whatever it is given."""
    images = to_8bit(x, "round")
    div = diversity(images, real)
    spatial = np.median(images.astype(np.float32).std(axis=(1, 2)).mean(axis=-1))
    return bool(spatial < MIN_IMAGE_STD), div, div < COLLAPSE_BELOW


def ground_truth(net: nn.Module) -> dict:
    """The 15 architecture columns and `upsampling_kind`: `describe()` of the module
    (under a forked RNG, so describing never shifts a GM's random draws)."""
    with torch.random.fork_rng(devices=[]):
        arch = describe(net)
    return {**arch.values, "upsampling_kind": arch.extra["upsampling_kind"]}


def loss_bits(cfg: dict) -> dict[str, int]:
    used = set()
    if cfg["recipe"]["steps"] > 0:
        used.add(cfg["pixel_loss"])
        if cfg["feature_loss"]:
            used.add("l2")
    return {c: int(n in used) for c, n in zip(LOSS_COLUMNS, LOSS_TYPES, strict=True)}


def draw_recipe(planned: dict, attempt: int) -> Recipe:
    """The recipe of a GM's `attempt`-th draw: the planned one, its learning rate
    halved at every redraw (as `zoo build` retrains), and torch's default init from
    draw `INIT_FALLBACK` on (an init that starves the signal, such as N(0, 0.02)
    under 1x1 convs and softplus, fails on every seed). The row records what was used."""
    r = Recipe.from_dict(planned)
    init = "default" if attempt >= INIT_FALLBACK else r.init
    return replace(r, lr=r.lr / 2**attempt, init=init)


@dataclass
class Draw:
    """One draw of a GM's weights and what it made."""

    attempt: int
    seed: int
    recipe: Recipe
    net: SynthNet
    history: list[float]
    head: dict | None = None
    x: np.ndarray | None = None  # images, floats [N, 3, H, W]; None: unusable
    affine: dict | None = None
    diversity: float = 0.0
    collapsed: bool = True


def draw(spec: SynthSpec, photos: list[Photo], inputs: torch.Tensor, attempt: int) -> Draw:
    """Build, initialize, calibrate, fit and sample one draw of a GM; `x` stays None
    when its images are non-finite or flat."""
    seed = gm_seed(spec.seed, spec.index, attempt)
    seed_everything(seed)
    recipe = draw_recipe(spec.config["recipe"], attempt)
    net = build_synth(spec.kind, spec.config, spec.resolution)
    initialize(net, recipe)
    d = Draw(attempt, seed, recipe, net, [])
    d.head = calibrate_head(net, inputs[:CALIBRATE])
    if d.head is None:
        return d
    if recipe.steps:
        pool = CropPool(photos, spec.resolution, FIT_POOL, np.random.default_rng([seed, 2]))
        d.history = fit(net, pool, recipe)
    result = sample(net, inputs)
    if result is not None:
        real = to_8bit(inputs.numpy(), "round")
        flat, d.diversity, d.collapsed = image_checks(result[0], real)
        if not flat:
            d.x, d.affine = result
    return d


def build_synth_gm(spec: SynthSpec, source: RealSource) -> dict:
    """Build, fit and sample one GM. A draw whose images are non-finite, flat or
    collapsed is redrawn (new weight seed, see `draw_recipe`), at most `MAX_ATTEMPTS`
    draws; a GM still collapsed then keeps its most diverse draw, marked collapsed.
    Returns its models.csv row, input crops (boxes and PNG pairs) and PNG bytes."""
    t0 = time.perf_counter()
    photos = [p for p in _photos(source) if p.domain == spec.domain] or _photos(source)
    rng = np.random.default_rng([spec.seed, spec.index, 1])
    pixels, boxes = draw_crops(photos, spec.resolution, spec.n_images, rng)
    inputs = torch.from_numpy(np.ascontiguousarray(to_float(pixels)))
    best, draws = None, 0
    while draws < MAX_ATTEMPTS and (best is None or best.collapsed):
        d = draw(spec, photos, inputs, draws)
        if draws == 0:
            arch = ground_truth(d.net)
        draws += 1
        if d.x is not None and (best is None or d.diversity > best.diversity):
            best = d
    if best is None:
        raise RuntimeError(f"{MAX_ATTEMPTS} weight draws gave non-finite or flat images")
    return {
        "row": _row(spec, arch, best),
        "images": [png_bytes(a) for a in to_8bit(best.x, best.recipe.to_8bit)],
        "pairs": [png_bytes(a) for a in pixels],  # the real input of each image, aligned
        "pair_sources": [(b["source"], b["collection"]) for b in boxes],
        "inputs": boxes,
        "redraws": draws - 1,
        "fit_losses": best.history,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _row(spec: SynthSpec, arch: dict, d: Draw) -> dict:
    """The models.csv row of a GM kept from draw `d` (its recipe as used)."""
    config = {**spec.config, "head": d.head, "affine": d.affine, "redraws": d.attempt}
    return {
        "name": spec.name,
        "family": spec.kind,
        "seed": d.seed,
        "domain": spec.domain,
        "resolution": spec.resolution,
        "n_images": len(d.x),
        **arch,
        "task": spec.config["task"],
        **loss_bits(spec.config),
        **d.recipe.row(),
        "diversity": round(d.diversity, 4),
        "collapsed": int(d.collapsed),
        "redraws": d.attempt,
        "codebase": GMTRACE_CODEBASE,
        "config": json.dumps(config, sort_keys=True),
    }


def _init_worker(source: RealSource) -> None:
    """A pool worker: one torch thread, the photographs loaded once."""
    set_threads(1)
    _photos(source)


def _build_chunk(specs: list[SynthSpec], source: RealSource) -> list[tuple]:
    """(spec, result, error) for each GM of a chunk, on one torch thread."""
    set_threads(1)
    out = []
    for spec in specs:
        try:
            out.append((spec, build_synth_gm(spec, source), None))
        except Exception as e:  # a GM that breaks is recorded; the rest go on
            out.append((spec, None, one_line(e)))
    return out


# ---------------------------------------------------------------------------
# the zoo folder


@dataclass
class SynthSummary:
    out: Path
    planned: int
    built: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    redraws: int = 0  # weight seeds redrawn in this run (flat or non-finite images)
    seconds: float = 0.0
    real_written: int = 0
    workers: int = 1
    real_crops: int = 0

    @property
    def ok(self) -> bool:
        return not self.failed


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _planned_part(config: str) -> dict:
    return {k: v for k, v in json.loads(config).items() if k not in RESULT_KEYS}


def _open_state(path: Path, expected: dict) -> dict:
    """zoo.json of a tier: a new one, or the existing one when it was built with
    the same settings (n may differ: a tier can grow)."""
    if not path.is_file():
        return {**expected, "created": _now(), "versions": zoo_versions(), "gms": {}}
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ZooError(f"{path}: unreadable ({e}); move it away to start over") from None
    for key, value in expected.items():
        if key != "n" and state.get(key) != value:
            raise ZooError(
                f"{path.parent}: holds a zoo built with {key}={state.get(key)!r}, "
                f"not {value!r}; use another --out"
            )
    return {**state, "n": expected["n"], "versions": zoo_versions()}


def _check_resumable(out: Path, specs: list[SynthSpec], done: dict[str, dict]) -> None:
    for s in specs:
        row = done[s.name]["row"] if s.name in done else None
        if row and (_planned_part(row["config"]) != s.config or row["domain"] != s.domain):
            raise ZooError(
                f"{out / 'fake' / s.name}: built from another config than this gmtrace "
                "plans for it (a different version or --real?); use another --out"
            )


def _save(out: Path, state: dict, specs: list[SynthSpec], done: dict[str, dict]) -> None:
    """zoo.json (with counts) and models.csv (finished GMs, in plan order)."""
    status = [g["status"] for g in state["gms"].values()]
    state["counts"] = {k: status.count(k) for k in ("done", "failed", "pending")}
    state["redraws"] = sum(g.get("redraws", 0) for g in state["gms"].values())
    state["updated"] = _now()
    write_json(out / "zoo.json", state)
    rows = [done[s.name]["row"] for s in specs if s.name in done]
    write_csv(out / "models.csv", MODELS_COLUMNS, rows)


def _start_pool(workers: int, source: RealSource) -> ProcessPoolExecutor | None:
    """The worker processes (None for one worker), started before any progress
    thread runs. They fork on Linux and inherit the decoded photographs (decoding
    the photo catalog takes about 20 s a process); elsewhere they spawn."""
    if workers == 1:
        return None
    method = "fork" if sys.platform == "linux" else "spawn"
    pool = ProcessPoolExecutor(
        workers, mp_context=mp.get_context(method), initializer=_init_worker, initargs=(source,)
    )
    for f in [pool.submit(int) for _ in range(workers)]:
        f.result()
    return pool


def _run(pending: list[SynthSpec], source: RealSource, pool, on_chunk) -> None:
    """Build `pending` in chunks: in this process (no pool) or in the pool's workers.
    Each GM is seeded from (seed, index) alone, so workers never change a byte."""
    chunks = [pending[i : i + CHUNK] for i in range(0, len(pending), CHUNK)]
    if pool is None:
        threads = torch.get_num_threads()
        try:
            for chunk in chunks:
                for item in _build_chunk(chunk, source):
                    on_chunk([item])
        finally:
            torch.set_num_threads(threads)
        return
    futures = {pool.submit(_build_chunk, c, source): c for c in chunks}
    while futures:
        finished, _ = wait(futures, return_when=FIRST_COMPLETED)
        for f in finished:
            chunk = futures.pop(f)
            try:
                items = f.result()
            except Exception as e:  # a worker that died: its GMs are failed, rerun retries
                items = [(spec, None, one_line(e)) for spec in chunk]
            on_chunk(items)


def _check_args(n: int, images_per_gm: int, resolution: int, workers: int) -> None:
    if n < 1 or images_per_gm < 1 or workers < 1:
        raise ZooError(
            f"--n, --images-per-gm and --workers must be at least 1 ({n}, "
            f"{images_per_gm}, {workers})"
        )
    if resolution < 32 or resolution % 16:
        raise ZooError(f"--resolution must be a multiple of 16, at least 32; got {resolution}")


def _prepare(
    out: Path, source: RealSource, photos: list[Photo], expected: dict, summary: SynthSummary
):
    """Open zoo.json, write real/, plan the tier and take stock of finished GMs.
    Returns (state, specs, done)."""
    state = _open_state(out / "zoo.json", expected)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # never trust partial work
    n, res, per_gm = expected["n"], expected["resolution"], expected["images_per_gm"]
    summary.real_written = write_real(out, photos, res, summary.real_crops, expected["seed"])
    specs = plan_synth(n, expected["seed"], res, per_gm, domains(photos))
    done = finished_gms(out)
    _check_resumable(out, specs, done)
    for s in specs:
        entry = state["gms"].setdefault(s.name, {"kind": s.kind, "status": "pending"})
        if s.name in done:
            entry["status"] = "done"
            summary.resumed.append(s.name)
    _save(out, state, specs, done)
    return state, specs, done


def _record(
    out: Path, state: dict, done: dict, summary: SynthSummary, console: Console, items: list
) -> None:
    """Write the finished GMs of a chunk (atomically, `write_gm`) and note failures."""
    for spec, result, error in items:
        entry = state["gms"][spec.name]
        if error is None:
            done[spec.name] = write_gm(out, result)
            entry.update(
                status="done", seconds=result["seconds"], error=None, redraws=result["redraws"]
            )
            summary.built.append(spec.name)
            summary.redraws += result["redraws"]
        else:
            entry.update(status="failed", error=error)
            summary.failed[spec.name] = error
            console.print(f"[red]failed:[/] {spec.name}: {error}")


def synth_zoo(
    out: str | Path,
    n: int = 3000,
    seed: int = 0,
    images_per_gm: int = 24,
    resolution: int = 64,
    real: str | None = None,
    workers: int | None = None,
    real_crops: int | None = None,
    console: Console | None = None,
) -> SynthSummary:
    """Build (or resume) a tier of `n` synthesized GMs in `out`, in the layout of
    `gmtrace zoo build`, with one overall progress bar. `workers` defaults to one per
    core, `real_crops` (real/) to min(n * images_per_gm, 2000)."""
    t0 = time.perf_counter()
    console = console or Console()
    workers = workers or cpu_count()
    _check_args(n, images_per_gm, resolution, workers)
    out = Path(out)
    source = RealSource(str(Path(real).resolve()) if real else None)
    photos, skipped = source.load()
    _PHOTOS.setdefault(source, photos)  # the workers' cache (forked workers inherit it)
    for line in skipped:
        console.print(f"[yellow]skipped real image:[/] {line}")
    out.mkdir(parents=True, exist_ok=True)
    kind = "embedded+catalog" if source.catalog else "embedded"
    expected = {"preset": PRESET, "seed": seed, "resolution": resolution}
    expected.update(images_per_gm=images_per_gm, real=source.folder or kind, n=n)
    crops = real_crops if real_crops is not None else min(n * images_per_gm, 2000)
    summary = SynthSummary(out=out, planned=n, workers=workers, real_crops=crops)
    state, specs, done = _prepare(out, source, photos, expected, summary)
    pending = [s for s in specs if s.name not in done]
    pool = _start_pool(workers, source) if pending else None
    with progress(console) as bars:
        bar = bars.add_task(f"synth {n} GMs", total=n, completed=len(summary.resumed), status="")

        def on_chunk(items: list[tuple]) -> None:
            _record(out, state, done, summary, console, items)
            bars.advance(bar, len(items))
            bars.update(bar, status=f"{len(summary.failed)} failed" if summary.failed else "")
            _save(out, state, specs, done)

        try:
            _run(pending, source, pool, on_chunk)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    shutil.rmtree(out / ".partial", ignore_errors=True)  # empty once every GM is renamed
    summary.seconds = time.perf_counter() - t0
    state["runs"] = state.get("runs", 0) + 1
    state["build_seconds"] = round(state.get("build_seconds", 0.0) + summary.seconds, 1)
    _save(out, state, specs, done)
    return summary


def summary_table(summary: SynthSummary) -> Table:
    """GMs, images, fitted and collapsed GMs, redraws and mean seconds per kind, with
    the run's counts and speed as the caption."""
    done = list(finished_gms(summary.out).values())
    rate = len(summary.built) / summary.seconds if summary.seconds else 0.0
    t = Table(
        title=f"zoo synth -> {summary.out}",
        caption=f"built {len(summary.built)}, resumed {len(summary.resumed)}, failed "
        f"{len(summary.failed)} in {summary.seconds:.0f} s ({rate:.2f} GMs/s, "
        f"{summary.workers} workers)",
    )
    for col in ("kind", "GMs", "images", "fitted", "collapsed", "redraws", "mean s/GM"):
        t.add_column(col, justify="left" if col == "kind" else "right")

    def add(label: str, metas: list[dict]) -> None:
        secs = [m["seconds"] for m in metas]
        t.add_row(
            label,
            str(len(metas)),
            str(sum(int(m["row"]["n_images"]) for m in metas)),
            str(sum(int(m["row"]["steps"]) > 0 for m in metas)),
            str(sum(int(m["row"]["collapsed"]) for m in metas)),
            str(sum(m.get("redraws", 0) for m in metas)),
            f"{np.mean(secs):.2f}" if secs else "",
        )

    for kind in SYNTH_KINDS:
        add(kind, [m for m in done if m["row"]["family"] == kind])
    t.add_section()
    add(f"total ({len(done)}/{summary.planned})", done)
    return t
