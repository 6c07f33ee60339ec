import io

import polars as pl
import pyarrow.parquet as pq
import pytest
import torch

from lrmrepro.generate.common import GENERATION_SCHEMA, ChunkStore, Decoding, chunks, store_key
from lrmrepro.generate.transformers_backend import TransformersGenerator


def generate_table(model_dir, prompts, ids, *, precision, parallel, **kw):
    """A freshly loaded model generating one table (what an engine job does per run)."""
    return TransformersGenerator(model_dir, precision=precision, parallel=parallel).generate_table(prompts, ids, **kw)
from lrmrepro.prompts import build_prompts
from lrmrepro.tasks.synthetic import make_split


@pytest.fixture(scope="module")
def prompts(tiny_trained_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_trained_model)
    exs = make_split("arith", 5, seed=0, split="eval")
    return build_prompts([e.question for e in exs], "chat_boxed", tok), [f"a{i}" for i in range(5)]


def test_chunks_are_consecutive():
    assert [list(r) for r in chunks(5, 2)] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError):
        chunks(3, 0)


def test_decoding_validation():
    with pytest.raises(ValueError, match="n must be 1"):
        Decoding(max_new_tokens=8, temperature=0, n=2)
    with pytest.raises(ValueError, match="top_p"):
        Decoding(max_new_tokens=8, temperature=0.7, top_p=1.5)


def test_greedy_generation_table(tiny_trained_model, prompts, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_trained_model)
    texts, ids = prompts
    out = tmp_path / "g.parquet"
    meta = generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2,
                          decoding=Decoding(max_new_tokens=7), output=out, progress=False)
    table = pq.read_table(out)
    assert table.schema.equals(GENERATION_SCHEMA)
    df = pl.from_arrow(table)
    assert df.get_column("id").to_list() == ids
    assert df.get_column("chunk_idx").to_list() == [0, 0, 1, 1, 2]
    for row in df.iter_rows(named=True):
        n = row["output_length"]
        assert len(row["token_ids"]) == n == len(row["topk_ids"]) == len(row["topk_logprobs"])
        assert 1 <= n <= 7
        eos = tok.eos_token_id
        if row["finish_reason"] == "stop":
            assert row["token_ids"][-1] == eos and eos not in row["token_ids"][:-1]
        else:
            assert row["finish_reason"] == "length" and n == 7 and eos not in row["token_ids"]
        for pos in range(n):
            lps = row["topk_logprobs"][pos]
            assert lps == sorted(lps, reverse=True)
            # greedy: the generated token is the rank-1 token
            assert row["topk_ids"][pos][0] == row["token_ids"][pos]
    assert meta["n_chunks"] == 3 and meta["resumed_chunks"] == 0
    assert not (tmp_path / ".g.parquet.partial").exists()


def test_batch_composition_does_not_change_fp32_greedy_tokens_much(tiny_trained_model, prompts, tmp_path):
    texts, ids = prompts
    a = tmp_path / "a.parquet"
    b = tmp_path / "b.parquet"
    generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=1,
                   decoding=Decoding(max_new_tokens=5), output=a, progress=False)
    generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=5,
                   decoding=Decoding(max_new_tokens=5), output=b, progress=False)
    da, db = pl.read_parquet(a), pl.read_parquet(b)
    # left padding: positions shift, logits move by float rounding only
    lp_a = [lp[0] for row in da.get_column("topk_logprobs").to_list() for lp in row[:1]]
    lp_b = [lp[0] for row in db.get_column("topk_logprobs").to_list() for lp in row[:1]]
    assert max(abs(x - y) for x, y in zip(lp_a, lp_b)) < 1e-3


def _seed_partial_chunk(model, texts, ids, dec, out, full, code):
    """What an interrupted run leaves behind: chunk 0 finished in the store, marked so a rerun shows whether it was
    reused."""
    from lrmrepro.generate.transformers_backend import engine_versions

    key = store_key(model, texts, ids, backend="transformers", precision="fp32", parallel=1, batch_size=2,
                    decoding=dec, device="cpu", **engine_versions())
    rows = full.filter(pl.col("chunk_idx") == 0).with_columns(pl.lit("FROM-PARTIAL").alias("text")).to_dicts()
    ChunkStore(out, key, code=code).write(0, rows)


def test_interrupted_generation_resumes_without_redoing_chunks(tiny_trained_model, prompts, tmp_path):
    texts, ids = prompts
    out = tmp_path / "g.parquet"
    dec = Decoding(max_new_tokens=4)
    first = generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2, decoding=dec,
                           output=out, progress=False, code="code-v1")
    full = pl.read_parquet(out)
    out.unlink()
    _seed_partial_chunk(tiny_trained_model, texts, ids, dec, out, full, "code-v1")
    meta = generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2, decoding=dec,
                          output=out, progress=False, code="code-v1")
    again = pl.read_parquet(out)
    assert meta["resumed_chunks"] == 1
    assert again.filter(pl.col("chunk_idx") == 0).get_column("text").to_list() == ["FROM-PARTIAL"] * 2
    assert again.filter(pl.col("chunk_idx") > 0).get_column("text").to_list() == \
        full.filter(pl.col("chunk_idx") > 0).get_column("text").to_list()
    # the token count covers the resumed chunk too; the rate covers only what this attempt generated
    assert meta["generated_tokens"] == first["generated_tokens"] == sum(full.get_column("output_length"))
    resumed_tokens = sum(full.filter(pl.col("chunk_idx") == 0).get_column("output_length"))
    assert meta["tokens_this_attempt"] == first["generated_tokens"] - resumed_tokens


def test_resume_after_a_code_change_starts_over(tiny_trained_model, prompts, tmp_path):
    """Chunks of an interrupted run made by other code are not reused: one table never mixes two code versions."""
    texts, ids = prompts
    out = tmp_path / "g.parquet"
    dec = Decoding(max_new_tokens=4)
    generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2, decoding=dec,
                   output=out, progress=False, code="code-v1")
    full = pl.read_parquet(out)
    out.unlink()
    _seed_partial_chunk(tiny_trained_model, texts, ids, dec, out, full, "code-v1")
    meta = generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2, decoding=dec,
                          output=out, progress=False, code="code-v2")
    assert meta["resumed_chunks"] == 0
    assert "FROM-PARTIAL" not in pl.read_parquet(out).get_column("text").to_list()
    assert not (tmp_path / ".g.parquet.partial").exists()


def _fake_rows(chunk_idx, span, length=3):
    return [{"id": f"i{i}", "sample_idx": 0, "chunk_idx": chunk_idx, "prompt": f"p{i}", "text": f"t{i}",
             "token_ids": [i] * length, "output_length": length, "finish_reason": "length",
             "topk_ids": [[i]] * length, "topk_logprobs": [[-0.5]] * length} for i in span]


def test_the_shared_chunk_loop_resumes_an_interrupted_job(tmp_path):
    """generate_chunks (both backends' loop) with a backend that fails at chunk 2: the rerun generates only the
    missing chunks, the table equals an uninterrupted one, and the figures count resumed and new tokens apart."""
    from lrmrepro.generate.loop import generate_chunks

    prompts, ids = [f"p{i}" for i in range(7)], [f"i{i}" for i in range(7)]
    calls = []

    def backend(fail_at=None):
        def generate_chunk(chunk_idx, span, clock):
            if chunk_idx == fail_at:
                raise RuntimeError("killed")
            calls.append(chunk_idx)
            with clock:
                rows = _fake_rows(chunk_idx, span)
            return rows
        return generate_chunk

    out = tmp_path / "g.parquet"
    kw = dict(batch_size=2, output=out, key={"run": 1}, code="c", progress=False)
    with pytest.raises(RuntimeError, match="killed"):
        generate_chunks(prompts, ids, generate_chunk=backend(fail_at=2), **kw)
    assert calls == [0, 1] and not out.exists()
    figures = generate_chunks(prompts, ids, generate_chunk=backend(), **kw)
    assert calls == [0, 1, 2, 3]
    assert figures["n_prompts"] == 7 and figures["n_chunks"] == 4 and figures["resumed_chunks"] == 2
    assert figures["generated_tokens"] == 21 and figures["tokens_this_attempt"] == 9
    assert not (tmp_path / ".g.parquet.partial").exists()
    whole = tmp_path / "whole.parquet"
    generate_chunks(prompts, ids, generate_chunk=backend(), **{**kw, "output": whole})
    assert pq.read_table(out).equals(pq.read_table(whole))
    assert pq.read_table(out).schema.equals(GENERATION_SCHEMA)
    with pytest.raises(ValueError, match="differ in length"):
        generate_chunks(prompts, ids[:-1], generate_chunk=backend(), **kw)


def test_sampling_is_seeded_per_chunk_and_gives_n_samples(tiny_trained_model, prompts, tmp_path):
    texts, ids = prompts
    dec = Decoding(max_new_tokens=6, temperature=0.9, top_p=0.95, n=3, seed=7)
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        generate_table(tiny_trained_model, texts, ids, precision="fp32", parallel=1, batch_size=2, decoding=dec,
                       output=out, progress=False)
    da, db = pl.read_parquet(a), pl.read_parquet(b)
    assert da.height == 15
    assert da.get_column("sample_idx").to_list()[:6] == [0, 1, 2, 0, 1, 2]
    assert da.get_column("token_ids").to_list() == db.get_column("token_ids").to_list()


def test_unknown_precision_is_refused(tiny_trained_model, prompts, tmp_path):
    texts, ids = prompts
    with pytest.raises(ValueError, match="bf16"):
        generate_table(tiny_trained_model, texts, ids, precision="int3", parallel=1, batch_size=2,
                       decoding=Decoding(max_new_tokens=2), output=tmp_path / "x.parquet", progress=False)


def test_a_shared_model_gives_what_a_model_of_its_own_gives(tiny_trained_model, prompts, tmp_path):
    """One engine per grid point: a model that already served other prompts and batch sizes generates bit for bit
    what a freshly loaded model generates (tokens and top-k logprobs), in bf16 where batch composition matters."""
    from lrmrepro.generate.transformers_backend import TransformersGenerator

    texts, ids = prompts
    dec = Decoding(max_new_tokens=6)
    shared = TransformersGenerator(tiny_trained_model, precision="bf16", parallel=1)
    shared.generate_table(texts[::-1], ids[::-1], batch_size=4, decoding=dec, output=tmp_path / "other.parquet",
                          progress=False)
    shared.generate_table(texts, ids, batch_size=3, decoding=dec, output=tmp_path / "shared.parquet", progress=False)
    generate_table(tiny_trained_model, texts, ids, precision="bf16", parallel=1, batch_size=3, decoding=dec,
                   output=tmp_path / "own.parquet", progress=False)
    a, b = pl.read_parquet(tmp_path / "shared.parquet"), pl.read_parquet(tmp_path / "own.parquet")
    assert a.get_column("token_ids").to_list() == b.get_column("token_ids").to_list()
    assert a.get_column("topk_logprobs").to_list() == b.get_column("topk_logprobs").to_list()


@pytest.mark.parametrize("sampled", [False, True])
def test_topk_hook_equals_the_full_logits_of_generate(tiny_trained_model, prompts, sampled):
    """The top-k taken by the forward hook at each step are bit for bit those of generate's own output_logits (which
    would keep the whole vocabulary of every step)."""
    from lrmrepro.generate import transformers_backend as tb
    from lrmrepro.generate.common import TOP_K

    model, tok = tb.load(tiny_trained_model, "bf16")
    texts, _ = prompts
    dec = Decoding(max_new_tokens=10, temperature=0.8, top_p=0.9, n=2, seed=3) if sampled else Decoding(max_new_tokens=10)
    torch.manual_seed(1)
    new, ids, lp = tb._generate_chunk(model, tok, texts, dec, torch.device("cpu"))
    enc = tok(list(texts), return_tensors="pt", padding=True, add_special_tokens=False)
    kw = dict(max_new_tokens=10, return_dict_in_generate=True, output_logits=True, pad_token_id=tok.pad_token_id,
              eos_token_id=tok.eos_token_id)
    kw.update(dict(do_sample=True, temperature=0.8, top_p=0.9, top_k=0, num_return_sequences=2) if sampled
              else dict(do_sample=False, num_beams=1, temperature=None, top_p=None, top_k=None))
    torch.manual_seed(1)
    with torch.inference_mode():
        out = model.generate(**enc, **kw)
    full_lp, full_ids = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1).topk(TOP_K, -1)
    assert torch.equal(out.sequences[:, enc["input_ids"].shape[1]:], new)
    assert torch.equal(full_ids, ids) and torch.equal(full_lp, lp)


def test_topk_recorder_writes_every_step_into_buffers_allocated_once():
    """One small tensor per step next to each freed full-vocabulary logits block fragments the heap (9.7 GB after
    2,048 steps of a 152k vocabulary, benchmarks/generation_memory.py): the recorder fills two buffers instead."""
    from types import SimpleNamespace

    from lrmrepro.generate.transformers_backend import _TopKRecorder

    model = torch.nn.Linear(2, 2)
    rec = _TopKRecorder(model, max_steps=3, k=2)
    steps = [torch.randn(4, 1, 50) for _ in range(5)]  # 5 calls: 2 more than announced, the buffers grow once
    pointers = []
    for logits in steps:
        rec._hook(model, (), SimpleNamespace(logits=logits))
        pointers.append(rec.ids.data_ptr())
    rec.remove()
    assert len(set(pointers[:3])) == 1 and rec.ids.shape == (4, 6, 2)
    ids, lps = rec.stacked(5)
    want_lp, want_ids = torch.log_softmax(torch.cat(steps, dim=1), -1).topk(2, -1)
    assert torch.equal(ids, want_ids) and torch.equal(lps, want_lp)
    with pytest.raises(ValueError, match="recorded 5"):
        rec.stacked(6)


# ------------------------------------------------------------------------------------------------ generation cache
def test_the_cache_keeps_finished_tables_and_chunks_out_of_the_outputs(tiny_trained_model, tmp_path):
    """With a cache, a finished run's table is kept there: the output deleted (what Snakemake does to every output
    of a failed job) is copied back without generating; a run killed mid-way resumes its chunks from the cache; the
    key changes with the code fingerprint. The tool lists and prunes entries."""
    from lrmrepro.generate import cache as gcache

    texts = [f"Q{i}: what is {i} + {i}?" for i in range(5)]
    ids = [f"q{i}" for i in range(5)]
    dec = Decoding(max_new_tokens=4)
    cache = tmp_path / "cache"
    gen = TransformersGenerator(tiny_trained_model, precision="fp32", parallel=1)
    out = tmp_path / "run" / "generations.parquet"
    first = gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=out, progress=False, code="c1",
                               cache=cache)
    assert first["cache"] == "miss" and first["resumed_chunks"] == 0 and first["generated_tokens"] > 0
    table = out.read_bytes()
    assert not list(out.parent.glob(".*partial*"))  # nothing beside the output
    out.unlink()
    again = gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=out, progress=False, code="c1",
                               cache=cache)
    assert again["cache"] == "hit" and again["tokens_this_attempt"] == 0 and again["generation_seconds"] == 0.0
    assert pl.read_parquet(out).equals(pl.read_parquet(io.BytesIO(table)))
    # a damaged cache entry (truncated on a full scratch disk) is a miss that generates again, never a table
    entry = next(cache.rglob("table.parquet"))
    entry.write_bytes(entry.read_bytes()[:100])
    out.unlink()
    damaged = gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=out, progress=False, code="c1",
                                 cache=cache)
    assert damaged["cache"] == "miss" and damaged["tokens_this_attempt"] > 0 and out.read_bytes() == table
    # another code fingerprint: another key, generated anew; another batch size too (a grown grid's new run)
    assert gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=out, progress=False, code="c2",
                              cache=cache)["cache"] == "miss"
    assert gen.generate_table(texts, ids, batch_size=3, decoding=dec, output=out, progress=False, code="c1",
                              cache=cache)["cache"] == "miss"
    listed = gcache.entries(cache)
    assert len(listed) == 3 and all(e["finished"] and e["chunks"] == 0 for e in listed)
    # a run killed after its first chunk: the chunk is in the cache, the rerun resumes it
    calls = []
    real = gen.model.generate

    def dies_after_one_chunk(*a, **kw):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    gen.model.generate = dies_after_one_chunk
    killed = tmp_path / "killed" / "generations.parquet"
    with pytest.raises(KeyboardInterrupt):
        gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=killed, progress=False, code="c3",
                           cache=cache)
    gen.model.generate = real
    assert not killed.exists() and [e["chunks"] for e in gcache.entries(cache) if not e["finished"]] == [1]
    resumed = gen.generate_table(texts, ids, batch_size=2, decoding=dec, output=killed, progress=False, code="c3",
                                 cache=cache)
    assert resumed["resumed_chunks"] == 1 and resumed["cache"] == "miss"
    assert gcache.prune(cache, unfinished=True) == []  # every entry finished now
    assert len(gcache.prune(cache, dry_run=True)) == 4 and len(gcache.entries(cache)) == 4
    assert len(gcache.prune(cache)) == 4 and gcache.entries(cache) == []


def test_a_run_logs_its_progress_while_it_generates(tiny_trained_model, tmp_path, caplog):
    """Plain lines for the job's log (no terminal there): chunk i of N, tokens/s and the ETA; the last chunk always."""
    import logging


    texts = [f"Q{i}: what is {i} + 1?" for i in range(5)]
    gen = TransformersGenerator(tiny_trained_model, precision="fp32", parallel=1)
    with caplog.at_level(logging.INFO, logger="lrmrepro.generate.loop"):
        from lrmrepro import progress

        original = progress.EVERY_SECONDS
        progress.EVERY_SECONDS = 0.0  # a line per chunk
        try:
            gen.generate_table(texts, [f"q{i}" for i in range(5)], batch_size=2, decoding=Decoding(max_new_tokens=3),
                               output=tmp_path / "g.parquet", progress=False, cache=None)
        finally:
            progress.EVERY_SECONDS = original
    lines = [r.getMessage() for r in caplog.records if "chunk" in r.getMessage()]
    assert [line.split(": chunk ")[1].split(",")[0] for line in lines] == ["1 of 3", "2 of 3", "3 of 3"]
    assert all("tokens/s" in line and "ETA " in line and str(tmp_path / "g.parquet") in line for line in lines)
    assert lines[-1].endswith("ETA 00:00:00")


def test_a_second_job_of_the_same_key_takes_the_finished_table(tmp_path):
    """Two jobs of one key at once (two studies sharing a cache): the one that finalizes last finds the chunks removed
    by the first and takes its finished table instead of failing."""
    rows = [{"id": "q0", "sample_idx": 0, "chunk_idx": 0, "prompt": "p", "text": "t", "token_ids": [1],
             "output_length": 1, "finish_reason": "stop", "topk_ids": [[1]], "topk_logprobs": [[0.0]]}]
    rows = [{k: r.get(k) for k in GENERATION_SCHEMA.names} | {k: v for k, v in r.items() if k in GENERATION_SCHEMA.names}
            for r in rows]
    first = ChunkStore(tmp_path / "a" / "g.parquet", {"run": 1}, code="c", cache=tmp_path / "cache")
    second = ChunkStore(tmp_path / "b" / "g.parquet", {"run": 1}, code="c", cache=tmp_path / "cache")
    first.write(0, rows)
    assert second.done(0)  # sees the other job's chunk
    first.finalize(1)
    table = second.finalize(1)
    assert table.num_rows == 1 and (tmp_path / "b" / "g.parquet").exists()
