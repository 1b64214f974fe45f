"""The sentence encoder exported once to ONNX and run with plain onnxruntime + tokenizers.

Why not ``sentence-transformers[onnx]``: it pulls optimum, which pins sentence-transformers
to an older major version. The export here is ``torch.onnx.export`` of the transformer
alone; tokenisation (``tokenizers``), mean pooling and L2 normalisation are done outside
the graph exactly as the sentence-transformers pipeline of the supported models does them,
so the fp32 export reproduces the torch vectors (cosine 1.000 measured) and the int8 one
is a dynamic, per-channel quantisation of its weight matrices (cosine 0.993 measured on
bueck-v3 texts; per-tensor quantisation gave only 0.92).

An export lives in a directory with ``model.onnx``, ``tokenizer.json`` and
``manifest.json`` (source model, backend, sequence length, dimension, sha256 of the graph);
:func:`load_export` refuses a directory whose graph does not match its manifest.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from ticketflow.data.progress import progress
from ticketflow.models.build_cache import atomic_directory
from ticketflow.models.embedding import EncoderLoadError, FloatMatrix, resolve_model_source
from ticketflow.models.registry import sha256_file

logger = logging.getLogger(__name__)

OnnxBackend = Literal["onnx", "onnx-int8"]
ONNX_BACKENDS: tuple[OnnxBackend, ...] = ("onnx", "onnx-int8")
GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
# Texts whose token counts fall in the same band of this many tokens are padded together
# (OnnxEncoder.encode); 0 pads each run of batch_size texts to its longest.
BUCKET_TOKENS = 16
EXPORT_FORMAT = 1  # bump when the export procedure changes what a graph computes


class ExportManifest(BaseModel):
    source_model: str
    backend: str
    max_seq_length: int
    dimension: int
    sha256: str
    export_format: int = EXPORT_FORMAT
    exported_at: datetime
    library_versions: dict[str, str] = {}


def _disable_ort_telemetry() -> None:
    import onnxruntime

    # onnxruntime >= 1.2x writes telemetry under ~/.cache/Microsoft unless told not to.
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if disable is not None:
        disable()


def _sentence_config(source: Path) -> tuple[int, str]:
    """(max_seq_length, pooling mode) of a sentence-transformers model directory."""
    max_len = 256
    config = source / "sentence_bert_config.json"
    if config.is_file():
        max_len = int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    pooling = "mean"
    pooling_config = source / "1_Pooling" / "config.json"
    if pooling_config.is_file():
        modes = json.loads(pooling_config.read_text(encoding="utf-8"))
        if isinstance(modes.get("pooling_mode"), str):
            # sentence-transformers 6 saves one mode by name (a fine-tuned model, say).
            pooling = modes["pooling_mode"]
        else:
            active = [k for k, v in modes.items() if k.startswith("pooling_mode") and v is True]
            pooling = "mean" if active == ["pooling_mode_mean_tokens"] else ",".join(active)
    return max_len, pooling


def export_dir_name(model_name: str, backend: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_name)
    return f"{slug}--{backend}--f{EXPORT_FORMAT}"


def export_onnx(model_name: str, backend: OnnxBackend, out_dir: Path) -> ExportManifest:
    """Export ``model_name`` (hub name or local directory) to ``out_dir`` for ``backend``.

    Written to a temporary sibling first and renamed (:func:`atomic_directory`).
    """
    import onnxruntime
    import torch
    from transformers import AutoModel

    if backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown ONNX backend {backend!r}; choose one of {ONNX_BACKENDS}")
    source = Path(resolve_model_source(model_name))
    if not source.is_dir():
        raise EncoderLoadError(
            f"cannot export {model_name!r}: no local copy ({source}); "
            "set EMBEDDING_MODEL to a local sentence-transformers directory"
        )
    max_len, pooling = _sentence_config(source)
    if pooling != "mean":
        raise EncoderLoadError(
            f"{model_name!r} pools with {pooling!r}; the ONNX backends support mean pooling "
            "only: use EMBEDDING_BACKEND=torch for this model"
        )
    with atomic_directory(out_dir) as work:
        transformer = AutoModel.from_pretrained(str(source))
        transformer.eval()

        class LastHiddenState(torch.nn.Module):
            # transformers 5 takes keyword arguments only; the exporter passes positionals.
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.model(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    token_type_ids=token_type_ids,
                ).last_hidden_state

        names = ["input_ids", "attention_mask", "token_type_ids"]
        dummy = torch.ones(2, 16, dtype=torch.long)
        fp32 = work / "fp32.onnx"
        torch.onnx.export(
            LastHiddenState(transformer),
            (dummy, torch.ones_like(dummy), torch.zeros_like(dummy)),
            str(fp32),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
        graph = work / GRAPH_FILE
        if backend == "onnx-int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(
                str(fp32),
                str(graph),
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["MatMul"],
            )
            fp32.unlink()
        else:
            fp32.replace(graph)
        shutil.copy(source / TOKENIZER_FILE, work / TOKENIZER_FILE)
        manifest = ExportManifest(
            source_model=model_name,
            backend=backend,
            max_seq_length=max_len,
            dimension=int(transformer.config.hidden_size),
            sha256=sha256_file(graph),
            exported_at=datetime.now(UTC),
            library_versions={"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        )
        (work / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n", "utf-8")
    logger.info("exported %s as %s to %s", model_name, backend, out_dir)
    return manifest


def load_export(directory: Path) -> ExportManifest:
    """The manifest of an export, after checking the graph against it."""
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise EncoderLoadError(f"no ONNX export in {directory} (missing {MANIFEST_FILE})")
    manifest = ExportManifest.model_validate_json(path.read_text(encoding="utf-8"))
    actual = (
        sha256_file(directory / GRAPH_FILE) if (directory / GRAPH_FILE).is_file() else "missing"
    )
    if actual != manifest.sha256:
        raise EncoderLoadError(
            f"ONNX export {directory}: {GRAPH_FILE} sha256 {actual[:12]} does not match its "
            f"manifest ({manifest.sha256[:12]}); delete the directory to re-export"
        )
    return manifest


class OnnxEncoder:
    """An exported encoder behind the :class:`~ticketflow.models.embedding.Encoder` protocol."""

    def __init__(
        self,
        directory: Path,
        *,
        batch_size: int = 32,
        threads: int | None = None,
        name: str | None = None,
        max_tokens: int | None = None,
        bucket_tokens: int = BUCKET_TOKENS,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        _disable_ort_telemetry()
        self.manifest = load_export(directory)
        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle intra-op threads sleep instead of spinning: the same throughput with fewer
        # cores burnt, which the broker and Faust's event loop need on small machines.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # No memory pattern: onnxruntime plans and keeps one allocation pattern per input shape,
        # and the length buckets make many shapes. Off, the worker holds less memory at the same
        # speed (docs/speed.md, "Memory and cold start").
        options.enable_mem_pattern = False
        self._session = onnxruntime.InferenceSession(
            str(directory / GRAPH_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        # The export handles any length; the cut is the tokenizer's (None: the model's own).
        self.max_tokens = max_tokens or self.manifest.max_seq_length
        tokenizer.enable_truncation(self.max_tokens)
        padding = tokenizer.padding or {}
        self._pad_id = int(padding.get("pad_id", 0))
        # Padding is done per bucket in encode(), to the longest text of the bucket; the
        # tokenizer.json of sentence-transformers models pads every text to a fixed length.
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._name = name or self.manifest.source_model
        self.batch_size = batch_size
        self.bucket_tokens = bucket_tokens
        logger.info(
            "loaded %s encoder %s (dim %d) from %s",
            self.manifest.backend,
            self._name,
            self.manifest.dimension,
            directory,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def dimension(self) -> int:
        return self.manifest.dimension

    @property
    def backend(self) -> str:
        return self.manifest.backend

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> FloatMatrix:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encoded = self._tokenizer.encode_batch(list(texts))
        lengths = np.asarray([len(e.ids) for e in encoded])
        buckets: Iterable[npt.NDArray[np.intp]] = token_buckets(
            lengths, batch_size=self.batch_size, width=self.bucket_tokens
        )
        if show_progress:  # the worker's per-batch calls skip making a bar at all
            buckets = progress(list(buckets), desc=f"embedding ({self.backend})", unit="batch")
        for rows in buckets:
            width = int(lengths[rows].max())
            ids = np.full((len(rows), width), self._pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                ids[r, : lengths[i]] = encoded[i].ids
                mask[r, : lengths[i]] = 1
            feeds = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feeds)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[rows] = pooled / np.maximum(norms, 1e-12)
        return out


def token_buckets(
    lengths: npt.NDArray[np.int_], *, batch_size: int, width: int
) -> list[npt.NDArray[np.intp]]:
    """Row indices in runs of at most ``batch_size``, by token count, each run padded to its
    own longest text: texts whose counts fall in the same ``width``-token band share a run
    (``width`` 0: one band, runs of ``batch_size`` in length order).

    Why: the transformer's cost grows with the padded length of the run, and on bueck-v3
    most texts fill the 128-token cut while a quarter are far shorter; padding those to 128
    with the rest wasted their share (docs/speed.md, "Levers").
    """
    order = np.argsort(lengths, kind="stable")
    bands = (lengths[order] + width - 1) // width if width > 0 else np.zeros(len(order))
    runs: list[npt.NDArray[np.intp]] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order) or bands[end] != bands[start] or end - start == batch_size:
            runs.append(order[start:end])
            start = end
    return runs


def ensure_export(
    model_name: str, backend: OnnxBackend, root: Path, *, cache_root: Path | None = None
) -> Path:
    """The export directory for (model, backend) under ``root``, exporting it when missing."""
    from ticketflow.models.build_cache import materialise

    return materialise(
        root / export_dir_name(model_name, backend),
        marker=MANIFEST_FILE,
        build=lambda target: export_onnx(model_name, backend, target),
        cache_root=cache_root,
    )
