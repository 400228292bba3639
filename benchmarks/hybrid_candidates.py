"""Which fusions could label-free calibration choose among? Every member subset × normalisation, on pseudo-queries
and on the real queries, side by side.

    python -m benchmarks hybrid_candidates BEIR_DIR --cache /tmp/idx/NAME [--mirror M] [--limit-queries N]
        [--sample 300] [--llm 0] [--llm-model smollm2] [--llm-backend local|llamacpp] [--llm-prompt default|natural]
        [--llm-threads N]

Reuses the indexes and the cached real-query lists written by ``python -m benchmarks hybrid_calibration`` with the
same ``--cache`` (run that first). For every non-empty subset of the members and every method — min-max,
z-score, distribution-based (``dbsf``: mean ± 3 standard deviations mapped to 0..1, clipped), CombMNZ (the min-max
sum times the number of lists holding the chunk), RRF k=10 and k=60 — it prints the nDCG@10 of the source chunk
on each pseudo-query family (the three LLM-free span families of the robust calibration, ``sample / 3`` each,
and with ``--llm N`` N questions written by ``--llm-model`` run by ``--llm-backend``; they are cached in
``--cache`` by model, prompt, seed and count, and their *copy rate* — the share of a question's content words
found in its chunk — is printed), the mean ratio to the best single member over the span families
(what the robust strategy maximises), and the nDCG@10 on the real test queries (documents ranked by their best
chunk). Last, each member's paired gap to the best other member on every family (mean ± standard error over
the pseudo-queries) and the members' order on each family beside the real queries. The real-query column is
printed for the report only: nothing is chosen on it.
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
from benchmarks.hybrid_calibration import add_dataset_arguments

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


def _ranked(ids: Sequence[str], runs: Mapping[str, Sequence[Sequence[Any]]], query: int) -> list[Any]:
    """Query ``query``'s hits in the fused order ``ids``, scored by that order (documents rank by best chunk).
    (Hits must come from this query's lists: a chunk's score differs from query to query.)"""
    from dataclasses import replace

    chunks = {h.chunk.id: h.chunk for hits in runs.values() for h in hits[query]}
    template = next(h for hits in runs.values() for h in hits[query])
    return [replace(template, chunk=chunks[c], score=float(len(ids) - r), rank=r + 1) for r, c in enumerate(ids)]


def _per_query_ndcg(ranked: Sequence[Sequence[str]], relevant: Sequence[str]) -> np.ndarray:
    return np.array([1 / np.log2(ids[:10].index(r) + 2) if r in ids[:10] else 0.0 for ids, r in zip(ranked, relevant)])


def _source_ndcg(ranked: Sequence[Sequence[str]], relevant: Sequence[str]) -> float:
    return float(_per_query_ndcg(ranked, relevant).mean())


PROMPTS = {
    "default": None,  # LLMQueries' own prompt
    "natural": (
        "Write one short, natural question that someone who has not read the passage below might ask, and that the "
        "passage answers. Do not copy distinctive words or phrases from the passage: use other words or a more "
        "general description. Reply with the question only.\n\nPassage:\n{passage}"
    ),
}


def copy_rate(query: str, text: str) -> float:
    """Share of the query's content words (not stop words, 3+ letters) that occur in ``text``, case-insensitive."""
    from ragloom.pseudo_queries import _content

    words = [w.lower() for w in _content(query)]
    present = {w.lower() for w in _content(text)}
    return sum(w in present for w in words) / len(words) if words else 0.0


def _llm_queries(args: argparse.Namespace) -> Any:
    from ragloom.pseudo_queries import LLMQueries

    if args.llm_backend == "llamacpp":
        from ragloom.adapters.generators.llamacpp import LlamaCppGenerator

        gen: Any = LlamaCppGenerator(args.llm_model, max_new_tokens=40, threads=args.llm_threads)
    else:
        from ragloom.adapters.generators.local import TransformersGenerator

        gen = TransformersGenerator(args.llm_model, max_new_tokens=40)
    prompt = PROMPTS[args.llm_prompt]
    return LLMQueries(gen) if prompt is None else LLMQueries(gen, prompt=prompt)


class CachedQueries:
    """A pseudo-query generator whose questions are kept in a JSON file by chunk id (the LLM is loaded lazily,
    only for chunks not yet in the file), so a rerun of the same sample costs no generation."""

    def __init__(self, path: Path, make: Any) -> None:
        self.path, self._make, self._inner = path, make, None
        self.cache: dict[str, str | None] = json.loads(path.read_text("utf-8")) if path.exists() else {}
        self.generated, self.seconds = 0, 0.0

    @property
    def name(self) -> str:
        return f"cached({self.path.name})"

    @property
    def seconds_per_query(self) -> float:
        return self.seconds / self.generated if self.generated else float(self.cache.get("__s_per_query__") or 0.0)

    def generate(self, chunks: Sequence[Any], seed: int) -> list[str | None]:
        missing = [c for c in chunks if c.id not in self.cache]
        if missing:
            import time

            self._inner = self._inner or self._make()
            started = time.perf_counter()
            for chunk, query in zip(missing, self._inner.generate(missing, seed)):
                self.cache[chunk.id] = query
            self.seconds += time.perf_counter() - started
            self.generated += len(missing)
            self.cache["__s_per_query__"] = self.seconds / self.generated  # type: ignore[assignment]
            self.path.write_text(json.dumps(self.cache, indent=1), encoding="utf-8")
        return [self.cache[c.id] for c in chunks]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks hybrid_candidates", description=__doc__)
    add_dataset_arguments(parser)
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--llm", type=int, default=0, help="Also N LLM-written questions as a fourth family.")
    parser.add_argument("--llm-model", default="smollm2", help="Registry alias or .gguf path of the question writer.")
    parser.add_argument("--llm-backend", choices=("local", "llamacpp"), default="local")
    parser.add_argument("--llm-prompt", choices=sorted(PROMPTS), default="default")
    parser.add_argument("--llm-threads", type=int, default=None, help="llama.cpp threads (default: its choice).")
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
        cached = (
            args.cache
            / f"llm-{Path(args.llm_model).name.removesuffix('.gguf')}-{args.llm_prompt}-{args.llm}-seed{args.seed}.json"
        )
        families["llm"] = CachedQueries(cached, lambda: _llm_queries(args))
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
            real = [_ranked(fuse(kind, {n: runs[n][i] for n in live}), runs, i) for i in range(len(queries))]
            label = f"{'+'.join(live)} alone" if len(live) == 1 else f"{kind} ({'+'.join(live)})"
            rows.append({"fusion": label, "pseudo": pseudo, "real": _metrics(data, real)["nDCG@10"]})
    spans = [f for f in sets if f != "llm"]
    singles = [r for r in rows if r["fusion"].endswith(" alone")]
    best_member = {f: max([1e-9, *(s["pseudo"][f] for s in singles)]) for f in sets}
    for row in rows:
        row["span_ratio"] = float(np.mean([row["pseudo"][f] / best_member[f] for f in spans]))
    print(f"{data.name}: {len(queries)} queries, {len(pool)} chunks; {machine()}")
    print(f"families: {', '.join(f'{f} {len(cs)}' for f, cs in sets.items())}")
    if "llm" in sets:
        llm_family = families["llm"]
        assert isinstance(llm_family, CachedQueries)
        texts = {c.id: c.text for c in pool}
        copy = [copy_rate(q, texts[r]) for q, r in zip(sets["llm"].queries, sets["llm"].relevant)]
        print(
            f"llm: {args.llm_model} ({args.llm_backend}, prompt {args.llm_prompt}); {llm_family.seconds_per_query:.2f} "
            f"s per question; copy rate {np.mean(copy):.3f} (spans: 1.000); e.g. {sets['llm'].queries[:3]}"
        )
    print()
    print("| Fusion | " + " | ".join(sets) + " | span ratio | real nDCG@10 |")
    print("|---|" + "---|" * (len(sets) + 2))
    for row in rows:
        cells = " | ".join(f"{row['pseudo'][f]:.3f}" for f in sets)
        print(f"| {row['fusion']} | {cells} | {row['span_ratio']:.3f} | {row['real']:.4f} |")
    best = max(rows, key=lambda r: r["span_ratio"])
    print(f"\nbest span ratio: {best['fusion']} (real {best['real']:.4f})")
    if "llm" in sets:
        top = max(rows, key=lambda r: r["pseudo"]["llm"])
        print(f"best on LLM questions: {top['fusion']} (real {top['real']:.4f})")
    for family, cs in sets.items():  # paired: each member minus the best other member, per pseudo-query
        per = {n: _per_query_ndcg([[h.chunk.id for h in row] for row in cs.runs[n]], cs.relevant) for n in names}
        gaps = []
        for n in names:
            rival = max((m for m in names if m != n), key=lambda m: per[m].mean())
            diff = per[n] - per[rival]
            gaps.append(f"{n} − {rival} {diff.mean():+.3f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.3f}")
        print(f"paired gaps on {family}: {'; '.join(gaps)}")
    for family in [*sets, "real"]:
        order = sorted(singles, key=lambda r: -(r["real"] if family == "real" else r["pseudo"][family]))
        cells = " > ".join(
            f"{r['fusion'].removesuffix(' alone')} {r['real'] if family == 'real' else r['pseudo'][family]:.3f}"
            for r in order
        )
        print(f"members on {family}: {cells}")
    if args.json:
        args.json.write_text(json.dumps({"dataset": data.name, "rows": rows}, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
