"""Which fusions could label-free calibration choose among? Every member subset × normalisation, on pseudo-queries
and on the real queries, side by side.

    python -m benchmarks hybrid_candidates BEIR_DIR --cache /tmp/idx/NAME [--mirror M] [--limit-queries N]
        [--sample 300] [--llm 0]

Reuses the indexes and the cached real-query lists written by ``python -m benchmarks hybrid_calibration`` with the
same ``--cache`` (run that first). For every non-empty subset of the members and every method — min-max,
z-score, distribution-based (``dbsf``: mean ± 3 standard deviations mapped to 0..1, clipped), CombMNZ (the min-max
sum times the number of lists holding the chunk), RRF k=10 and k=60 — it prints the nDCG@10 of the source chunk
on each pseudo-query family (the three LLM-free span families of the robust calibration, ``sample / 3`` each,
and with ``--llm N`` N SmolLM2-135M questions), the mean ratio to the best single member over the span families
(what the robust strategy maximises), and the nDCG@10 on the real test queries (documents ranked by their best
chunk). The real-query column is printed for the report only: nothing is chosen on it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine

METHODS = ("minmax", "zscore", "dbsf", "combmnz", "rrf10", "rrf60")


def _normalised(kind: str, scores: np.ndarray) -> np.ndarray:
    if kind == "dbsf":  # distribution-based score fusion: mean ± 3 sd → 0..1
        mean, sd = float(scores.mean()), float(scores.std())
        return np.full_like(scores, 0.5) if sd < 1e-12 else np.clip((scores - mean + 3 * sd) / (6 * sd), 0.0, 1.0)
    lo, hi = float(scores.min()), float(scores.max())
    return np.ones_like(scores) if hi - lo < 1e-12 else (scores - lo) / (hi - lo)


def fuse(kind: str, results: Mapping[str, Sequence[Any]], k: int = 100) -> list[str]:
    """Chunk ids ranked by ``kind`` over ``results`` (equal weights); ties by chunk id."""
    from ragloom.fusion import fuser_from_config

    if kind in ("minmax", "zscore", "rrf10", "rrf60"):
        config: dict[str, Any] = {"kind": kind[:3] if kind.startswith("rrf") else kind}
        if kind.startswith("rrf"):
            config["k"] = int(kind[3:])
        return [h.chunk.id for h in fuser_from_config(config).fuse(results, k)]
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    for hits in results.values():
        best: dict[str, float] = {}
        for hit in hits:
            best[hit.chunk.id] = max(best.get(hit.chunk.id, -np.inf), hit.score)
        if not best:
            continue
        values = _normalised("dbsf" if kind == "dbsf" else "minmax", np.array(list(best.values()), dtype=np.float64))
        for key, value in zip(best, values):
            totals[key] = totals.get(key, 0.0) + float(value)
            counts[key] = counts.get(key, 0) + 1
    if kind == "combmnz":
        totals = {key: value * counts[key] for key, value in totals.items()}
    return [key for key, _ in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]


def _source_ndcg(ranked: Sequence[Sequence[str]], relevant: Sequence[str]) -> float:
    return float(
        np.mean([1 / np.log2(ids[:10].index(r) + 2) if r in ids[:10] else 0.0 for ids, r in zip(ranked, relevant)])
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hybrid_candidates", description=__doc__)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--mirror", type=Path, default=None)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit-queries", type=int, default=None)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", type=int, default=0, help="Also N SmolLM2-135M questions as a fourth family.")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from benchmarks.hybrid_calibration import _build, _cached_runs, _metrics, materialise
    from ragloom.calibration import index_chunks, make_calibration_set
    from ragloom.eval import load_beir
    from ragloom.pseudo_queries import PseudoQueryGenerator
    from ragloom.robust_calibration import default_families

    if args.mirror:
        args.dataset = materialise(args.mirror, str(args.dataset), args.cache.parent / f"data-{args.dataset.name}")
    data = load_beir(args.dataset, args.split, limit_queries=args.limit_queries)
    retrievers = _build(args.cache, 254)
    names = [r.name for r in retrievers]
    queries = list(data.queries.values())
    runs = _cached_runs(args.cache / f"runs-{args.split}-100.json", retrievers, queries, 100)
    pool = index_chunks(retrievers)
    families: dict[str, PseudoQueryGenerator] = dict(default_families())
    sizes = {family: args.sample // len(families) for family in families}
    if args.llm:
        from ragloom.adapters.generators.local import TransformersGenerator
        from ragloom.pseudo_queries import LLMQueries

        families["llm"] = LLMQueries(TransformersGenerator("smollm2", max_new_tokens=40))
        sizes["llm"] = args.llm
    sets = {
        family: make_calibration_set(  # the seeds robust_calibrate uses for the span families
            retrievers,
            generator=generator,
            sample=sizes[family],
            seed=args.seed + 7919 * i,
            candidates=100,
            chunks=pool,
            min_queries=1,
        )
        for i, (family, generator) in enumerate(families.items())
    }
    subsets = sorted((m for m in itertools.product((False, True), repeat=len(names)) if any(m)), key=lambda m: -sum(m))
    rows: list[dict[str, Any]] = []
    for mask in subsets:
        live = [n for n, keep in zip(names, mask) if keep]
        for kind in METHODS if len(live) > 1 else ("minmax",):
            pseudo = {
                family: _source_ndcg(
                    [fuse(kind, {n: cs.runs[n][i] for n in live}) for i in range(len(cs))], cs.relevant
                )
                for family, cs in sets.items()
            }
            by_id = {h.chunk.id: h for n in live for row in runs[n] for h in row}
            real = [[by_id[c] for c in fuse(kind, {n: runs[n][i] for n in live})] for i in range(len(queries))]
            label = f"{'+'.join(live)} alone" if len(live) == 1 else f"{kind} ({'+'.join(live)})"
            rows.append({"fusion": label, "pseudo": pseudo, "real": _metrics(data, real)["nDCG@10"]})
    spans = [f for f in sets if f != "llm"]
    singles = [r for r in rows if r["fusion"].endswith(" alone")]
    best_member = {f: max([1e-9, *(s["pseudo"][f] for s in singles)]) for f in sets}
    for row in rows:
        row["span_ratio"] = float(np.mean([row["pseudo"][f] / best_member[f] for f in spans]))
    print(f"{data.name}: {len(queries)} queries, {len(pool)} chunks; {machine()}")
    print(f"families: {', '.join(f'{f} {len(cs)}' for f, cs in sets.items())}\n")
    print("| Fusion | " + " | ".join(sets) + " | span ratio | real nDCG@10 |")
    print("|---|" + "---|" * (len(sets) + 2))
    for row in rows:
        cells = " | ".join(f"{row['pseudo'][f]:.3f}" for f in sets)
        print(f"| {row['fusion']} | {cells} | {row['span_ratio']:.3f} | {row['real']:.4f} |")
    best = max(rows, key=lambda r: r["span_ratio"])
    print(f"\nbest span ratio: {best['fusion']} (real {best['real']:.4f})")
    if "llm" in sets:
        top = max(rows, key=lambda r: r["pseudo"]["llm"])
        print(f"best on SmolLM2 questions: {top['fusion']} (real {top['real']:.4f})")
    if args.json:
        args.json.write_text(json.dumps({"dataset": data.name, "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
