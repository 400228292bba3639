"""Dense encoding throughput: ragloom's TransformersDenseEncoder vs sentence-transformers, same MiniLM weights.

Passages are SciFact abstracts cut to at most L tokens (L = 128 and 512), so both sides see identical inputs with
natural length variation. Runs alternate in one process after a warm-up; the table shows median passages/s and
the ratio ragloom/peer. Quality: cosine between ragloom's and the peer's vectors (fp32), and between ragloom bf16
and fp32. Peak memory: each side in a fresh subprocess (``--memory``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from benchmarks._common import alternate, machine, median, offline_model, peak_rss_mib, scifact_texts


def _passages(tokenizer, length: int, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for text in scifact_texts(count * 2):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][: length - 2]
        if len(ids) >= 16:
            out.append(tokenizer.decode(ids))
        if len(out) == count:
            break
    return out


def _memory_child(side: str, length: int, count: int, dtype: str) -> None:
    import torch

    torch.set_num_threads(torch.get_num_threads())
    path = offline_model("minilm")
    from transformers import AutoTokenizer

    texts = _passages(AutoTokenizer.from_pretrained(path), length, count)
    before = peak_rss_mib()
    if side == "ragloom":
        from ragloom.adapters.dense import TransformersDenseEncoder

        TransformersDenseEncoder(path, max_length=length, dtype=dtype).encode_documents(texts)  # type: ignore[arg-type]
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(path), device="cpu")
        model.max_seq_length = length
        model.encode(texts, batch_size=32, normalize_embeddings=True)
    print(json.dumps({"peak_mib": peak_rss_mib(), "before_mib": before}))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dense_encode", description=__doc__)
    parser.add_argument("--count", type=int, default=256, help="passages per length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per side in subprocesses")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, length, count, dtype = args.child
        _memory_child(side, int(length), int(count), dtype)
        return

    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from ragloom.adapters.dense import TransformersDenseEncoder

    path = offline_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    print(f"# dense_encode · all-MiniLM-L6-v2 · {machine()} · {args.count} passages · median of {args.repeats}")
    print(
        "| max tokens | ragloom fp32 p/s | ragloom bf16 p/s | sentence-transformers p/s | fp32 ratio | bf16 ratio "
        "| cos(ragloom, ST) min | cos(bf16, fp32) min |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for length in args.lengths:
        texts = _passages(tokenizer, length, args.count)
        fp32 = TransformersDenseEncoder(path, max_length=length, batch_size=32)
        bf16 = TransformersDenseEncoder(path, max_length=length, batch_size=32, dtype="bfloat16")
        peer = SentenceTransformer(str(path), device="cpu")
        peer.max_seq_length = length
        results: dict[str, np.ndarray] = {}

        def run_fp32() -> None:
            results["fp32"] = fp32.encode_documents(texts)

        def run_bf16() -> None:
            results["bf16"] = bf16.encode_documents(texts)

        def run_peer() -> None:
            results["peer"] = peer.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

        times = alternate({"fp32": run_fp32, "bf16": run_bf16, "peer": run_peer}, args.repeats)
        rate = {name: len(texts) / median(t) for name, t in times.items()}
        cos_peer = float(np.min(np.sum(results["fp32"] * results["peer"], axis=1)))
        cos_bf16 = float(np.min(np.sum(results["fp32"] * results["bf16"], axis=1)))
        print(
            f"| {length} | {rate['fp32']:.1f} | {rate['bf16']:.1f} | {rate['peer']:.1f} | "
            f"{rate['fp32'] / rate['peer']:.2f}x | {rate['bf16'] / rate['peer']:.2f}x | {cos_peer:.5f} | "
            f"{cos_bf16:.4f} |",
            flush=True,
        )
    if args.memory:
        print("\n| side | max tokens | peak RSS MiB |\n|---|---|---|")
        for length in args.lengths:
            for side, dtype in (("ragloom", "float32"), ("ragloom", "bfloat16"), ("sentence-transformers", "-")):
                out = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks",
                        "dense_encode",
                        "--child",
                        ("ragloom" if side == "ragloom" else "peer"),
                        str(length),
                        str(args.count),
                        dtype if dtype != "-" else "float32",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                peak = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
                label = f"{side} {dtype}" if side == "ragloom" else side
                print(f"| {label} | {length} | {peak:.0f} |")
