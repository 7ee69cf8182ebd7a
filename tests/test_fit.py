"""Fit verdicts: memory for weights + KV cache + buffers against what is free, split between
system and GPU memory the way llama.cpp places offloaded layers."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from engine.catalog import estimate_memory, read_header, read_model_info
from engine.catalog.fit import (
    Fit,
    LayerSizes,
    default_gpu_layers,
    file_verdict,
    fit_verdict,
    grade,
    offload_split,
)
from engine.options import KVType

GB = 1_000_000_000


def test_grade_keeps_a_margin():
    assert grade(80, 100) is Fit.FITS
    assert grade(81, 100) is Fit.TIGHT
    assert grade(100, 100) is Fit.TIGHT
    assert grade(101, 100) is Fit.NO
    assert grade(1, None) is Fit.UNKNOWN


def test_layer_sizes_add_up_to_the_weights(smol_path: Path, gemma_path: Path):
    for path in (smol_path, gemma_path):
        info, sizes = read_model_info(path), LayerSizes.from_header(read_header(path))
        assert len(sizes.layer_bytes) == info.block_count
        assert sizes.input_bytes + sum(sizes.layer_bytes) + sizes.output_bytes \
            == info.weights_bytes
    # Gemma ties its output projection to the token embedding (no output.weight)
    assert LayerSizes.from_header(read_header(gemma_path)).tied_output


def test_verdict_counts_weights_kv_and_buffers_at_the_chosen_context(smol_path: Path):
    info = read_model_info(smol_path)
    sizes = LayerSizes.from_header(read_header(smol_path))
    small = fit_verdict(info, 1024, KVType.F16, ram_free=8 * GB, sizes=sizes)
    large = fit_verdict(info, 8192, KVType.F16, ram_free=8 * GB, sizes=sizes)
    quantized = fit_verdict(info, 8192, KVType.Q4_0, ram_free=8 * GB, sizes=sizes)
    assert small.ram_needed == estimate_memory(info, 1024, KVType.F16,
                                               flash_attn=False).total_bytes
    assert small.ram_needed < quantized.ram_needed < large.ram_needed
    # 8,192 tokens of f16 KV: 30 layers x 3 KV heads x (64 + 64) x 2 bytes per token
    assert large.estimate and large.estimate.kv_bytes == 30 * 3 * 128 * 2 * 8192
    assert large.fit is Fit.FITS and "free memory" in large.describe()
    assert fit_verdict(info, 8192, ram_free=large.ram_needed, sizes=sizes).fit is Fit.TIGHT
    assert fit_verdict(info, 8192, ram_free=large.ram_needed - 1, sizes=sizes).fit is Fit.NO
    assert fit_verdict(info, 8192, ram_free=None, sizes=sizes).fit is Fit.UNKNOWN


def test_offloading_moves_the_last_layers_and_their_cache_to_the_gpu(gemma_path: Path):
    info = read_model_info(gemma_path)
    sizes = LayerSizes.from_header(read_header(gemma_path))
    estimate = estimate_memory(info, 4096, KVType.F16, flash_attn=False)
    ram0, vram0, n0 = offload_split(info, sizes, estimate, 0)
    assert (ram0, vram0, n0) == (estimate.total_bytes, 0, 0)
    ram4, vram4, n4 = offload_split(info, sizes, estimate, 4)
    kv_layer = estimate.kv_bytes / info.block_count
    assert n4 == 4
    assert vram4 == sum(sizes.layer_bytes[-4:]) + round(4 * kv_layer) + estimate.compute_bytes
    ram_all, vram_all, n_all = offload_split(info, sizes, estimate, -1)
    assert n_all == info.block_count + 1
    # all layers and the output: the tied embedding is copied to the GPU as the output
    assert vram_all == (sum(sizes.layer_bytes) + sizes.output_bytes + sizes.input_bytes
                        + estimate.kv_bytes + estimate.compute_bytes)
    assert ram_all < ram4 < ram0
    assert offload_split(info, sizes, estimate, 999) == (ram_all, vram_all, n_all)


def test_gpu_memory_decides_the_verdict_when_offloading(gemma_path: Path):
    info = read_model_info(gemma_path)
    sizes = LayerSizes.from_header(read_header(gemma_path))
    roomy = fit_verdict(info, 4096, ram_free=16 * GB, sizes=sizes, n_gpu_layers=-1,
                        vram_free=80 * GB)
    assert roomy.fit is Fit.FITS and roomy.gpu_layers == info.block_count + 1
    assert "on the GPU" in roomy.describe()
    cramped = replace(roomy, vram_free=roomy.vram_needed - 1)
    assert cramped.vram_fit is Fit.NO
    assert fit_verdict(info, 4096, ram_free=16 * GB, sizes=sizes, n_gpu_layers=-1,
                       vram_free=roomy.vram_needed - 1).fit is Fit.NO


@pytest.mark.parametrize("vram_gb, expected", [(None, 0), (0.1, 0), (80, -1)])
def test_default_gpu_layers_follow_the_free_gpu_memory(gemma_path: Path, vram_gb, expected):
    info = read_model_info(gemma_path)
    sizes = LayerSizes.from_header(read_header(gemma_path))
    vram = None if vram_gb is None else int(vram_gb * GB)
    assert default_gpu_layers(info, 4096, KVType.F16, vram, sizes) == expected


def test_default_gpu_layers_offload_part_of_a_model_that_does_not_fit_whole(gemma_path: Path):
    info = read_model_info(gemma_path)
    sizes = LayerSizes.from_header(read_header(gemma_path))
    estimate = estimate_memory(info, 4096, KVType.F16, flash_attn=False)
    _, vram_10, _ = offload_split(info, sizes, estimate, 10)
    _, vram_11, _ = offload_split(info, sizes, estimate, 11)
    free = int(vram_10 / 0.8) + 1  # room for 10 layers with the margin, not for 11
    assert vram_11 > free * 0.8
    assert default_gpu_layers(info, 4096, KVType.F16, free, sizes) == 10


def test_a_hub_file_is_judged_by_its_size():
    assert file_verdict(4 * GB, ram_free=16 * GB).fit is Fit.FITS
    assert file_verdict(4 * GB, ram_free=5 * GB).fit is Fit.TIGHT
    assert file_verdict(4 * GB, ram_free=3 * GB).fit is Fit.NO
    on_gpu = file_verdict(4 * GB, ram_free=3 * GB, vram_free=24 * GB)
    assert on_gpu.fit is Fit.FITS and "GPU" in on_gpu.describe()
    assert "KV cache" in file_verdict(4 * GB, ram_free=16 * GB).describe()


class _File:
    def __init__(self, quant: str, size: int, problem: str | None = None) -> None:
        self.quant, self.size, self.problem = quant, size, problem

    def __repr__(self) -> str:
        return self.quant


def test_the_recommended_file_is_the_best_quality_that_fits_with_room():
    from engine.catalog.fit import quant_bits, recommend

    assert [quant_bits(q) for q in ("Q4_K_M", "IQ3_XS", "Q8_0", "BF16", "junk")] == \
        [4, 3, 8, 16, None]
    files = [_File("Q2_K", 3 * GB), _File("Q4_K_M", 5 * GB), _File("Q5_K_M", 6 * GB),
             _File("Q6_K", 7 * GB), _File("Q8_0", 9 * GB), _File("F16", 16 * GB),
             _File("Q4_0", 4 * GB, problem="incomplete split set")]
    assert recommend(files, 64 * GB)[0].quant == "Q6_K"
    assert recommend(files, 9 * GB)[0].quant == "Q5_K_M"  # 6 GB x 1.15 < 80 % of 9 GB
    assert recommend(files, 5 * GB)[0].quant == "Q2_K"
    choice, why = recommend(files, 2 * GB)
    assert choice is None and "no file" in why
    assert recommend(files, 2 * GB, vram_free=80 * GB)[0].quant == "Q6_K"
    assert recommend([_File("Q8_0", GB), _File("F16", 2 * GB)], 64 * GB)[0].quant == "Q8_0"
    assert recommend([_File("F16", 2 * GB), _File("F32", 4 * GB)], 64 * GB)[0].quant == "F16"
    assert recommend(files, None)[0] is None
