"""ANY4 / ANY3: learned per-row lookup tables (lrmrepro.compress.anyq)."""

import pytest
import torch
from safetensors.torch import load_file

from lrmrepro.compress.anyq import activation_statistics, quantize_weight, rtn_weight


def test_a_row_with_few_distinct_values_is_reproduced_exactly():
    row = torch.tensor([0.5, -0.25, 1.0, 0.5, 0.125, -0.25, 2.0, 1.0] * 16)  # 6 distinct, fp16-representable
    w = torch.stack([row, row.flip(0), torch.linspace(-1, 1, 128)])
    for bits in (3, 4):
        q = quantize_weight(w, bits, group_size=None)
        assert torch.equal(q.dequantize()[:2], w[:2])
    q = quantize_weight(w, 3, group_size=64)
    assert torch.allclose(q.dequantize()[:2], w[:2], atol=1e-3)


@pytest.mark.parametrize("bits", [3, 4])
def test_error_below_rtn_at_the_same_bits_on_the_embedded_models_weights(tiny_trained_model, bits):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_trained_model)
    linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and "lm_head" not in n}
    assert len(linears) >= 7
    gen = torch.Generator().manual_seed(0)
    for name, lin in linears.items():
        w = lin.weight.detach()
        act = torch.rand(w.shape[1], generator=gen) + 0.1  # an activation statistic per input column
        q = quantize_weight(w, bits, column_weight=act, group_size=128)
        rtn = rtn_weight(w, bits, group_size=128)
        any_err = ((q.dequantize() - w) ** 2 * act).sum()
        rtn_err = ((rtn - w) ** 2 * act).sum()
        assert any_err < rtn_err, name
        assert ((q.dequantize() - w) ** 2).mean() < ((rtn - w) ** 2).mean(), name
        assert q.index.dtype == torch.uint8 and int(q.index.max()) < 2**bits and q.lut.shape == (w.shape[0], 2**bits)


def test_quantization_is_deterministic_and_counts_its_storage():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(1))
    a, b = quantize_weight(w, 4), quantize_weight(w, 4)
    assert torch.equal(a.lut, b.lut) and torch.equal(a.index, b.index)
    assert a.bits(4) == pytest.approx(4 + 16 * 16 / 256 + 32 / 128)


def test_activation_statistics_are_mean_absolute_inputs():
    lin = torch.nn.Linear(3, 2)
    model = torch.nn.Sequential(lin)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x)

    x = torch.tensor([[[1.0, -2.0, 0.0], [3.0, 2.0, -4.0]]])
    stats = activation_statistics(Wrap(), [{"x": x}], ["net.0"])
    assert torch.allclose(stats["net.0"].float(), torch.tensor([2.0, 2.0, 2.0]))


def test_any4_recipe_through_compress_model(tiny_trained_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from lrmrepro.compress.run import compress_model

    out = tmp_path / "any4"
    meta = compress_model(tiny_trained_model, out, recipe="any4", ignore=["model.layers.0.mlp.down_proj"],
                          calibration={"source": "model_corpus", "num_samples": 4, "max_seq_len": 32})
    assert meta["recipe_info"]["method"] == "any4" and meta["recipe_info"]["weight_bits"] == 4
    assert meta["backend"] == "anyq" and meta["stored_dense_bits"] == 32.0
    assert 4 < meta["effective_bits"] < 8 and meta["protection"]["all_identical"]
    model = AutoModelForCausalLM.from_pretrained(out)
    tables = load_file(str(out / "anyq" / "tables.safetensors"))
    name = "model.layers.1.self_attn.q_proj"
    lut, idx = tables[f"{name}.lut"].float(), tables[f"{name}.index"].long()
    scale, lo = tables[f"{name}.scale"].float(), tables[f"{name}.min"].float()
    rows, cols = idx.shape
    rebuilt = (lut.gather(1, idx).view(rows, -1, 128) * scale[:, :, None] + lo[:, :, None]).view(rows, cols)
    assert torch.equal(rebuilt, dict(model.named_modules())[name].weight.detach())
    assert "model.layers.0.mlp.down_proj.lut" not in tables  # protected: kept as it was
