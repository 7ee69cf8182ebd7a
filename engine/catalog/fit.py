"""Whether a model fits this machine: memory for its weights, KV cache and compute buffers
at the chosen context and KV type, against the memory free now, and on the GPU when layers
are offloaded.

Offloading follows llama.cpp's layout: with ``n_gpu_layers = N`` the last N repeating layers
(their weights and KV cache) go to the GPU, and the output layer too once N exceeds the
layer count; the token embedding always stays in system memory. Verdicts keep a margin:
"fits" uses at most ``COMFORTABLE_SHARE`` of what is free, "tight" up to all of it (other
programs, or a longer context, can push it over), "does not fit" beyond.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeVar

from engine.catalog.gguf_info import ModelInfo
from engine.catalog.header import GGUFHeader
from engine.catalog.memory import (
    COMPUTE_SLACK_BYTES,
    MemoryEstimate,
    estimate_memory,
)
from engine.options import KVType
from engine.units import format_bytes

COMFORTABLE_SHARE = 0.8
FILE_OVERHEAD = 1.15  # a hub file's weights plus a small context and buffers
_LAYER = re.compile(r"^blk\.(\d+)\.")
_OUTPUT = ("output.", "output_norm.")


class Fit(StrEnum):
    FITS = "fits"
    TIGHT = "tight"
    NO = "does not fit"
    UNKNOWN = "unknown"


_RANK = {Fit.FITS: 0, Fit.UNKNOWN: 1, Fit.TIGHT: 2, Fit.NO: 3}


def grade(needed: int, free: int | None) -> Fit:
    if free is None:
        return Fit.UNKNOWN
    if needed <= free * COMFORTABLE_SHARE:
        return Fit.FITS
    return Fit.TIGHT if needed <= free else Fit.NO


def worst(*fits: Fit) -> Fit:
    return max(fits, key=_RANK.__getitem__)


@dataclass(frozen=True, slots=True)
class LayerSizes:
    """Where a model's weight bytes sit: before the layers, in each layer, after them."""

    input_bytes: int  # token embedding (and anything else outside the layers)
    layer_bytes: tuple[int, ...]  # per repeating layer, in order
    output_bytes: int  # output norm and output projection
    tied_output: bool = False  # no output.weight: llama.cpp reuses (and, offloaded, copies)
    #                            the token embedding as the output projection

    @classmethod
    def from_header(cls, header: GGUFHeader) -> LayerSizes:
        layers: dict[int, int] = {}
        inputs = outputs = 0
        for tensor in header.tensors:
            m = _LAYER.match(tensor.name)
            if m:
                layers[int(m[1])] = layers.get(int(m[1]), 0) + tensor.n_bytes
            elif tensor.name.startswith(_OUTPUT):
                outputs += tensor.n_bytes
            else:
                inputs += tensor.n_bytes
        count = max(layers) + 1 if layers else 0
        tied = not any(t.name == "output.weight" for t in header.tensors)
        return cls(inputs, tuple(layers.get(i, 0) for i in range(count)), outputs, tied)

    @classmethod
    def uniform(cls, info: ModelInfo) -> LayerSizes:
        """A guess when the tensor table is not at hand: the weights spread evenly over the
        layers plus an embedding and an output of one layer each."""
        parts = max(info.block_count, 0) + 2
        share = info.weights_bytes // parts
        return cls(share, (share,) * max(info.block_count, 0), share)


@dataclass(frozen=True, slots=True)
class FitVerdict:
    fit: Fit
    ram_needed: int
    ram_free: int | None
    vram_needed: int = 0
    vram_free: int | None = None
    gpu_layers: int = 0  # layers placed on the GPU (output layer counted as one)
    total_layers: int = 0
    estimate: MemoryEstimate | None = None  # None for a file not downloaded yet
    weights_only: bool = False  # the KV cache is not counted (architecture unknown yet)

    @property
    def ram_fit(self) -> Fit:
        return grade(self.ram_needed, self.ram_free)

    @property
    def vram_fit(self) -> Fit:
        return grade(self.vram_needed, self.vram_free) if self.vram_needed else Fit.FITS

    def describe(self) -> str:
        """The verdict with its numbers, in one sentence."""
        if self.weights_only:
            return self._describe_file()
        need = f"needs ~{format_bytes(self.ram_needed)}"
        have = (f" of {format_bytes(self.ram_free)} free memory" if self.ram_free is not None
                else " (free memory unknown)")
        text = f"{self.fit.value.capitalize()}: {need}{have}"
        if self.gpu_layers:
            vram = (f"{format_bytes(self.vram_free)} free" if self.vram_free is not None
                    else "free memory unknown")
            text += (f" and ~{format_bytes(self.vram_needed)} on the GPU ({vram}) with "
                     f"{self.gpu_layers} of {self.total_layers} layers offloaded")
        if self.estimate is not None:
            text += f". {self.estimate.describe()}."
        return text

    def _describe_file(self) -> str:
        on_gpu = self.vram_needed > 0
        needed = self.vram_needed if on_gpu else self.ram_needed
        free = self.vram_free if on_gpu else self.ram_free
        where = "GPU memory" if on_gpu else "memory"
        have = f" of {format_bytes(free)} free {where}" if free is not None else \
            f" ({where} free unknown)"
        how = " with every layer on the GPU" if on_gpu else ""
        return (f"{self.fit.value.capitalize()}: needs ~{format_bytes(needed)}{have}{how} "
                "(the file plus a small context; a long context's KV cache adds more)")


def offload_split(info: ModelInfo, sizes: LayerSizes, estimate: MemoryEstimate,
                  n_gpu_layers: int) -> tuple[int, int, int]:
    """(system memory, GPU memory, layers offloaded) for ``n_gpu_layers`` (-1: all)."""
    n_layer = len(sizes.layer_bytes) or info.block_count
    slots = n_layer + 1  # the output layer counts as one more
    offloaded = slots if n_gpu_layers < 0 else min(max(n_gpu_layers, 0), slots)
    if offloaded == 0:
        return estimate.total_bytes, 0, 0
    on_gpu_layers = min(offloaded, n_layer)
    gpu_weights = sum(sizes.layer_bytes[n_layer - on_gpu_layers:])
    copied = 0
    if offloaded > n_layer:
        gpu_weights += sizes.output_bytes
        copied = sizes.input_bytes if sizes.tied_output else 0
    kv_per_layer = estimate.kv_bytes / n_layer if n_layer else 0
    gpu_kv = round(kv_per_layer * on_gpu_layers)
    vram = gpu_weights + copied + gpu_kv + estimate.compute_bytes
    ram = (estimate.weights_bytes - gpu_weights) + (estimate.kv_bytes - gpu_kv) \
        + COMPUTE_SLACK_BYTES
    return ram, vram, offloaded


def fit_verdict(info: ModelInfo, n_ctx: int = 0, kv_type: KVType = KVType.F16, *,
                ram_free: int | None, sizes: LayerSizes | None = None,
                n_gpu_layers: int = 0, vram_free: int | None = None,
                flash_attn: bool = False) -> FitVerdict:
    """The verdict for loading ``info`` at ``n_ctx`` (0: the model's default) with
    ``n_gpu_layers`` offloaded (0 on a build without a GPU)."""
    estimate = estimate_memory(info, n_ctx, KVType(kv_type), flash_attn=flash_attn)
    sizes = sizes or LayerSizes.uniform(info)
    ram, vram, offloaded = offload_split(info, sizes, estimate, n_gpu_layers)
    fit = grade(ram, ram_free)
    if offloaded:
        fit = worst(fit, grade(vram, vram_free))
    return FitVerdict(fit, ram, ram_free, vram, vram_free if offloaded else None, offloaded,
                      (len(sizes.layer_bytes) or info.block_count) + 1, estimate)


def default_gpu_layers(info: ModelInfo, n_ctx: int, kv_type: KVType, vram_free: int | None,
                       sizes: LayerSizes | None = None, flash_attn: bool = False) -> int:
    """How many layers to offload by default: every layer (-1) when the whole model fits
    comfortably in the GPU's free memory, else the most that do, else 0."""
    if not vram_free:
        return 0
    estimate = estimate_memory(info, n_ctx, KVType(kv_type), flash_attn=flash_attn)
    sizes = sizes or LayerSizes.uniform(info)
    slots = (len(sizes.layer_bytes) or info.block_count) + 1
    best = 0
    for n in range(1, slots + 1):
        _ram, vram, _ = offload_split(info, sizes, estimate, n)
        if grade(vram, vram_free) is not Fit.FITS:
            break
        best = n
    return -1 if best == slots else best


def file_verdict(size_bytes: int, ram_free: int | None,
                 vram_free: int | None = None) -> FitVerdict:
    """A verdict for a model not downloaded yet, from its file size alone (its layer and
    head counts, hence its KV cache, are known only from the header). With a GPU, the
    better of running it in system memory and offloading it whole."""
    needed = int(size_bytes * FILE_OVERHEAD)
    on_cpu = FitVerdict(grade(needed, ram_free), needed, ram_free, weights_only=True)
    if vram_free is None:
        return on_cpu
    on_gpu = FitVerdict(grade(needed, vram_free), COMPUTE_SLACK_BYTES, ram_free, needed,
                        vram_free, weights_only=True)
    return on_gpu if _RANK[on_gpu.fit] < _RANK[on_cpu.fit] else on_cpu


class _Downloadable(Protocol):
    @property
    def quant(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def problem(self) -> str | None: ...


_BITS = re.compile(r"^(?:I?Q|TQ)(\d)", re.IGNORECASE)
_FLOAT_BITS = {"F16": 16.0, "FP16": 16.0, "BF16": 16.0, "F32": 32.0, "FP32": 32.0,
               "MXFP4": 4.0}


def quant_bits(quant: str) -> float | None:
    """Bits per weight a quantization label names (roughly): Q4_K_M 4, IQ3_XS 3, F16 16."""
    label = quant.upper()
    if label in _FLOAT_BITS:
        return _FLOAT_BITS[label]
    m = _BITS.match(label)
    return float(m[1]) if m else None


_D = TypeVar("_D", bound=_Downloadable)


def recommend(files: Sequence[_D], ram_free: int | None,
              vram_free: int | None = None) -> tuple[_D | None, str]:
    """The file to suggest for this machine and why: the best quality that fits with room
    to spare, 4 to 6 bits per weight preferred (above 6 bits quality barely improves while
    every token reads more memory; below 4 it drops quickly)."""
    fitting = [f for f in files if f.problem is None
               and file_verdict(f.size, ram_free, vram_free).fit is Fit.FITS]
    if ram_free is None and vram_free is None:
        return None, "free memory is unknown on this machine"
    if not fitting:
        return None, "no file of this model fits in the memory free now"

    def tier(*, low: float, high: float) -> list[_D]:
        return [f for f in fitting if (b := quant_bits(f.quant)) is not None
                and low <= b <= high]

    if best := tier(low=4, high=6):
        return max(best, key=lambda f: f.size), "the best quality that fits with room to spare"
    if best := tier(low=6.5, high=8):
        return min(best, key=lambda f: f.size), "the smallest 8-bit file; it fits"
    if best := tier(low=1, high=3.9):
        return max(best, key=lambda f: f.size), ("only files below 4 bits per weight fit; "
                                                 "expect lower quality")
    return min(fitting, key=lambda f: f.size), "the smallest file that fits"
