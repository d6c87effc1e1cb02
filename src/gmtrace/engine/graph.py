"""The forward pass a scan row needs from the pixels, as one module with named
outputs (`ScanGraph`), and its export to ONNX with the batch size left free."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn as nn

from gmtrace.core.files import atomic_path
from gmtrace.nets.model import GMTraceModel
from gmtrace.readout.inference import scan_outputs
from gmtrace.readout.readout import Readout

# ONNX opset of the exported graph: 18, whose DFT OpenVINO reads right (its reading
# of opset 20's DFT gave features off by up to 14 on the shipped model; ONNX Runtime
# reads both)
OPSET = 18


class ScanGraph(nn.Module):
    """A network made for inference (batch norm folded into its convolutions, as
    `Analyzer` holds it: `nets.fen.fold_batch_norm`) and its fitted readout: images
    [B, 3, H, W] in [-1, 1] -> the tensors of `names`, in that order
    (`readout.inference.scan_outputs`, what `infer` gathers per batch)."""

    def __init__(self, model: GMTraceModel, readout: Readout):
        super().__init__()
        self.model = model.eval()
        self.readout = readout.to(next(self.model.parameters()).device)
        with torch.no_grad():
            x = torch.zeros(1, 3, 32, 32, device=next(self.model.parameters()).device)
            outputs = scan_outputs(self.model, self.readout, x)
        self.names = [n for n in outputs if n != "network"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = scan_outputs(self.model, self.readout, x)
        return tuple(outputs[n] for n in self.names)


def export_onnx(graph: ScanGraph, path: str | Path, image_size: int) -> Path:
    """`graph` as an ONNX file at `path` (written atomically), for images of
    `image_size` px and any batch size."""
    import logging

    x = torch.zeros(2, 3, image_size, image_size)
    with torch.no_grad():
        graph(x)  # eager once: per-size constants (the spectrum's rings) are cached first
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    quiet = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [q.level for q in quiet]
    try:
        for q in quiet:
            q.setLevel(logging.ERROR)
        with warnings.catch_warnings(), torch.no_grad(), atomic_path(path) as tmp:
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                graph,
                (x,),
                dynamo=True,
                input_names=["x"],
                output_names=graph.names,
                dynamic_shapes={"x": {0: batch}},
                opset_version=OPSET,
                verbose=False,
            )
            program.save(str(tmp))
    finally:
        for q, lv in zip(quiet, levels, strict=True):
            q.setLevel(lv)
    return path
