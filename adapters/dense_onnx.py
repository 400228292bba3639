"""ONNX Runtime as the compute backend of :class:`ragloom.adapters.dense.TransformersDenseEncoder` (``backend="onnx"``).

The loaded transformers encoder is exported once with torch.onnx's dynamo exporter (dynamic batch and sequence axes;
the older TorchScript exporter produced wrong hidden states for BERT under transformers 5), fused with ONNX
Runtime's transformer optimizer where it knows the architecture (BERT: SkipLayerNorm, BiasGelu), and cached under
ragloom's model home keyed by the weights' digest, with the file's sha256 recorded beside it. A file that does not
match its record (a crash between the two writes, a corrupted disk) is exported again. Writes are atomic and guarded
by a file lock, so concurrent processes export once; the format is protobuf (no pickle). Only encoding runs in ORT:
tokenizing, padding, pooling and normalisation stay the encoder's own.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ragloom._imports import require
from ragloom.errors import ConfigError, RagloomWarning
from ragloom.models import models_home
from ragloom.stores.files import atomic_write_bytes, atomic_write_json, file_sha256, read_json, sha256_hex

__all__ = ["OnnxEncoderRunner", "export_onnx_encoder", "onnx_cache_dir"]

INPUTS = ("input_ids", "attention_mask")  # what the encoder's padding produces; token types default to zeros
FORMAT = 2  # bump when the export changes, so older cached files are exported again
_FUSED = {"bert": "bert"}  # transformers model_type → onnxruntime.transformers optimizer model_type
_LIMIT = 2_000_000_000  # protobuf's single-file ceiling (2 GiB) with a margin


def onnx_cache_dir(name: str, weights_hash: str) -> Path:
    """Where the export of these weights lives: ``$RAGLOOM_HOME/models/onnx/NAME-DIGEST``."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return models_home() / "onnx" / f"{safe[:64]}-{weights_hash[:16]}"


@dataclass(frozen=True)
class OnnxExport:
    """An exported encoder file and the sha256 it was verified against."""

    path: Path
    sha256: str


def export_onnx_encoder(model: Any, *, name: str, weights_hash: str) -> OnnxExport:
    """The cached ONNX export of ``model`` (a transformers encoder in fp32), exporting it first when missing or
    when the file does not match its recorded sha256."""
    filelock = require("filelock", "onnx", "locking the ONNX export cache")
    folder = onnx_cache_dir(name, weights_hash)
    folder.mkdir(parents=True, exist_ok=True)
    target, record = folder / "model.onnx", folder / "model.onnx.json"
    with filelock.FileLock(str(folder / ".export.lock")):
        found = _verified(target, record, weights_hash)
        if found is not None:
            return found
        data = _export_bytes(model)
        digest = sha256_hex(data)
        atomic_write_bytes(target, data)
        atomic_write_json(
            record,
            {
                "format": FORMAT,
                "sha256": digest,
                "weights": weights_hash,
                "inputs": list(INPUTS),
                "torch": require("torch", "onnx").__version__,
            },
        )
    return OnnxExport(target, digest)


def _verified(target: Path, record: Path, weights_hash: str) -> OnnxExport | None:
    if not (target.is_file() and record.is_file()):
        return None
    try:
        meta = read_json(record)
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("weights") != weights_hash:
        return None
    digest = file_sha256(target)
    return OnnxExport(target, digest) if digest == meta.get("sha256") else None


def _export_bytes(model: Any) -> bytes:
    """Serialized ONNX of ``model``'s last hidden state for (input_ids, attention_mask), dynamic in both axes."""
    torch = require("torch", "onnx", "exporting to ONNX")
    require("onnxscript", "onnx", "exporting to ONNX (torch's dynamo exporter)")

    class LastHidden(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row, so masking is traced rather than specialised away
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with _quiet_exporter(), torch.inference_mode(False):
        program = torch.onnx.export(
            LastHidden(model).eval(),
            (ids, mask),
            dynamo=True,
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
            external_data=False,
            verbose=False,
        )
    proto = _fuse(program.model_proto, model.config)
    if proto.ByteSize() > _LIMIT:
        raise ConfigError(
            "backend='onnx' keeps the export in one file, which protobuf limits to 2 GB; this model is larger. "
            "Use backend='torch'."
        )
    return bytes(proto.SerializeToString())


def _fuse(proto: Any, config: Any) -> Any:
    """ORT's transformer fusions for architectures it knows (else the graph as exported), with a warning on failure."""
    kind = _FUSED.get(getattr(config, "model_type", ""))
    if kind is None:
        return proto
    optimizer = require("onnxruntime.transformers.optimizer", "onnx", "fusing the ONNX graph")
    try:
        with _quiet_exporter():
            fused = optimizer.optimize_model(
                proto,
                model_type=kind,
                num_heads=int(config.num_attention_heads),
                hidden_size=int(config.hidden_size),
                opt_level=0,
            )
        proto = fused.model
    except Exception as exc:  # the fusions are an optimisation: the exported graph computes the same vectors
        warnings.warn(
            f"ONNX Runtime's {kind} fusions failed ({type(exc).__name__}: {exc}); using the unfused graph",
            RagloomWarning,
            stacklevel=3,
        )
        return proto
    if any(node.domain == "com.microsoft" for node in proto.graph.node) and not any(
        opset.domain == "com.microsoft" for opset in proto.opset_import
    ):  # the fused operators' domain, declared as the optimizer's own save does (other ONNX tools need it)
        opset = proto.opset_import.add()
        opset.domain, opset.version = "com.microsoft", 1
    return proto


_ARENA_LOCK = threading.Lock()
_ARENA = {"registered": False}


def _register_shared_arena(ort: Any) -> None:
    """Register one CPU arena allocator in ORT's process-wide environment (once), for sessions to share."""
    with _ARENA_LOCK:
        if _ARENA["registered"]:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        try:
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, -1, -1, -1))
        except Exception as exc:  # one is registered already (by other code in this process): sessions share that
            if "already" not in str(exc).lower():
                raise
        _ARENA["registered"] = True


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """No warnings, prints or torch.onnx log lines (e.g. "torchvision is not installed") during the export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class OnnxEncoderRunner:
    """ORT sessions over one export, one per thread count (``None``: ORT's default, the physical cores).

    Sessions use every graph optimisation; intra-op workers do not spin between operators (spinning workers stall
    each other when other processes keep the cores busy, as OpenMP's do; see :mod:`ragloom.cpu_threads`). All
    sessions of the process share one CPU memory arena, so a tuned encoder's second session costs no second arena
    (two MiniLM sessions at 32 × 256 tokens: peak RSS 886 MiB shared vs 1,490 MiB with an arena each).
    """

    def __init__(self, export: OnnxExport) -> None:
        self._ort = require("onnxruntime", "onnx", "the ONNX Runtime encoder backend")
        _register_shared_arena(self._ort)
        self.export = export
        self._sessions: dict[int | None, Any] = {}

    def session(self, threads: int | None) -> Any:
        if threads not in self._sessions:
            ort = self._ort
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.intra_op_num_threads = int(threads or 0)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.use_env_allocators", "1")
            self._sessions[threads] = ort.InferenceSession(
                str(self.export.path), options, providers=["CPUExecutionProvider"]
            )
        return self._sessions[threads]

    def run(self, features: dict[str, np.ndarray], threads: int | None) -> np.ndarray:
        """The last hidden state (batch × sequence × hidden, fp32) for padded int64 inputs."""
        feed = {name: np.ascontiguousarray(features[name], dtype=np.int64) for name in INPUTS}
        return np.asarray(self.session(threads).run(["last_hidden_state"], feed)[0])
