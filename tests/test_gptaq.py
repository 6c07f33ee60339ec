"""GPTQ/GPTAQ with GPTQModel (lrmrepro.compress.gptaq): the GPTQ bit layout, and the backend for real in the
gptqmodel environment (.venvs/gptqmodel, made by the setup)."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from lrmrepro.compress.gptaq import dequantize, gptqmodel_python, unpack

ROOT = Path(__file__).resolve().parents[1]


def _pack(values: torch.Tensor, bits: int, dim: int) -> torch.Tensor:
    """A reference packer (one value at a time): a little-endian bit stream over int32 words along ``dim``."""
    v = values if dim == 0 else values.t()
    n, cols = v.shape
    n_words = n * bits // 32
    out = torch.zeros(n_words, cols, dtype=torch.int64)
    for c in range(cols):
        for i in range(n):
            for b in range(bits):
                if (int(v[i, c]) >> b) & 1:
                    pos = i * bits + b
                    out[pos // 32, c] |= 1 << (pos % 32)
    out = torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)
    return out if dim == 0 else out.t()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_unpack_reads_the_little_endian_bit_stream(bits):
    gen = torch.Generator().manual_seed(bits)
    values = torch.randint(0, 2**bits, (64, 6), generator=gen)
    assert torch.equal(unpack(_pack(values, bits, 0), bits, 0), values)
    assert torch.equal(unpack(_pack(values.t().contiguous(), bits, 1), bits, 1), values.t())


def test_dequantize_applies_zero_plus_one_and_group_scales():
    bits, n_in, n_out, group = 4, 64, 8, 32
    gen = torch.Generator().manual_seed(0)
    q = torch.randint(0, 16, (n_in, n_out), generator=gen)
    z = torch.randint(1, 16, (2, n_out), generator=gen)  # true zeros per (group, out); stored as z - 1
    scales = (2.0 ** torch.randint(-4, 2, (2, n_out), generator=gen)).to(torch.float16)
    g_idx = torch.arange(n_in, dtype=torch.int32) // group
    w = dequantize(_pack(q, bits, 0), _pack(z - 1, bits, 1), scales, g_idx, bits)
    expect = ((q - z[g_idx.long()]).float() * scales.float()[g_idx.long()]).t()
    assert torch.equal(w, expect)


needs_env = pytest.mark.skipif(not Path(gptqmodel_python()).exists(),
                               reason="gptqmodel environment absent: make env-gptqmodel")


@needs_env
def test_gptaq_and_gptq_through_the_backend(tiny_trained_model, tmp_path):
    """GPTQModel quantizes the embedded model (in its own environment); GPTAQ and GPTQ at the same bits give
    different weights; our dense weights equal GPTQModel's own dequantisation of its checkpoint."""
    from safetensors.torch import load_file

    from lrmrepro.compress.run import compress_model

    calib = {"source": "model_corpus", "num_samples": 8, "max_seq_len": 48}
    metas = {}
    for recipe in ("gptaq_w3a16", "gptqmodel_w3a16"):
        metas[recipe] = compress_model(tiny_trained_model, tmp_path / recipe, recipe=recipe, calibration=calib)
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in metas)
    name = "model.layers.1.mlp.down_proj.weight"
    assert not torch.equal(a[name], b[name])
    for meta in metas.values():
        assert meta["backend"] == "gptqmodel" and meta["gptqmodel_version"].startswith("7.6")
        assert 3 < meta["effective_bits"] < 5 and meta["quantized_modules"] >= 7
    assert metas["gptaq_w3a16"]["recipe_info"]["method"] == "gptaq"
    assert metas["gptaq_w3a16"]["gptq_quantize_config"]["meta"]["gptaq"] is not None
    # GPTQModel's own dequantisation (fp16) of the packed checkpoint agrees with the dense weights we wrote
    check = (
        "import os, sys, json, torch; os.environ.setdefault('GPTQMODEL_CPU_WORKERS', '2');"
        "from gptqmodel import GPTQModel, BACKEND;"
        f"m = GPTQModel.load({str(tmp_path / 'gptaq_w3a16' / 'gptq')!r}, device='cpu', backend=BACKEND.TORCH,"
        " dtype=torch.float16);"
        "print(json.dumps({n: mod.dequantize_weight().float().t().tolist() for n, mod in m.model.named_modules()"
        " if hasattr(mod, 'dequantize_weight') and n.endswith('layers.1.mlp.down_proj')}))"
    )
    proc = subprocess.run([gptqmodel_python(), "-c", check], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = torch.tensor(json.loads(proc.stdout.strip().splitlines()[-1])["model.layers.1.mlp.down_proj"])
    ours = a[name].float()
    assert ref.shape == ours.shape
    assert ((ref - ours).abs().max() / ours.abs().max()) < 2e-3  # fp16 rounding of GPTQModel's dequantisation


def test_protected_variants_are_refused_by_the_gptqmodel_backend(tiny_trained_model, tmp_path):
    from lrmrepro.compress.run import compress_model

    with pytest.raises(ValueError, match="does not support protected variants"):
        compress_model(tiny_trained_model, tmp_path / "x", recipe="gptaq_w4a16",
                       ignore=["model.layers.0.mlp.down_proj"],
                       calibration={"source": "model_corpus", "num_samples": 2, "max_seq_len": 16})
