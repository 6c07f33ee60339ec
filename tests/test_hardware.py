"""A hardware label names what decides the numerics: the CPU model and the ISA level its kernels dispatch to.

Labels are derived from recorded /proc/cpuinfo flags and torch's capability values, never from this machine, so the
tests hold on any CPU kind. ``fixtures/cpuinfo/amd-epyc-avx512bf16.txt`` is the first processor of a real record
(the 2-core AMD EPYC with AVX-512 BF16 of this workplace); the other flag sets are built from it or from the
vendors' feature lists, as said at each.
"""

import json

import pytest

from lrmrepro import hardware as hw
from lrmrepro.provenance import cpu_flags, cpu_model, cpuinfo

from conftest import ROOT

EPYC_AVX512 = ROOT / "tests/fixtures/cpuinfo/amd-epyc-avx512bf16.txt"
AVX512_CORE = ["avx512f", "avx512bw", "avx512vl", "avx512dq"]
BASE = ["sse4_1", "avx", "avx2", "fma"]


def _machine(flags, model="AMD EPYC", env=None, **extra):
    return {"cpu_model": model, "gpus": [], "cpu_flags": sorted(flags), "isa_env": env or {}, **extra}


def test_the_recorded_avx512_epyc_and_its_avx2_sibling_get_different_labels(tmp_path):
    info = cpuinfo(EPYC_AVX512)
    assert cpu_model(info) == "AMD EPYC"
    flags = cpu_flags(info)
    assert {"avx512_bf16", "avx512_vnni", *AVX512_CORE} <= set(flags) and "flags" not in flags
    assert hw.label_of(_machine(flags)) == "cpu-amd-epyc-avx512bf16"
    # the same record as the AVX2-only EPYC reports it (its AVX-512 flags absent): same model name, another label
    avx2 = EPYC_AVX512.read_text().replace("flags\t\t:", "flags :")
    avx2 = "\n".join(" ".join(w for w in line.split(" ") if not w.startswith("avx512")) for line in avx2.splitlines())
    (tmp_path / "cpuinfo").write_text(avx2)
    info2 = cpuinfo(tmp_path / "cpuinfo")
    assert cpu_model(info2) == "AMD EPYC" and hw.label_of(_machine(cpu_flags(info2))) == "cpu-amd-epyc-avx2"


@pytest.mark.parametrize("model, flags, label", [
    # Intel Xeon E5 v4 (Broadwell): AVX2 and FMA, no AVX-512
    ("Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz", BASE, "cpu-intel-xeon-e5-2686-v4-avx2"),
    # Skylake-SP: AVX-512 F/BW/VL/DQ, no VNNI
    ("Intel(R) Xeon(R) Platinum 8175M CPU @ 2.50GHz", BASE + AVX512_CORE, "cpu-intel-xeon-platinum-8175m-avx512"),
    # Ice Lake-SP: + VNNI, no BF16
    ("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", BASE + AVX512_CORE + ["avx512_vnni"],
     "cpu-intel-xeon-platinum-8375c-avx512vnni"),
    # Sapphire Rapids: + BF16, FP16 and AMX
    ("Intel(R) Xeon(R) Platinum 8480+", BASE + AVX512_CORE + ["avx512_vnni", "avx512_bf16", "avx512_fp16",
                                                              "amx_tile", "amx_int8", "amx_bf16"],
     "cpu-intel-xeon-platinum-8480-amx"),
    # Alder Lake: AVX-VNNI on AVX2, no AVX-512
    ("12th Gen Intel(R) Core(TM) i7-12700", BASE + ["avx_vnni"], "cpu-12th-gen-intel-core-i7-12700-avx2vnni"),
    # Arm Neoverse V1: SVE and BF16 (Features of /proc/cpuinfo)
    ("Neoverse-V1", ["asimd", "sve", "bf16", "i8mm"], "cpu-neoverse-v1-svebf16"),
])
def test_labels_of_cpu_kinds(model, flags, label):
    assert hw.label_of(_machine(flags, model)) == label
    assert not hw.is_legacy_label(label)


def test_the_environment_that_caps_the_dispatch_is_part_of_the_label():
    flags = BASE + AVX512_CORE + ["avx512_vnni", "avx512_bf16"]
    assert hw.label_of(_machine(flags, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})) == "cpu-amd-epyc-avx2-atenavx512"
    assert hw.label_of(_machine(flags, env={"ONEDNN_MAX_CPU_ISA": "avx2", "ATEN_CPU_CAPABILITY": "avx2"})) == \
        "cpu-amd-epyc-avx2"
    assert hw.label_of(_machine(flags, env={"ATEN_CPU_CAPABILITY": "avx2"})) == "cpu-amd-epyc-avx512bf16-atenavx2"
    assert hw.label_of(_machine(flags, env={"DNNL_MAX_CPU_ISA": "AVX512_CORE"})) == "cpu-amd-epyc-avx512"
    # no cap (ALL), a cap above the CPU, and torch asked for more than it has: the CPU's own level
    for env in ({"ONEDNN_MAX_CPU_ISA": "ALL"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}):
        assert hw.label_of(_machine(flags, env=env)) == "cpu-amd-epyc-avx512bf16"
    assert hw.label_of(_machine(BASE, env={"ATEN_CPU_CAPABILITY": "avx512"})) == "cpu-amd-epyc-avx2"
    # MKL's switches change kernels without changing the ISA level: not in the label, in the identity
    mkl = _machine(flags, env={"MKL_CBWR": "COMPATIBLE"})
    assert hw.label_of(mkl) == "cpu-amd-epyc-avx512bf16"
    assert hw.identity_difference(hw.identity(_machine(flags)), hw.identity(mkl)) == \
        ["env: {} vs {'MKL_CBWR': 'COMPATIBLE'}"]


def test_torchs_own_capability_wins_over_the_prediction():
    """The job records what torch says (torch.backends.cpu.get_cpu_capability); where it is not what the flags
    predict (a torch build without AVX-512 kernels), the label says so, and the DAG's label no longer matches."""
    flags = BASE + AVX512_CORE + ["avx512_vnni", "avx512_bf16"]
    assert hw.label_of(_machine(flags, torch_cpu_capability="AVX512")) == "cpu-amd-epyc-avx512bf16"
    told = _machine(flags, torch_cpu_capability="AVX2")
    assert hw.label_of(told) == "cpu-amd-epyc-avx512bf16-atenavx2"
    assert hw.identity(told)["aten_capability"] == "avx2"
    with pytest.raises(hw.HardwareMismatch, match="detected label 'cpu-amd-epyc-avx512bf16-atenavx2'"):
        hw.check("cpu-amd-epyc-avx512bf16", told)


def test_a_long_model_name_keeps_the_isa_whole():
    label = hw.label_of(_machine(BASE + AVX512_CORE + ["avx512_vnni"],
                                 "Intel(R) Xeon(R) Platinum 8380HL Very Long Marketing Name CPU @ 2.90GHz"))
    assert label.endswith("-avx512vnni") and len(label) <= 48 and "--" not in label


def test_legacy_labels_are_told_apart():
    assert hw.label_of({"cpu_model": "AMD EPYC", "gpus": []}) == "cpu-amd-epyc"  # a record without flags
    assert hw.is_legacy_label("cpu-amd-epyc") and hw.is_legacy_label("cpu-intel-xeon")
    for label in ("cpu-amd-epyc-avx2", "cpu-amd-epyc-avx2-atenavx512", "cpu-x-avx512bf16-atenavx2", "a100",
                  "gpu-a100-sxm4-80gb", "cpu-neoverse-v1-svebf16"):
        assert not hw.is_legacy_label(label), label
    with pytest.raises(hw.HardwareMismatch, match="from before CPU labels named the instruction set"):
        hw.check("cpu-amd-epyc", _machine(BASE))


def test_a_gpu_label_is_its_slurm_type_and_the_identity_records_what_selects_kernels():
    a100 = {"cpu_model": "AMD EPYC 7763", "gpus": ["NVIDIA A100-SXM4-80GB"], "gpu_driver": "550.54",
            "torch_cuda": "12.8", "gpu_compute_capability": ["8.0"], "cublas": "nvidia-cublas-cu12 12.8.4.1",
            "cudnn": "90800", "tf32": {"matmul": False, "cudnn": True, "float32_matmul_precision": "highest"},
            "cpu_flags": BASE}
    assert hw.matches("a100", a100) and hw.label_of(a100) == "gpu-a100-sxm4-80gb"
    ident = hw.identity(a100)
    assert ident["compute_capability"] == ["8.0"] and ident["cublas"].endswith("12.8.4.1") and ident["tf32"]["cudnn"]
    # the driver is recorded, not part of the identity (cuBLAS ships with the CUDA runtime)
    assert hw.identity({**a100, "gpu_driver": "560.1"}) == ident
    tf32 = {**a100, "tf32": {**a100["tf32"], "matmul": True}}
    assert hw.identity_difference(ident, hw.identity(tf32)) == ["tf32.matmul: False vs True"]
    assert set(hw.machine_facts(ident)) == {"kind", "devices", "compute_capability", "env"}
    assert json.loads(json.dumps(ident)) == ident  # recorded as JSON beside the statistics


def test_a_cpu_capped_to_a_level_has_that_levels_identity():
    """ONEDNN_MAX_CPU_ISA / ATEN_CPU_CAPABILITY are expressed by the ISA facts themselves: the AVX-512 EPYC capped to
    AVX2 has the AVX2 EPYC's identity (measured to reproduce its 17 tables byte for byte); MKL's switches are not
    expressed by any ISA fact and stay in the identity."""
    avx512 = BASE + AVX512_CORE + ["avx512_vnni", "avx512_bf16"]
    capped = _machine(avx512, env={"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
                      torch_cpu_capability="AVX2")
    native = _machine(BASE, torch_cpu_capability="AVX2")
    assert hw.label_of(capped) == hw.label_of(native) == "cpu-amd-epyc-avx2"
    assert hw.identity(capped) == hw.identity(native)
    half = _machine(avx512, env={"ONEDNN_MAX_CPU_ISA": "AVX2"}, torch_cpu_capability="AVX512")
    assert hw.identity_difference(hw.identity(native), hw.identity(half)) == ["aten_capability: 'avx2' vs 'avx512'"]
    mkl = _machine(BASE, env={"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, torch_cpu_capability="AVX2")
    assert hw.identity(mkl)["env"] == {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def test_planned_cpu_labels_must_be_this_machine_unless_their_runs_are_here():
    machine = {"gpus": [], "cpu_model": "AMD EPYC", "cpu_flags": ["avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                                                                  "avx512dq", "avx512_vnni", "avx512_bf16"],
               "isa_env": {}}
    own = hw.label_of(machine)
    assert own == "cpu-amd-epyc-avx512bf16"
    hw.check_planned_cpu_labels({own: "results/x/generations.parquet", "h100": "results/y/generations.parquet"},
                                machine)  # this machine's label; a GPU label (the job runs on its node)
    hw.check_planned_cpu_labels({}, machine)  # another CPU's runs already here (copied in): nothing to generate
    with pytest.raises(hw.HardwareMismatch, match=r"'cpu-amd-epyc-avx2' is not this machine's "
                                                  r"\('cpu-amd-epyc-avx512bf16'.*e\.g\. results/z/gen"):
        hw.check_planned_cpu_labels({"cpu-amd-epyc-avx2": "results/z/generations.parquet"}, machine)
    # an alias the study defines to include this machine
    hw.check_planned_cpu_labels({"cpu-lab": "results/z/generations.parquet"}, machine, {"cpu-lab": (r"\bEPYC\b",)})

