"""Protection transferred across bit widths: `protect_from_importance: {model: <variant>}` takes the protected set
from a compressed variant's own ranking (its traces); `true` keeps the uncompressed model's."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lrmrepro.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg():
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_the_default_study_has_both_protected_variants(cfg):
    out = validate_config(cfg)
    assert out["compressions"]["gptq_w3a16_protected"]["protect_from_importance"] is True
    assert out["compressions"]["gptq_w3a16_protected_from_w4"]["protect_from_importance"] == {"model": "gptq_w4a16"}
    assert out["compressions"]["gptq_w3a16"]["protect_from_importance"] is False
    figure = out["importance"]["protection_figure"]
    assert figure["protected"] == ["gptq_w3a16_protected", "gptq_w3a16_protected_from_w4"]


def test_a_variant_without_importance_scores_is_refused_naming_the_key(cfg):
    cfg["compressions"]["gptq_w3a16_protected_from_w4"]["protect_from_importance"] = {"model": "awq_w4a16"}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    msg = str(err.value)
    assert "compressions.gptq_w3a16_protected_from_w4.protect_from_importance.model" in msg
    assert "'awq_w4a16' has no importance scores" in msg and "allowed values: gptq_w4a16" in msg
    # adding it to importance.compare gives it scores
    cfg["importance"]["compare"].append("awq_w4a16")
    validate_config(cfg)


@pytest.mark.parametrize("value", [{}, {"variant": "gptq_w4a16"}, "gptq_w4a16"])
def test_malformed_forms_are_refused(cfg, value):
    cfg["compressions"]["gptq_w3a16_protected_from_w4"]["protect_from_importance"] = value
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert "compressions.gptq_w3a16_protected_from_w4.protect_from_importance" in str(err.value)


def test_the_transferred_variant_is_compressed_from_the_4bit_ranking(tmp_path):
    """Dry run: the variant's compress job takes the protect spec of gptq_w4a16's scores; the `true` variant keeps the
    uncompressed model's spec."""
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "results/models/default/gptq_w3a16_protected_from_w4",
         "results/models/default/gptq_w3a16_protected", "-s", str(ROOT / "Snakefile"), "-n", "--configfile",
         str(ROOT / "config.yaml")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "rule importance_protect_from_variant:" in out
    assert "input: results/importance/default/gptq_w4a16/scores.parquet" in out
    assert "results/importance/default/gptq_w4a16/protect_spec.json" in out
    blocks = out.split("\nrule ")
    compress = {b.split("wildcards:")[1].split("\n")[0].strip(): b for b in blocks
                if b.startswith("compress:") and "wildcards:" in b}
    transfer = compress["model=default, compressed=gptq_w3a16_protected_from_w4"]
    base = compress["model=default, compressed=gptq_w3a16_protected"]
    assert "results/importance/default/gptq_w4a16/protect_spec.json" in transfer
    assert "results/importance/default/protect_spec.json" in base and "gptq_w4a16/protect_spec" not in base
