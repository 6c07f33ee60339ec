"""LayerCast numerics and conversion on a tiny random Qwen2 (real transformers model, no mocks)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lrmrepro.layercast import LayerCastLinear, apply_layercast, load_model, torch_dtype
from lrmrepro.precision import PRECISIONS

torch.set_num_threads(1)

DECODER_LINEARS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def tiny_qwen2(seed: int = 0):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=96, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=False)
    return Qwen2ForCausalLM(cfg).float().eval()


def test_precisions_and_dtypes():
    assert PRECISIONS == ("bf16", "fp16", "fp32", "layercast")
    assert torch_dtype("bf16") is torch.bfloat16
    assert torch_dtype("fp16") is torch.float16
    assert torch_dtype("fp32") is torch.float32
    assert torch_dtype("layercast") is torch.float32
    with pytest.raises(ValueError, match="fp64.*bf16, fp16, fp32, layercast"):
        torch_dtype("fp64")


def test_layercast_linear_equals_fp32_math_on_bf16_rounded_weights():
    torch.manual_seed(1)
    lin = nn.Linear(64, 48, bias=True)
    x = torch.randn(5, 7, 64)
    lc = LayerCastLinear.from_linear(lin)
    assert lc.weight.dtype == torch.bfloat16 and lc.bias.dtype == torch.bfloat16
    expected = F.linear(x, lin.weight.detach().bfloat16().float(), lin.bias.detach().bfloat16().float())
    out = lc(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, expected)
    # and it is not the original fp32 layer (bf16 rounding of the weights is real) ...
    assert not torch.equal(out, lin(x))
    # ... nor pure bf16 math
    pure_bf16 = F.linear(x.bfloat16(), lin.weight.detach().bfloat16(), lin.bias.detach().bfloat16()).float()
    assert not torch.equal(out, pure_bf16)
    assert (out - pure_bf16).abs().max() > 0


def test_layercast_refuses_upcast_weights():
    lc = LayerCastLinear(torch.randn(4, 3))
    lc.float()
    with pytest.raises(RuntimeError, match="LayerCast stores weights in torch.bfloat16"):
        lc(torch.randn(2, 3))


def _linear_bytes(model):
    return sum(m.weight.numel() * m.weight.element_size() + (0 if m.bias is None else m.bias.numel() * m.bias.element_size())
               for m in model.modules() if isinstance(m, (nn.Linear, LayerCastLinear)) and m is not model.lm_head)


def test_apply_layercast_converts_exactly_the_decoder_linears_and_generates():
    model = tiny_qwen2()
    fp32_bytes = _linear_bytes(model)
    before = {n: type(m) for n, m in model.named_modules()}
    n_linear_in_layers = sum(1 for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in n)
    assert n_linear_in_layers == 2 * len(DECODER_LINEARS)

    apply_layercast(model)

    converted = {n for n, m in model.named_modules() if isinstance(m, LayerCastLinear)}
    assert len(converted) == n_linear_in_layers
    assert {n.rsplit(".", 1)[1] for n in converted} == DECODER_LINEARS
    assert all(n.startswith("model.layers.") for n in converted)
    # nothing else changed type, and no plain Linear is left inside the decoder layers
    for n, m in model.named_modules():
        if n not in converted:
            assert type(m) is before[n], n
    assert not any(type(m) is nn.Linear and ".layers." in n for n, m in model.named_modules())
    # everything that is not a LayerCast weight stays fp32
    lc_params = {f"{n}.{p}" for n in converted for p in ("weight", "bias")}
    for n, p in model.named_parameters():
        assert p.dtype == (torch.bfloat16 if n in lc_params else torch.float32), n
    assert type(model.lm_head) is nn.Linear and model.lm_head.weight.dtype == torch.float32
    # weight memory of the converted linear layers
    assert _linear_bytes(model) <= 0.55 * fp32_bytes
    # the model still runs and generates
    ids = torch.tensor([[1, 5, 7, 9], [2, 3, 4, 6]])
    with torch.inference_mode():
        logits = model(ids).logits
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert out.shape == (2, 10)


def test_layercast_model_equals_fp32_model_with_bf16_rounded_linears():
    """Whole-model check: LayerCast == the fp32 model whose decoder linear weights were rounded to bf16."""
    a, b = tiny_qwen2(3), tiny_qwen2(3)
    with torch.no_grad():
        for n, m in b.named_modules():
            if isinstance(m, nn.Linear) and ".layers." in n:
                m.weight.copy_(m.weight.bfloat16().float())
                if m.bias is not None:
                    m.bias.copy_(m.bias.bfloat16().float())
    apply_layercast(a)
    ids = torch.tensor([[1, 5, 7, 9, 11, 13]])
    with torch.inference_mode():
        assert torch.equal(a(ids).logits, b(ids).logits)


def test_apply_layercast_refuses_what_it_cannot_handle():
    class FancyLinear(nn.Linear):
        pass

    model = tiny_qwen2()
    old = model.model.layers[1].mlp.up_proj
    model.model.layers[1].mlp.up_proj = FancyLinear(old.in_features, old.out_features, bias=False)
    model.model.layers[0].self_attn.q_proj.register_forward_hook(lambda *a: None)
    with pytest.raises(ValueError) as err:
        apply_layercast(model)
    msg = str(err.value)
    assert "model.layers.1.mlp.up_proj is a" in msg and "FancyLinear" in msg
    assert "model.layers.0.self_attn.q_proj has forward hooks" in msg
    # nothing was converted
    assert not any(isinstance(m, LayerCastLinear) for m in model.modules())

    with pytest.raises(ValueError, match="expects an fp32 model"):
        apply_layercast(tiny_qwen2().bfloat16())
    twice = apply_layercast(tiny_qwen2())
    with pytest.raises(ValueError, match="already a LayerCastLinear"):
        apply_layercast(twice)
    with pytest.raises(ValueError, match="found no decoder layers"):
        apply_layercast(nn.Sequential(nn.Linear(2, 2)))


def test_load_model_all_precisions(tmp_path):
    src = tiny_qwen2(5)
    src.save_pretrained(tmp_path)
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    outs = {}
    for prec in PRECISIONS:
        m = load_model(tmp_path, prec)
        if prec == "layercast":
            assert isinstance(m.model.layers[0].self_attn.q_proj, LayerCastLinear)
            assert m.model.embed_tokens.weight.dtype == torch.float32
        else:
            assert m.model.layers[0].self_attn.q_proj.weight.dtype == torch_dtype(prec)
        with torch.inference_mode():
            outs[prec] = m(ids).logits.float()
    assert not torch.equal(outs["layercast"], outs["fp32"])
    assert not torch.equal(outs["layercast"], outs["bf16"])
    # LayerCast is much closer to fp32 than pure bf16 is
    d_lc = (outs["layercast"] - outs["fp32"]).abs().max()
    d_bf = (outs["bf16"] - outs["fp32"]).abs().max()
    assert d_lc < d_bf
    with pytest.raises(ValueError, match="allowed values"):
        load_model(tmp_path, "int8")


def test_layercast_on_compressed_tensors_checkpoint(tmp_path):
    """A real llm-compressor W8A16 checkpoint: load_model dequantizes it for LayerCast; a still-compressed model
    (transformers' default, decompressed lazily on the first forward) is refused with a clear message."""
    pytest.importorskip("llmcompressor")
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM

    tiny_qwen2(7).save_pretrained(tmp_path / "base")
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "base", dtype=torch.float32)
    oneshot(model=m, recipe=QuantizationModifier(targets="Linear", scheme="W8A16", ignore=["lm_head"]))
    m.save_pretrained(tmp_path / "w8a16", save_compressed=True)

    lc = load_model(tmp_path / "w8a16", "layercast")
    n_lc = sum(isinstance(x, LayerCastLinear) for x in lc.modules())
    assert n_lc == 2 * len(DECODER_LINEARS)
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.inference_mode():
        assert torch.isfinite(lc(ids).logits).all()

    lazy = load_model(tmp_path / "w8a16", "fp32")  # default: weights stay compressed until the first forward
    with pytest.raises(ValueError, match="not a plain torch.nn.Linear|not decompressed|no floating-point"):
        apply_layercast(lazy)
