"""``python -m lrmrepro.score``: rescore generations made elsewhere with the workflow's scorers.

Example::

    python -m lrmrepro.score --items results/tasks/folio.parquet --outputs runs/folio.jsonl --align id \\
        --out results/external/folio-mymodel [--policy strict|lenient] [--id-field F] [--text-field F]

Input layouts and alignment rules: :mod:`lrmrepro.scoring.external` and docs/tasks.md. Writes ``scores.parquet``,
``scores.meta.json``, ``summary.parquet`` and ``summary.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from .scoring.extract import POLICIES
    from .scoring.external import AlignmentError, rescore

    p = argparse.ArgumentParser(prog="python -m lrmrepro.score",
                                description="Score outputs made by other tools against a task's items.")
    p.add_argument("--items", required=True, help="task items parquet (results/tasks/<task>.parquet)")
    p.add_argument("--outputs", required=True,
                   help="a folder of <id>.txt / <position>.txt files, a JSONL (or JSON list) with an id and a text "
                        "field, or an lm-evaluation-harness samples JSONL")
    p.add_argument("--align", required=True, choices=["id", "order"],
                   help="id: output ids are item ids; order: the k-th output is the k-th item (counts must be equal)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--policy", default="strict", choices=list(POLICIES), help="truncation policy (default strict)")
    p.add_argument("--id-field", help="JSONL id field (default: the first of id, doc_id, question_id, unique_id)")
    p.add_argument("--text-field", help="JSONL text field (default: the first of text, output, response, "
                                        "completion, generation)")
    p.add_argument("--label", help="model label in the summary (default: the outputs' file name)")
    p.add_argument("--allow-weak-sandbox", action="store_true",
                   help="code tasks: accept the weak sandbox where namespaces are unavailable")
    args = p.parse_args(argv)
    try:
        meta = rescore(args.items, args.outputs, args.out, align_by=args.align, policy=args.policy,
                       id_field=args.id_field, text_field=args.text_field, label=args.label,
                       allow_weak_sandbox=args.allow_weak_sandbox)
    except (AlignmentError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if meta["n_items_without_output"]:
        print(f"warning: {meta['n_items_without_output']} of {meta['n_items']} items have no output and are not "
              f"scored (e.g. {', '.join(map(repr, meta['items_without_output'][:5]))})", file=sys.stderr)
    print(f"{meta['n']} outputs scored ({meta['layout']}, aligned by {meta['aligned_by']}, policy "
          f"{meta['scoring_policy']}): accuracy {meta['accuracy']:.4f}, truncated {meta['truncation_rate']:.4f}; "
          f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
