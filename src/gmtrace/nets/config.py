"""The networks' configurations, apart from the torch modules they shape: plain
dataclasses (no torch), so the command line reads its defaults from them without
loading a network."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

KINDS = ("gmtrace", "red")
# config fields that only shape the readout fitted after training (`readout.fit`)
POST_TRAINING = ("group_dims", "spectrum_expert", "parse_probe", "probe_trees", "open_gallery")
# values of config fields added later, for configs saved before they existed
LEGACY = {
    "image_spectrum": False,
    "spectrum_expert": False,
    "peaks": False,
    "parse_probe": False,
    "probe_trees": 0,
    "open_gallery": False,
}


@dataclass(frozen=True)
class FENConfig:
    """A DnCNN-style FEN: conv-ReLU, (depth - 2) x [conv-BN-ReLU], conv to 3 channels.

    RED's FEN is depth 17, width 64, `highpass=False` (`red()`); the output is linear
    (unbounded). With `highpass=True` the network learns a correction to a fixed
    high-pass residual, F(I) = (I - box3(I)) + DnCNN(I), its last conv starting at
    zero: the fingerprint starts as the residual whose spectrum already shows
    up-sampling peaks, instead of as noise from a random network."""

    depth: int = 17
    width: int = 64
    batch_norm: bool = True
    highpass: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ParserConfig:
    in_ch: int = 3
    width: int = 32
    stages: int = 4
    embed: int = 128
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    fen: FENConfig = FENConfig(depth=6, width=24, batch_norm=True, highpass=True)
    parser: ParserConfig = ParserConfig(width=24, stages=4, embed=128)
    n_gms: int = 1
    proj: int = 64
    kind: str = "gmtrace"
    spectrum: bool = True
    spectrum_bins: int = 48
    spectrum_grid: int = 16
    image_spectrum: bool = True  # also the radial spectrum of the image's residual
    group_dims: int = 32  # grouping embedding: discriminant directions kept
    # detection adds a second linear probe that reads the image's spectrum alone
    spectrum_expert: bool = True
    # up-sampling peak prominences (`peak_prominence`) of the fingerprint's and the
    # image residual's spectrum, beside the radial profiles
    peaks: bool = True
    # parsing read by a GM-level probe on the image's pixel statistics
    # (`readout.fit.fit_parse_probe`), in place of the heads SGD trained
    parse_probe: bool = True
    # the probe's continuous fields read by the mean of a regression forest of this
    # many trees on the same statistics and the linear probe (`readout.fit.fit_parse_probe`);
    # 0: linear like the rest
    probe_trees: int = 64
    # the open-set score also reads the distance to the nearest training GM in the
    # grouping embedding (a gallery of the training GMs, `readout.embedding.open_set_score`)
    open_gallery: bool = True

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model kind must be one of {KINDS}, got {self.kind!r}")
        if self.spectrum_expert and not (self.spectrum and self.image_spectrum):
            raise ValueError("spectrum_expert needs spectrum and image_spectrum")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        return d | {"fen": self.fen.to_dict(), "parser": self.parser.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        """Inverse of `to_dict`; a field missing from `d` takes its value from
        before it existed (`LEGACY`), else its default; unknown keys are ignored."""
        names = {f.name for f in fields(cls)} - {"fen", "parser"}
        scalars = LEGACY | {k: d[k] for k in names if k in d}
        return cls(fen=FENConfig(**d["fen"]), parser=ParserConfig(**d["parser"]), **scalars)

    def with_gms(self, n_gms: int) -> ModelConfig:
        return replace(self, n_gms=n_gms)


def red_config(n_gms: int = 1, proj: int = 64) -> ModelConfig:
    """RED's architecture behind gmtrace's heads (the baseline of the evaluation)."""
    return ModelConfig(
        fen=FENConfig(depth=17, width=64, batch_norm=True, highpass=False),
        parser=ParserConfig(),
        n_gms=n_gms,
        proj=proj,
        kind="red",
        spectrum=False,
        image_spectrum=False,
        spectrum_expert=False,
        peaks=False,
        parse_probe=False,
    )
