"""Dense encoding throughput: ragloom's TransformersDenseEncoder vs sentence-transformers, same MiniLM weights.

Passages are SciFact abstracts cut to at most L tokens (L = 128 and 512), so both sides see identical inputs with
natural length variation. In one process, after a warm-up, each ragloom setting and the peer (sentence-transformers
fp32 at torch's default threads) run in alternation; the table shows median passages/s, the ratio to the peer and
the min/mean cosine of each setting's vectors to the peer's. Settings: fp32 at torch's threads (``threads=None``),
fp32 with ``threads="auto"`` (opt-in), bf16 (only with ``--bf16`` or on a CPU with native bf16; elsewhere it is
emulated and several times slower), the ONNX Runtime backend (``backend="onnx"``, fp32, ``threads="auto"``; when
onnxruntime is installed) and int8 dynamic quantisation of the Linear layers, in torch and in ONNX Runtime
(``--int8``: not encoder options, they fail the cosine >= 0.999 bar). ``--only`` keeps the settings whose label
contains one of its words. Peak memory: each side in a fresh subprocess (``--memory``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

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


def _int8(encoder):  # type: ignore[no-untyped-def]
    """The encoder with its Linear layers quantised to int8 (dynamic, per-channel weights; fbgemm)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        encoder.model = quantize_dynamic(encoder.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, torch.qint8)
    return encoder


def _onnx_int8(encoder):  # type: ignore[no-untyped-def]
    """The ONNX backend's export quantised by ORT (dynamic int8, per-channel weights, reduced range for AVX2)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from ragloom.adapters.dense_onnx import OnnxEncoderRunner, OnnxExport

    target = Path(tempfile.mkdtemp(prefix="ragloom-int8-")) / "model.int8.onnx"
    quantize_dynamic(
        str(encoder._onnx.export.path), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
    )
    encoder._onnx = OnnxEncoderRunner(OnnxExport(target, "benchmark only"))
    return encoder


def _settings(path, length: int, bf16: bool, native: bool, int8: bool) -> dict:  # type: ignore[no-untyped-def]
    from ragloom.adapters.dense import TransformersDenseEncoder

    def make(**options):  # type: ignore[no-untyped-def]
        return TransformersDenseEncoder(path, max_length=length, batch_size=32, **options)

    settings = {
        "ragloom fp32, torch's threads": make(dtype="float32", threads=None),
        'ragloom fp32, threads="auto"': make(dtype="float32", threads="auto"),
    }
    if native or bf16:
        label = 'ragloom bf16, threads="auto"' + ("" if native else " (emulated)")
        settings[label] = make(dtype="bfloat16", threads="auto")
    onnx = all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))
    if onnx:
        settings['ragloom onnx fp32, threads="auto"'] = make(backend="onnx", threads="auto")
    if int8:
        settings['ragloom int8 dynamic, threads="auto"'] = _int8(make(dtype="float32", threads="auto"))
        if onnx:
            settings['ragloom onnx int8 dynamic, threads="auto"'] = _onnx_int8(make(backend="onnx", threads="auto"))
    return settings


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks dense_encode", description=__doc__)
    parser.add_argument("--count", type=int, default=256, help="passages per length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--bf16", action="store_true", help="also run bf16 where the CPU lacks native bf16")
    parser.add_argument("--int8", action="store_true", help="also run int8 dynamic quantisation (rejected setting)")
    parser.add_argument("--only", nargs="+", help="keep the ragloom settings whose label contains one of these")
    parser.add_argument("--memory", action="store_true", help="also measure peak RSS per side in subprocesses")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, length, count, dtype = args.child
        _memory_child(side, int(length), int(count), dtype)
        return

    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from ragloom.hf import cpu_has_bf16

    path = offline_model("minilm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    native = cpu_has_bf16()
    print(
        f"# dense_encode · all-MiniLM-L6-v2 · {machine()} · native bf16: {native} · torch threads "
        f"{torch.get_num_threads()} · load average {os.getloadavg()[0]:.1f} at start · {args.count} passages · "
        f"median of {args.repeats}, alternating"
    )
    print("| max tokens | setting | passages/s | ratio to sentence-transformers fp32 | cosine min | cosine mean |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        texts = _passages(tokenizer, length, args.count)
        peer = SentenceTransformer(str(path), device="cpu")
        peer.max_seq_length = length
        settings = _settings(path, length, args.bf16, native, args.int8)
        if args.only:
            settings = {k: v for k, v in settings.items() if any(word in k for word in args.only)}
        results: dict[str, np.ndarray] = {}

        def runner(name: str, encoder) -> Callable[[], None]:  # type: ignore[no-untyped-def]
            def run() -> None:
                results[name] = encoder.encode_documents(texts)

            return run

        def run_peer() -> None:
            results["peer"] = peer.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)

        runs = {name: runner(name, encoder) for name, encoder in settings.items()} | {"peer": run_peer}
        times = alternate(runs, args.repeats)
        rate = {name: len(texts) / median(t) for name, t in times.items()}
        print(f"| {length} | sentence-transformers fp32 | {rate['peer']:.1f} | 1.00x | 1 | 1 |", flush=True)
        for name, encoder in settings.items():
            cos = np.sum(results[name] * results["peer"], axis=1)
            tuner = getattr(encoder, "_tuner", None)
            tuned = f" (tuned: {tuner.best} thread{'s' if tuner.best > 1 else ''})" if tuner else ""
            print(
                f"| {length} | {name}{tuned} | {rate[name]:.1f} | {rate[name] / rate['peer']:.2f}x | "
                f"{cos.min():.5f} | {cos.mean():.5f} |",
                flush=True,
            )
        print(f"# load average {os.getloadavg()[0]:.1f} after ≤{length} tokens", flush=True)
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
