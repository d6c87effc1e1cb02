"""What every method answers with (`Inference`, one row per image) and how a
trained gmtrace network with its fitted readout produces it (`infer`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gmtrace.core.schema import read_linear
from gmtrace.data.images import to_float
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.embedding import open_set_score
from gmtrace.readout.readout import Readout


@dataclass
class Inference:
    """Per-image answers of a method, as numpy arrays (one row per image)."""

    p_generated: np.ndarray  # [N] calibrated probability that the image is generated
    attribution: np.ndarray  # [N, n_gms] probabilities over the training GMs
    open_score: np.ndarray  # [N] higher = less like any training GM
    embedding: np.ndarray  # [N, D], for grouping
    continuous: np.ndarray  # [N, 9] normalized scale
    discrete_prob: list[np.ndarray]  # per discrete field [N, C]
    loss_prob: np.ndarray  # [N, 10]
    fingerprint: np.ndarray | None = None  # [N, H, W, 3] when asked for
    # the parsing probe's raw outputs [N, sum(parse_widths())] (`schema.read_linear`),
    # where it answers
    parse_linear: np.ndarray | None = None
    # methods with an "unsure" band (`methods.fused`): [N] bool, and [N] str (why;
    # empty where sure)
    unsure: np.ndarray | None = None
    unsure_reason: np.ndarray | None = None
    # methods whose parsing abstains (`readout.abstain`): [N, 25] bool, the fields that
    # answer for each image (`abstain.FIELD_NAMES` order)
    parse_answered: np.ndarray | None = None
    # [N, 9] how unsure the parsing probe's forests are of each count (normalized
    # scale; `ParseOutput.spread`), where they answer
    count_spread: np.ndarray | None = None
    # [N, K] the images' self-descriptions (`realmodel.selfdesc.describe`), where the
    # method has them at hand (`methods.fused`: what its grouping may read beside the
    # embedding)
    description: np.ndarray | None = None

    def parse_of(self, rows=slice(None)) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
        """The parse of images `rows` taken together (one GM's images, one image's
        crops): continuous values [9] (normalized scale), class probabilities per
        discrete field, loss-type probabilities [10].

        Where the parsing probe answered, its raw outputs are averaged before
        they are read: its linear parts were fitted on GMs' mean inputs, so this is
        their answer for the images' mean input (each image's input clipped to 5
        standard deviations first); the forests' half of the continuous values
        (with `probe_trees`) is the mean of the images' own answers. Averaging each
        image's probabilities instead would let a few confident images outvote the
        mean, and read a GM's inputs at a spread the probe never saw. Otherwise (the
        SGD heads, the baselines) the images' answers are averaged."""
        if self.parse_linear is None:
            return (
                self.continuous[rows].mean(axis=0),
                [p[rows].mean(axis=0) for p in self.discrete_prob],
                self.loss_prob[rows].mean(axis=0),
            )
        return read_linear(self.parse_linear[rows].mean(axis=0))

    def spread_of(self, rows=slice(None)) -> np.ndarray | None:
        """The counts' spread [9] of images `rows` taken together (their mean), or
        None where the parse has none."""
        return None if self.count_spread is None else self.count_spread[rows].mean(axis=0)


@torch.no_grad()
def head_features(model: GMTraceModel, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """The frozen head features h [N, D] of uint8 images [N, H, W, 3]: what the
    readout is fitted on."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(to_float(images[i : i + batch])).to(dev)
        out.append(model(x).features.float().cpu().numpy())
    if not out:
        raise ValueError("head_features: no images")
    return np.concatenate(out)


@torch.no_grad()
def infer(
    model: GMTraceModel,
    readout: Readout,
    images: np.ndarray,
    batch: int = 64,
    fingerprints: bool = False,
    features: bool = False,
    runtime=None,
) -> Inference:
    """Run `model` and its fitted `readout` on uint8 images [N, H, W, 3] (one size)
    in batches.

    open_score is `embedding.open_set_score` of the attribution probabilities and the
    unit-length grouping embedding against the readout's gallery of training GMs (1 -
    max attribution probability alone where it has none); the grouping embedding is
    the head features standardized over the training images, projected on the
    discriminant directions of the training GMs and scaled to unit length (with
    `features`, the raw head features). Parsing is the readout's probe where it has
    one, else the network's own parsing heads. With `runtime` (`engine.Runtime`, of
    this network and readout), the batches go through it instead (not with
    `fingerprints` or `features`, which only torch answers)."""
    if runtime is not None and not (fingerprints or features):
        return _from_parts(
            _gather(
                runtime.run(to_float(images[i : i + batch])) for i in range(0, len(images), batch)
            ),
            readout,
            features=False,
        )
    model.eval()
    dev = next(model.parameters()).device
    readout.to(dev)
    return _from_parts(
        _gather(_torch_batches(model, readout, images, batch, dev, fingerprints, features)),
        readout,
        features,
    )


@torch.no_grad()
def detect(
    model: GMTraceModel, readout: Readout, images: np.ndarray, batch: int = 64, runtime=None
) -> np.ndarray:
    """`infer(...).p_generated` [N] alone, for uint8 images [N, H, W, 3] read again
    only for it (a fused model's re-encodings): the attribution, the embedding and the
    parse are not computed. With `runtime`, `Runtime.detect` (its engine where it is
    built for the images, else this same path in torch)."""
    starts = range(0, len(images), batch)
    if runtime is not None:
        out = [runtime.detect(to_float(images[i : i + batch])) for i in starts]
    else:
        model.eval()
        dev = next(model.parameters()).device
        readout.to(dev)
        out = [
            detection_p(model, readout, torch.from_numpy(to_float(images[i : i + batch])).to(dev))
            .float()
            .cpu()
            .numpy()
            for i in starts
        ]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def detection_p(model: GMTraceModel, readout: Readout, x: torch.Tensor) -> torch.Tensor:
    """The calibrated p(generated) [B] of images x [B, 3, H, W] in [-1, 1]: the
    value `scan_outputs` gives under "p_generated", without the other heads."""
    return torch.sigmoid(readout.logit(model.embed(x)[1]))


def scan_outputs(model: GMTraceModel, readout: Readout, x: torch.Tensor) -> dict:
    """What a scan row needs from images x [B, 3, H, W] in [-1, 1], by name (the
    calibrated p, attribution, the grouping embedding, the parse: continuous values,
    loss-type and per-field class probabilities, the probe's raw outputs where it
    answers), and the network's own outputs `o` under "network" (not an answer)."""
    o = model(x)
    r = readout(o.features, x)
    parse = o.parse if r.parse is None else r.parse
    vals = {
        "p_generated": r.p_generated,
        "attribution": r.attribution,
        "embedding": r.embedding,
        "continuous": parse.continuous,
        "loss_prob": parse.loss_prob,
    }
    vals |= {f"d{j}": p for j, p in enumerate(parse.discrete_prob())}
    if parse.linear is not None:
        vals["parse_linear"] = parse.linear
    if parse.spread is not None:
        vals["count_spread"] = parse.spread
    return vals | {"network": o}


def _torch_batches(model, readout, images, batch, dev, fingerprints, features):
    """`infer`'s values of each batch, as numpy arrays by name, in torch."""
    for i in range(0, len(images), batch):
        vals = scan_outputs(
            model, readout, torch.from_numpy(to_float(images[i : i + batch])).to(dev)
        )
        o = vals.pop("network")
        if fingerprints:
            vals["fingerprint"] = o.fingerprint.permute(0, 2, 3, 1)
        if features:  # the open-set score reads the unit-length embedding
            vals["unit"], vals["embedding"] = vals["embedding"], o.features
        yield {k: v.float().cpu().numpy() for k, v in vals.items()}


def _gather(batches) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for vals in batches:
        for k, v in vals.items():
            parts.setdefault(k, []).append(v)
    if not parts:
        raise ValueError("infer: no images")
    return {k: np.concatenate(v) for k, v in parts.items()}


def _from_parts(cat: dict[str, np.ndarray], readout: Readout, features: bool) -> Inference:
    """The `Inference` of `infer`'s gathered values."""
    n_disc = sum(1 for k in cat if k[0] == "d" and k[1:].isdigit())
    unit = cat.pop("unit") if features else cat["embedding"]
    gallery = getattr(readout, "gallery_", None)
    gallery = None if gallery is None else gallery.cpu().numpy()
    return Inference(
        p_generated=cat["p_generated"],
        attribution=cat["attribution"],
        open_score=open_set_score(cat["attribution"], unit, gallery).astype(np.float32),
        embedding=cat["embedding"],
        continuous=cat["continuous"],
        discrete_prob=[cat[f"d{j}"] for j in range(n_disc)],
        loss_prob=cat["loss_prob"],
        fingerprint=cat.get("fingerprint"),
        parse_linear=cat.get("parse_linear"),
        count_spread=cat.get("count_spread"),
    )
