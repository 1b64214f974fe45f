"""Benchmark: onnxruntime session options and int8 quantisation choices (issue #32, lever b).

    python -m bench.ort_options [--datasets ../shared/datasets] [--rounds 3] [--call 20]

On bueck-v3's test part (the split of ``ticketflow experiments``) at ``EMBEDDING_MAX_TOKENS``,
the int8 export the worker serves (dynamic, per-channel QInt8 weights of the MatMuls, session
as :class:`OnnxEncoder` makes it) against: graph optimisation at EXTENDED and BASIC (ALL
is onnxruntime's default), no CPU memory arena, spinning intra-op threads, and three other
graphs quantised from the same fp32 export: ``reduce_range`` (7-bit weights), QUInt8
weights, and onnxruntime's BERT fusions (``onnxruntime.transformers.optimizer``) before the
same quantisation. Each variant encodes the same texts in calls of ``--call`` rows in turn,
the order rotated every round; ratios are to the served graph within a round. Also printed:
each variant's cosine to the fp32 export's vectors (the quantisation error) on those texts.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from bench.rounds import interleave, timed
from ticketflow.batch.experiments import SEED, TEST_SIZE, default_datasets_dir
from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.models.encoders import encoders_root
from ticketflow.models.onnx_encoder import GRAPH_FILE, OnnxEncoder, ensure_export
from ticketflow.models.text import build_texts

REPO = Path(__file__).resolve().parents[1]


def quantised(fp32: Path, out: Path, **options: Any) -> Path:
    quantize_dynamic(
        str(fp32),
        str(out),
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        **{"weight_type": QuantType.QInt8, **options},
    )
    return out


def variant_dir(served: Path, graph: Path, work: Path, name: str) -> Path:
    """An export directory like ``served`` holding ``graph`` (manifest's sha256 updated)."""
    from ticketflow.models.onnx_encoder import MANIFEST_FILE, TOKENIZER_FILE, ExportManifest
    from ticketflow.models.registry import sha256_file

    directory = work / name
    directory.mkdir()
    graph.replace(directory / GRAPH_FILE)
    (directory / TOKENIZER_FILE).write_bytes((served / TOKENIZER_FILE).read_bytes())
    manifest = ExportManifest.model_validate_json((served / MANIFEST_FILE).read_text("utf-8"))
    manifest.sha256 = sha256_file(directory / GRAPH_FILE)
    (directory / MANIFEST_FILE).write_text(manifest.model_dump_json(), "utf-8")
    return directory


def main() -> None:
    import onnxruntime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets_dir())
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--call", type=int, default=20)
    parser.add_argument("--probe", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help="comma-separated words: time the variants naming one")
    args = parser.parse_args()
    settings = Settings()
    data = load_labeled(
        args.datasets / "bueck-v3" / "tickets.csv",
        targets=["queue"],
        mapping=ColumnMapping.parse([]),
        progress=False,
    )
    texts = build_texts(data.tickets, max_chars=settings.max_text_chars)
    _, test_idx = split_indices(len(texts), data.labels["queue"], test_size=TEST_SIZE, seed=SEED)
    probe = [texts[i] for i in test_idx[: args.probe]]
    root, cache = encoders_root(settings.model_registry_dir), settings.cache_dir / "encoders"
    served = ensure_export(settings.embedding_model, "onnx-int8", root, cache_root=cache)
    fp32_dir = ensure_export(settings.embedding_model, "onnx", root, cache_root=cache)
    work = Path(tempfile.mkdtemp(prefix="ticketflow-ort-"))
    fp32 = fp32_dir / GRAPH_FILE

    def encoder(directory: Path, **session: Any) -> OnnxEncoder:
        made = OnnxEncoder(
            directory, threads=args.threads, max_tokens=settings.embedding_max_tokens
        )
        if session:  # the same session with other options
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            options.inter_op_num_threads = 1
            options.enable_mem_pattern = False  # as OnnxEncoder serves it
            options.add_session_config_entry(
                "session.intra_op.allow_spinning", session.pop("spinning", "0")
            )
            for key, value in session.items():
                setattr(options, key, value)
            made._session = onnxruntime.InferenceSession(
                str(directory / GRAPH_FILE), options, providers=["CPUExecutionProvider"]
            )
        return made

    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(fp32), model_type="bert", num_heads=0, hidden_size=0)
    print("BERT fusions found:", fused.get_fused_operator_statistics(), flush=True)
    fused.save_model_to_file(str(work / "fused-fp32.onnx"))
    level = onnxruntime.GraphOptimizationLevel
    variants: dict[str, OnnxEncoder] = {
        "served (int8, ORT_ENABLE_ALL)": encoder(served),
        "graph optimisation EXTENDED": encoder(
            served, graph_optimization_level=level.ORT_ENABLE_EXTENDED
        ),
        "graph optimisation BASIC": encoder(
            served, graph_optimization_level=level.ORT_ENABLE_BASIC
        ),
        "no CPU memory arena": encoder(served, enable_cpu_mem_arena=False),
        "spinning intra-op threads": encoder(served, spinning="1"),
        "int8 reduce_range": encoder(
            variant_dir(served, quantised(fp32, work / "r.onnx", reduce_range=True), work, "r")
        ),
        "QUInt8 weights": encoder(
            variant_dir(
                served, quantised(fp32, work / "u.onnx", weight_type=QuantType.QUInt8), work, "u"
            )
        ),
        "BERT fusions + int8": encoder(
            variant_dir(served, quantised(work / "fused-fp32.onnx", work / "f.onnx"), work, "f")
        ),
    }
    reference = encoder(fp32_dir).encode(probe)
    names = list(variants)
    if args.only:
        words = args.only.split(",")
        names = [names[0], *(n for n in names[1:] if any(w in n for w in words))]
    for name in names:
        cosine = np.sum(variants[name].encode(probe) * reference, axis=1)
        print(f"{name:32s} cosine to fp32: mean {cosine.mean():.4f}, min {cosine.min():.4f}")

    def run(name: str) -> tuple[float, float]:
        encode = variants[name].encode
        encode(probe[:8])

        def calls() -> None:
            for i in range(0, len(probe), args.call):
                encode(probe[i : i + args.call])

        return timed(calls, len(probe))

    timings = interleave(names, run, args.rounds)
    print("\n".join(timings.summary(str)))


if __name__ == "__main__":
    main()
