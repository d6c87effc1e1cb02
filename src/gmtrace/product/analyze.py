"""The `Analyzer`: images in, answers out (used by `gmtrace analyze` and `make demo`).

Per image: the probability that it is generated, the most likely known GMs or
"unknown GM" (open-set score above the model's threshold), the parsed 15
hyperparameters and 10 loss types with their confidence (`product.rows.ImageResult`),
and optionally the fingerprint and spectrum views as PNG files (`product.views`).

The model reads images at their native resolution: resizing would smear the
pixel-scale traces it looks for. An image larger than the model's input is read as
up to `max_crops` non-overlapping crops spread over it, and the crops' answers are
averaged (their spread is reported); a smaller one is reflect-padded, and flagged.
"""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from gmtrace.core.runtime import pick_device
from gmtrace.core.schema import CONTINUOUS, UNKNOWN, Normalizer, decode
from gmtrace.data.crops import Crops, crop_grid, crops_of
from gmtrace.data.images import (
    MAX_FILE_BYTES,
    Decoded,
    ImageError,
    decode_bytes,
    load_rgb,
    read_bytes,
    save_png,
)
from gmtrace.data.jpegcrop import decode_crops
from gmtrace.engine.runtimes import make_runtime
from gmtrace.nets.fen import fold_batch_norm
from gmtrace.product.calibration import (
    CalibrationError,
    calibrated_digest,
    load_calibration,
)
from gmtrace.product.config import INFER_BATCH, MAX_CROPS, THRESHOLD, TOP_K
from gmtrace.product.groups import descriptions_of, group_numbers
from gmtrace.product.rows import ImageResult
from gmtrace.product.scan import scan
from gmtrace.product.views import image_views
from gmtrace.readout.abstain import FIELD_NAMES
from gmtrace.readout.embedding import open_set_score
from gmtrace.readout.fused import FusedAnswer, Fusion
from gmtrace.readout.inference import detect, infer
from gmtrace.readout.saved import load_model, model_digest, model_id


def default_model_dir() -> Path:
    """The model shipped inside the package (trained with `gmtrace train`)."""
    return Path(str(resources.files("gmtrace") / "models" / "default"))


class Analyzer:
    """Analyze images with a trained gmtrace model (default: the shipped one).

    Constructor arguments are kept as given (scikit-learn style); the loaded model
    and its metadata are `model_` (the network), `readout_` (what was fitted on its
    features) and `meta_`.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        device: str | None = None,
        top_k: int = TOP_K,
        max_crops: int = MAX_CROPS,
        threshold: float = THRESHOLD,
        calibration: str | None = None,
        runtime: str | None = None,
        threads: int | None = None,
        batch: int = INFER_BATCH,
        precision: str | None = None,
    ):
        self.model_dir = model_dir
        self.device = device
        self.top_k = top_k
        self.max_crops = max_crops
        self.threshold = threshold
        self.calibration = calibration
        self.runtime = runtime
        self.batch = batch
        self.threads = threads
        self.precision = precision
        d = Path(model_dir) if model_dir is not None else default_model_dir()
        self.model_dir_ = d
        saved = load_model(d, device=pick_device(device))
        # inference only: batch norm folded into the convolutions (same answers)
        self.model_ = fold_batch_norm(saved.model)
        self.readout_ = saved.readout
        gallery = getattr(self.readout_, "gallery_", None)
        self.gallery_ = None if gallery is None else gallery.cpu().numpy()
        self.meta_ = saved.meta
        self.gm_names_: list[str] = list(saved.meta.get("gm_names", []))
        self.normalizer_ = Normalizer.from_dict(saved.meta["normalizer"])
        self.image_size_ = int(saved.meta.get("image_size", 64))
        # the fused detector (real-photo model, unsure band) where the model has one
        self.base_fusion_ = Fusion.load(d)
        # the network's and the readout's files together (`readout.saved.model_digest`)
        self.weights_sha256_ = model_digest(d)
        self.model_id_ = model_id(saved.meta, self.weights_sha256_)
        self.base_model_id_ = self.model_id_
        # the engine's graph is named by the model's own digest (a calibration changes
        # `weights_sha256_`, not the network or its readout)
        digest = self.weights_sha256_
        self._use_calibration(calibration)
        # above it, an image is of a GM the model does not know: by the fusion's
        # open-set rule where the model has one (`Fusion.open_threshold`)
        self.open_threshold_ = float(self.readout_.open_threshold_)
        if self.fusion_ is not None:
            self.open_threshold_ = self.fusion_.open_threshold(self.open_threshold_)
        # the arithmetic (`core.precision`): bfloat16's answers are another model's
        # (they differ by about 1e-2), so its rows name it and are not mixed with fp32's
        self.precision_ = precision or os.environ.get("GMTRACE_PRECISION", "fp32")
        if self.precision_ != "fp32":
            self.model_id_ = f"{self.model_id_}+{self.precision_}"
            self.weights_sha256_ = hashlib.sha256(
                f"{self.weights_sha256_}+{self.precision_}".encode()
            ).hexdigest()
        # the engine the network and readout run in (`engine.make_runtime`; `auto` is
        # torch, which always builds)
        self.runtime_ = make_runtime(
            runtime or os.environ.get("GMTRACE_RUNTIME", "auto"),
            self.model_,
            self.readout_,
            digest,
            self.image_size_,
            threads=threads,
            precision=self.precision_,
        )

    def _use_calibration(self, name: str | None) -> None:
        """A user's calibration of the fused model (`product.calibration`): its real
        model and threshold, and its name in the model id."""
        self.fusion_, self.threshold_, self.calibration_ = self.base_fusion_, self.threshold, None
        if self.base_fusion_ is None:
            if name not in (None, "none"):
                raise CalibrationError(f"{self.model_dir_}: the model has no fusion to calibrate")
            return
        cal = load_calibration(self.base_model_id_, name)
        if cal is not None:
            self.calibration_, self.fusion_ = cal, cal.fusion
            self.threshold_ = max(self.threshold, cal.threshold)
            self.weights_sha256_ = calibrated_digest(self.weights_sha256_, cal)
            self.model_id_ = f"{self.base_model_id_}+{cal.tag}"

    def open_scores(self, attribution: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """[N] the open-set score of images by their attribution probabilities and
        grouping embeddings: the fusion's rule where the model has one
        (`Fusion.open_score`), else the network's gallery score."""
        score = open_set_score(attribution, embedding, self.gallery_)
        return score if self.fusion_ is None else self.fusion_.open_score(embedding, score)

    def supervised_p(self, images: np.ndarray) -> np.ndarray:
        """The network's own calibrated p(generated) of uint8 crops [N, H, W, 3]
        (`inference.detect`: not the rest of a row)."""
        return detect(self.model_, self.readout_, images, self.batch, runtime=self.runtime_)

    def analyze_array(self, img: np.ndarray, name: str = "<array>") -> ImageResult:
        """Analyze one RGB uint8 image [H, W, 3]."""
        return self.analyze_arrays([img], [name])[0]

    def analyze_arrays(self, images: list[np.ndarray], names: list[str]) -> list[ImageResult]:
        """Analyze RGB uint8 images [H, W, 3] (any sizes) in one batched pass: every
        image's crops go through the network together, and each image's answer is
        the mean over its own crops. The answers depend only on the images given
        together (the batch), so a scan that cuts its files into the same batches
        gets the same values whenever it runs."""
        return self.analyze_crops([self.crops(img) for img in images], names)

    def crops(self, img: np.ndarray) -> Crops:
        """What the network reads of an image (`crop_grid`), with its size: enough
        to analyze it once the image itself is gone (a scan keeps only this)."""
        return crops_of(img, self.image_size_, self.max_crops)

    def decode_crops(self, data: bytes, name: str | Path) -> tuple[Decoded, Crops | None]:
        """`crops` of a file's bytes, with their hash and length, or None and the
        file's error: a large JPEG's crops are cut without decoding all of it
        (`data.jpegcrop`, the same pixels)."""
        return decode_crops(data, name, self.image_size_, self.max_crops)

    def analyze_crops(self, crops: list[Crops], names: list[str]) -> list[ImageResult]:
        """`analyze_arrays` of images already cut by `crops`. numpy's BLAS runs on one
        thread meanwhile: OpenBLAS keeps its threads spinning after each product,
        taking the cores from torch (the self-description ran at a third of its speed
        after a row's few small products; docs/benchmarks.md)."""
        if not crops:
            return []
        with threadpool_limits(limits=1, user_api="blas"):
            return self._analyze_crops(crops, names)

    def _analyze_crops(self, crops: list[Crops], names: list[str]) -> list[ImageResult]:
        grid = np.concatenate([c.grid for c in crops])
        inf = infer(self.model_, self.readout_, grid, self.batch, runtime=self.runtime_)
        fused = None
        if self.fusion_ is not None:
            owner = np.repeat(np.arange(len(crops)), [len(c.grid) for c in crops])

            def supervised(images: np.ndarray) -> np.ndarray:
                return inf.p_generated if images is grid else self.supervised_p(images)

            fused = self.fusion_.answer(grid, supervised, owner)
        ends = np.cumsum([len(c.grid) for c in crops])
        out = []
        for i, (c, name, end) in enumerate(zip(crops, names, ends, strict=True)):
            sl = slice(int(end) - len(c.grid), int(end))
            out.append(self._result(inf, sl, c, name, fused, i))
        return out

    def _verdict(self, fused: FusedAnswer | None, i: int, p: float) -> dict:
        """The verdict of image i and, with a fusion, its parts and why unsure."""
        verdict = "generated" if p >= self.threshold_ else "real"
        if fused is None:
            return {"verdict": verdict}
        return {
            "verdict": "unsure" if fused.unsure[i] else verdict,
            "unsure_reason": str(fused.reason[i]) if fused.unsure[i] else None,
            "p_supervised": float(fused.p_supervised[i]),
            "real_unlikeness": float(fused.unlikeness[i]),
        }

    def _result(
        self, inf, sl: slice, c: Crops, name: str, fused: FusedAnswer | None, i: int
    ) -> ImageResult:
        p = float(inf.p_generated[sl].mean() if fused is None else fused.p_generated[i])
        attr = inf.attribution[sl].mean(axis=0)
        top = np.argsort(-attr)[: self.top_k]
        emb = inf.embedding[sl].mean(axis=0)
        open_score = float(self.open_scores(attr[None], emb[None])[0])
        cont, disc, loss = inf.parse_of(sl)
        parsed = decode(cont[None], [d[None] for d in disc], loss[None], self.normalizer_)[0]
        losses = parsed.pop("losses")
        loss_p = parsed.pop("loss_probabilities")
        gate = self.fusion_.gate if self.fusion_ is not None else None
        unknown = None
        if gate is not None:  # parsing that abstains: the fields it does not answer
            spread = inf.spread_of(sl)
            answered = gate.answered(
                cont[None],
                [d[None] for d in disc],
                loss[None],
                None if spread is None else spread[None],
            )[0]
            unknown = [n for n, a in zip(FIELD_NAMES, answered, strict=True) if not a]
            for n in unknown:
                if n in parsed:
                    parsed[n] = UNKNOWN
            losses = [t for t in losses if f"loss {t}" not in unknown]
        return ImageResult(
            path=name,
            ok=True,
            width=c.size[0],
            height=c.size[1],
            crops=len(c.grid),
            padded=c.padded,
            p_generated=p,
            **self._verdict(fused, i, p),
            top_gms=[{"name": self.gm_names_[j], "probability": float(attr[j])} for j in top],
            open_set_score=open_score,
            unknown_gm=bool(open_score > self.open_threshold_),
            hyperparameters=parsed,
            continuous_spread={
                f.name: float(s)
                for f, s in zip(CONTINUOUS, inf.continuous[sl].std(axis=0), strict=True)
            },
            losses=losses,
            loss_probabilities=loss_p,
            parse_unknown=unknown,
            embedding=emb,
            parse_linear=None if inf.parse_linear is None else inf.parse_linear[sl].mean(axis=0),
            description=None if fused is None else fused.description[i],
        )

    def group(self, results: list[ImageResult], generated_only: bool = True) -> int:
        """Group analyzed images by source GM, without knowing how many GMs there
        are (Ward clustering cut near the silhouette peak, `grouping.cluster.group`;
        a fused model's density clustering where it chose one, an image that fits no
        group alone): sets `result.group` to 1, 2, ... (largest first, `grouping.cluster.
        number_groups`; None for failed images, and for images called real when
        `generated_only`; unsure ones are grouped). Returns the number of groups."""
        keep = [
            r
            for r in results
            if r.ok
            and r.embedding is not None
            and (r.verdict in ("generated", "unsure") or not generated_only)
        ]
        if not keep:
            return 0
        emb = np.stack([r.embedding / (np.linalg.norm(r.embedding) + 1e-12) for r in keep])
        size = self.fusion_.min_size if self.fusion_ is not None else 0
        weight = self.fusion_.group_weight if self.fusion_ is not None else 0.0
        # a fused model's grouping: density clustering where its inner validation chose
        # it, on the images' self-descriptions too where it chose that
        numbers = group_numbers(emb, size, weight, descriptions_of(keep, weight))
        for r, k in zip(keep, numbers, strict=True):
            r.group = int(k)
        return int(numbers.max())

    def scan(
        self,
        paths: list[str | Path],
        out: str | Path,
        workers: int = 2,
        on_progress=None,
        engine: str = "local",
        ray_address: str | None = None,
    ):
        """Scan files and folders into a results file (`gmtrace.product.scan.scan`): one row
        per file, resumable; returns a `ScanSummary`."""
        return scan(self, paths, out, workers, on_progress, engine=engine, ray_address=ray_address)

    def analyze(
        self, paths: list[str | Path], save_dir: str | Path | None = None, on_done=None
    ) -> list[ImageResult]:
        """Analyze image files. A file that cannot be read gets `ok=False` and a
        one-line `error` naming it; the rest are analyzed. With `save_dir`, each
        image's fingerprint and spectrum are written there as PNG."""
        out = []
        for p in paths:
            out.append(self._analyze_file(p, save_dir))
            if on_done is not None:
                on_done()
        return out

    def _analyze_file(self, p: str | Path, save_dir: str | Path | None) -> ImageResult:
        try:
            data = read_bytes(p, MAX_FILE_BYTES)
        except ImageError as e:
            return ImageResult(path=str(p), ok=False, error=str(e))
        if save_dir is None:  # only the crops are read: a large JPEG is not decoded whole
            d, crops = self.decode_crops(data, p)
        else:
            d = decode_bytes(data, p)
            crops = None if d.image is None else self.crops(d.image)
        if crops is None:
            return ImageResult(str(p), False, d.error, sha256=d.sha256, bytes=d.nbytes)
        r = self.analyze_crops([crops], [str(p)])[0]
        r.sha256, r.bytes = d.sha256, d.nbytes
        if save_dir is not None:
            self._save_views(d.image, Path(p), Path(save_dir), r)
        return r

    def _save_views(self, img: np.ndarray, path: Path, save_dir: Path, r: ImageResult) -> None:
        save_dir.mkdir(parents=True, exist_ok=True)
        views = image_views(img, self)
        r.fingerprint_png = str(save_dir / f"{path.stem}_fingerprint.png")
        r.spectrum_png = str(save_dir / f"{path.stem}_spectrum.png")
        save_png(views["fingerprint"], r.fingerprint_png)
        save_png(views["spectrum"], r.spectrum_png)


def check_zoo(analyzer: Analyzer, zoo: str | Path, per_gm: int = 12, on_done=None) -> dict:
    """Analyze a zoo whose truth is known (e.g. GMs the model never saw) and compare:
    per GM, the share of its images called generated and called "unknown GM", and
    the GM-level parse (its images taken together, `Inference.parse_of`) against
    the introspected truth (fields whose truth is unknown left out); for the zoo's
    real crops, the share called real."""
    from gmtrace.core.metrics import binary_f1, nanmean
    from gmtrace.core.schema import (
        DISCRETE,
        LOSS_THRESHOLD,
        LOSS_TYPES,
        UNKNOWN,
        UNKNOWN_CLASS,
        encode,
        loss_bits,
    )
    from gmtrace.data.dataset import GMDataset

    ds = GMDataset.from_zoo(zoo)
    j_up = [f.name for f in DISCRETE].index("upsampling")
    up = DISCRETE[j_up]
    rows, failures = [], []
    truth_norm = encode(ds.arch_matrix(), ds.loss_matrix(), analyzer.normalizer_)
    for i, g in enumerate(ds.gms):
        imgs = []
        for p in g.images()[:per_gm]:
            try:
                imgs.append(load_rgb(p))
            except ImageError as e:
                failures.append(str(e))
        if not imgs:
            continue
        crops = np.concatenate([crop_grid(a, analyzer.image_size_, 1)[0] for a in imgs])
        inf = infer(
            analyzer.model_, analyzer.readout_, crops, analyzer.batch, runtime=analyzer.runtime_
        )
        cont, disc, loss = inf.parse_of()
        pred_bits = loss >= LOSS_THRESHOLD
        true_bits = loss_bits(g.losses) > 0.5
        truth_disc = truth_norm.discrete[i]
        known = truth_disc != UNKNOWN_CLASS
        picked = np.array([p.argmax() for p in disc])
        rows.append(
            {
                "gm": g.name,
                "family": g.family,
                "images": len(imgs),
                "called_generated": float(np.mean(inf.p_generated >= analyzer.threshold)),
                "called_unknown": float(
                    np.mean(
                        analyzer.open_scores(inf.attribution, inf.embedding)
                        > analyzer.open_threshold_
                    )
                ),
                "continuous_l1": float(nanmean(np.abs(cont - truth_norm.continuous[i]))),
                "discrete_correct": int(np.sum(picked[known] == truth_disc[known])),
                "discrete_known": int(known.sum()),
                "loss_f1": None if g.losses is None else binary_f1(pred_bits, true_bits),
                "true_losses": UNKNOWN
                if g.losses is None
                else [t for t, b in zip(LOSS_TYPES, true_bits, strict=True) if b],
                "predicted_losses": [t for t, b in zip(LOSS_TYPES, pred_bits, strict=True) if b],
                "true_upsampling": up.classes[truth_disc[j_up]] if known[j_up] else UNKNOWN,
                "predicted_upsampling": up.classes[int(disc[j_up].argmax())],
            }
        )
        if on_done is not None:
            on_done()
    real_p = []
    for r in ds.real[: per_gm * 4]:
        try:
            real_p.append(analyzer.analyze_array(load_rgb(r.path), str(r.path)).p_generated)
        except ImageError as e:
            failures.append(str(e))
    real_p = np.array(real_p)
    return {
        "zoo": str(zoo),
        "gms": rows,
        "real_images": int(len(real_p)),
        "real_called_real": float(np.mean(real_p < analyzer.threshold)) if len(real_p) else None,
        "fake_called_generated": float(np.mean([r["called_generated"] for r in rows]))
        if rows
        else None,
        "mean_loss_f1": float(nanmean([r["loss_f1"] for r in rows if r["loss_f1"] is not None]))
        if rows
        else None,
        "mean_discrete_correct": float(np.mean([r["discrete_correct"] for r in rows]))
        if rows
        else None,
        "mean_continuous_l1": float(np.mean([r["continuous_l1"] for r in rows])) if rows else None,
        "failures": failures,
    }
