"""An LLM judge of reasoning behaviours (``importance.labeller: llm``), as the compression paper annotated its traces
with GPT-4o: any OpenAI-compatible chat endpoint (OpenAI, a local ``vllm serve``, an in-house gateway).

One request per trace: its reasoning segments (the sentences :mod:`lrmrepro.importance.behaviours` cuts), numbered,
and the instructions below (written for this project); the answer must be a JSON object ``{"labels": [...]}`` with
exactly one allowed label per segment. With ``structured`` (default) the request asks the server for that JSON
schema (``response_format`` ``json_schema``; vLLM and OpenAI enforce it while decoding); the answer is validated
either way. A malformed answer is asked again (``retries`` times), then the trace is recorded as ``unlabelled``
(every segment): never guessed. HTTP errors, 429 and 5xx are retried by the official client.

Answers are cached per trace (``<cache>/judge/<key>.json``; the key hashes the endpoint, model, instructions,
schema mode, temperature and the segments), so a rerun costs no request; a malformed answer is not cached. Requests
run ``max_concurrency`` at a time, started at most ``requests_per_minute`` per minute. The API key is read from the
environment variable ``api_key_env`` when the judge starts and is never written anywhere (not in the cache, the
meta.json or a log); a loopback endpoint needs none. The endpoint and model are recorded in the span table's
meta.json, with the judge's request counts and its agreement with the rule labeller per behaviour.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlparse

from .behaviours import LABELS

log = logging.getLogger(__name__)

#: the label of a segment whose trace got no valid answer
UNLABELLED = "unlabelled"
#: bump when the instructions change: cached answers of other instructions are not reused
PROMPT_VERSION = "1"
INSTRUCTIONS = (
    "You annotate the reasoning of a language model that solved a problem step by step. Its reasoning has been cut "
    "into numbered segments (sentences). Give each segment exactly one label, the behaviour it shows:\n"
    "- uncertainty_estimation: the model voices doubt or weighs how sure it is (\"maybe\", \"I'm not sure\").\n"
    "- adding_knowledge: it brings in a fact, definition or formula from memory that the problem did not state.\n"
    "- backtracking: it drops or corrects something it did earlier, or turns to another approach.\n"
    "- example_testing: it checks an intermediate or final result, or tries a concrete case to test an idea.\n"
    "- initializing: it restates or sets up the problem before working on it.\n"
    "- deduction: any other step that derives something new from what is already there.\n"
    "Answer with a JSON object {\"labels\": [...]} holding one label per segment, in segment order, and nothing else."
)


@dataclass(frozen=True)
class JudgeConfig:
    """``importance.judge`` of the configuration (docs/configuration.md)."""

    base_url: str
    model: str
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 4
    requests_per_minute: float | None = None
    retries: int = 2
    timeout: float = 120.0
    temperature: float = 0.0
    structured: bool = True
    max_tokens_per_segment: int = 32

    def provenance(self) -> dict[str, Any]:
        """What meta.json records of the judge (never the key: only the name of its variable)."""
        return {**asdict(self), "prompt_version": PROMPT_VERSION}


def answer_schema(n: int) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": ["labels"],
            "properties": {"labels": {"type": "array", "minItems": n, "maxItems": n,
                                      "items": {"enum": list(LABELS)}}}}


def user_message(segments: Sequence[str]) -> str:
    return "Segments:\n" + "\n".join(f"{i + 1}. {s}" for i, s in enumerate(segments))


def parse_answer(text: str | None, n: int) -> list[str] | None:
    """The labels of a valid answer (a JSON object with one allowed label per segment, fenced or not), else None."""
    import jsonschema

    if not text:
        return None
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        data = json.loads(body)
        jsonschema.validate(data, answer_schema(n))
    except (ValueError, jsonschema.ValidationError):
        return None
    return list(data["labels"])


def _loopback(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


class LlmJudge:
    """Labels traces (lists of segment texts) through the endpoint; ``stats`` counts requests, cache hits, retries
    and unlabelled traces."""

    def __init__(self, config: JudgeConfig, cache_dir: str | os.PathLike | None = None) -> None:
        from openai import OpenAI

        key = os.environ.get(config.api_key_env)
        if not key:
            if not _loopback(config.base_url):
                raise RuntimeError(f"importance.judge: the API key of {config.base_url} is read from the environment "
                                   f"variable {config.api_key_env} (importance.judge.api_key_env), which is not set")
            key = "not-needed"  # a local server asks for none
        self.config = config
        self.client = OpenAI(base_url=config.base_url, api_key=key, timeout=config.timeout,
                             max_retries=config.retries)
        self.cache = Path(cache_dir) / "judge" if cache_dir else None
        self.stats = {"requests": 0, "cache_hits": 0, "malformed_answers": 0, "unlabelled_traces": 0}
        self._lock = threading.Lock()
        self._next_start = 0.0

    def _key(self, segments: Sequence[str]) -> str:
        c = self.config
        material = [c.base_url.rstrip("/"), c.model, PROMPT_VERSION, INSTRUCTIONS, c.structured, c.temperature,
                    list(segments)]
        return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32]

    def _wait_for_rate(self) -> None:
        rpm = self.config.requests_per_minute
        if not rpm:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + 60.0 / rpm
        time.sleep(max(0.0, start - now))

    def _ask(self, segments: Sequence[str]) -> str | None:
        c = self.config
        kwargs: dict[str, Any] = {}
        if c.structured:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "behaviour_labels", "schema": answer_schema(len(segments)), "strict": True}}
        self._wait_for_rate()
        with self._lock:
            self.stats["requests"] += 1
        reply = self.client.chat.completions.create(
            model=c.model, temperature=c.temperature, max_tokens=16 + c.max_tokens_per_segment * len(segments),
            messages=[{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": user_message(segments)}],
            **kwargs)
        return reply.choices[0].message.content

    def label_trace(self, segments: Sequence[str]) -> list[str]:
        if not segments:
            return []
        path = self.cache / f"{self._key(segments)}.json" if self.cache else None
        if path is not None and path.exists():
            try:
                labels = json.loads(path.read_text())["labels"]
                if len(labels) == len(segments):
                    with self._lock:
                        self.stats["cache_hits"] += 1
                    return labels
            except (ValueError, KeyError):
                pass  # a damaged entry is a miss
        for attempt in range(self.config.retries + 1):
            labels = parse_answer(self._ask(segments), len(segments))
            if labels is not None:
                if path is not None:
                    from .. import io

                    io.write_json({"labels": labels, "model": self.config.model}, path)
                return labels
            with self._lock:
                self.stats["malformed_answers"] += 1
            log.warning("judge: malformed answer for a trace of %d segments (attempt %d of %d)", len(segments),
                        attempt + 1, self.config.retries + 1)
        with self._lock:
            self.stats["unlabelled_traces"] += 1
        return [UNLABELLED] * len(segments)

    def label_traces(self, traces: Sequence[Sequence[str]]) -> list[list[str]]:
        """Labels of every trace, ``max_concurrency`` requests at a time, in trace order."""
        with ThreadPoolExecutor(max_workers=max(1, self.config.max_concurrency)) as pool:
            return list(pool.map(self.label_trace, traces))


def agreement(judge: Sequence[str], rules: Sequence[str], behaviours: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per behaviour, how the judge's and the rule labeller's labels of the same segments agree (segments the judge
    left unlabelled are left out): segments each gave the behaviour, both, the share of segments they agree on
    (both or neither) and Cohen's kappa."""
    pairs = [(j, r) for j, r in zip(judge, rules, strict=True) if j != UNLABELLED]
    out = {}
    for b in behaviours:
        n = len(pairs)
        jb = sum(j == b for j, _ in pairs)
        rb = sum(r == b for _, r in pairs)
        both = sum(j == b and r == b for j, r in pairs)
        agree = sum((j == b) == (r == b) for j, r in pairs)
        po = agree / n if n else float("nan")
        pe = ((jb / n) * (rb / n) + (1 - jb / n) * (1 - rb / n)) if n else float("nan")
        kappa = (po - pe) / (1 - pe) if n and pe < 1 else float("nan")
        out[b] = {"segments": n, "judge": jb, "rules": rb, "both": both, "agreement": po, "kappa": kappa}
    return out
