"""A stand-in for the authors' released network, built as their code defines it.

Source: GitHub ``PeiChunChang/MS-SincResNet`` @ 95799db1d1866b83edf3d1873b3de34cef319e28,
``models.py`` (unchanged since dd3c52f3), as described in /work/notes/issue11-research.md §A.1:

- ``layerNorm = nn.LayerNorm([1, 48000])``: weight and bias of shape (1, 48000);
- ``sincNet1``, ``sincNet2``, ``sincNet3``: ``Sequential(SincConv_fast(160, L), BatchNorm1d(160),
  ReLU(inplace=True), AdaptiveAvgPool1d(1024))`` with L = 251, 501, 1001; ``SincConv_fast`` is
  SincNet's layer (mel-initialised ``low_hz_``/``band_hz_`` of shape (K, 1), half Hamming window on
  SincNet's grid, filters built in forward, then ``F.conv1d``), written from its formula in
  :class:`tests.oracles.AuthorsSincConv`;
- ``resnet``: a wrapper whose ``model`` is torchvision's ``resnet18`` with
  ``fc = nn.Linear(512, 10, bias=True)``, called on the stacked image with torchvision's forward;
- ``forward`` normalises, runs the three banks, concatenates their outputs along a new dim 1
  (order 251, 501, 1001) and returns ``(logits, feat1, feat2, feat3)``, the feats of shape
  (B, 1, K, P) because their ``unsqueeze_`` works in place.

Deviations, all harmless for a comparison of logits: the trunk starts from random weights (theirs
downloads ImageNet weights and then trains them; the test loads random ones anyway); sizes other
than the release's are accepted for faster tests, with the same module tree; and the window and
time axis of the sinc layer are computed in the parameters' dtype, because their float32
attributes would make a float64 copy of their model fail with a dtype mismatch.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from tests.oracles import AuthorsSincConv

RELEASED_SIZES = {"num_filters": 160, "kernel_sizes": (251, 501, 1001), "pool_bins": 1024,
                  "clip_samples": 48000}


class ReleasedResNet(nn.Module):
    """Their ``myResnet``: ``model`` is resnet18 with a 10-way ``fc``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.model = torchvision.models.resnet18(weights=None)
        self.model.fc = nn.Linear(512, num_classes, bias=True)

    def forward(self, image):
        return self.model(image)


def released_bank(num_filters: int, kernel_size: int, pool_bins: int) -> nn.Sequential:
    """One of their ``sincNet`` Sequentials (state-dict keys ``0.low_hz_`` ... ``1.running_var``)."""
    return nn.Sequential(AuthorsSincConv(num_filters, kernel_size), nn.BatchNorm1d(num_filters),
                         nn.ReLU(inplace=True), nn.AdaptiveAvgPool1d(pool_bins))


class ReleasedMSSincResNet(nn.Module):
    """Their ``MS_SincResNet``; the defaults are the release's sizes."""

    def __init__(self, num_filters=160, kernel_sizes=(251, 501, 1001), pool_bins=1024,
                 clip_samples=48000, num_classes=10):
        super().__init__()
        self.layerNorm = nn.LayerNorm([1, clip_samples])
        self.sincNet1 = released_bank(num_filters, kernel_sizes[0], pool_bins)
        self.sincNet2 = released_bank(num_filters, kernel_sizes[1], pool_bins)
        self.sincNet3 = released_bank(num_filters, kernel_sizes[2], pool_bins)
        self.resnet = ReleasedResNet(num_classes)

    def forward(self, x):
        x = self.layerNorm(x)
        feats = [bank(x).unsqueeze(1) for bank in (self.sincNet1, self.sincNet2, self.sincNet3)]
        return (self.resnet(torch.cat(feats, dim=1)), *feats)


def released_checkpoint(model: nn.Module, epoch: int = 7) -> dict:
    """What their ``main.py`` saves each epoch as ``checkpoint_<epoch>.tar``: the bare state dict
    under ``state_dict`` beside ``epoch``, ``train_loss`` (a tensor that still requires grad) and
    ``train_acc`` (a tensor)."""
    loss = (torch.rand(()) * torch.ones((), requires_grad=True)).mul(2)
    return {"epoch": epoch, "state_dict": model.state_dict(), "train_loss": loss,
            "train_acc": torch.rand(())}


def as_saved_from_cuda(path) -> None:
    """Rewrite a ``torch.save`` zip file written on the CPU into the file a save from the first
    GPU writes, as their main.py saves (``model.cuda()``, then ``torch.save``): each storage's
    persistent id in ``data.pkl`` is ``('storage', type, key, location, numel)``, and
    ``location`` is ``torch.serialization.location_tag`` of the storage, 'cuda:0' there instead
    of 'cpu'. Those strings are the pickle's protocol-2 BINUNICODE instructions ('X', a 4-byte
    length, the UTF-8 text; memoised once, then fetched by BINGET), so replacing the instruction
    shifts no other: the other records are copied byte for byte. Found with
    ``pickletools.dis`` on a saved file (torch 2.11)."""
    import pickletools
    import zipfile

    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        records = [(info.filename, archive.read(info)) for info in archive.infolist()]
    cuda = "cuda:0".encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records:
            if name.endswith("/data.pkl"):
                pieces, last = [], 0
                for op, arg, pos in pickletools.genops(data):
                    if op.name == "BINUNICODE" and arg == "cpu":
                        pieces += [data[last:pos], b"X", len(cuda).to_bytes(4, "little"), cuda]
                        last = pos + 1 + 4 + len("cpu")
                data = b"".join(pieces) + data[last:]
                assert b"cuda:0" in data, "no CPU storage location found to rewrite"
            archive.writestr(name, data)
