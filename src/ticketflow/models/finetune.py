"""Fine-tuning the sentence encoder on the help desk's own labels (``train --finetune``).

The objective is multi-task classification: one linear head per target on the encoder's
normalised sentence embedding, cross-entropy with balanced class weights, summed over the
targets. It was chosen over SetFit-style contrastive pairs because one pass serves every
target a model learns (queue, type, priority) and needs no pair mining; the numbers are in
docs/model-quality.md ("Fine-tuning the encoder"). The heads are thrown away afterwards: the
model's own heads are fitted on the fine-tuned vectors by the usual recipe
(:mod:`ticketflow.models.recipe`), so calibration and review thresholds mean what they mean
for every other model.

The result is a sentence-transformers directory: the ONNX int8 export, the distilled static
stage and the encoder sha256 recorded in the model's metadata all work on it as on the base
model, so the worker serves the same architecture at the same speed. Training-time only:
torch and sentence-transformers are imported inside the functions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ticketflow.data.progress import progress
from ticketflow.models.build_cache import atomic_directory
from ticketflow.models.embedding import resolve_model_source

logger = logging.getLogger(__name__)

STAMP_FILE = "ticketflow-finetune.json"


@dataclass(frozen=True)
class FinetuneConfig:
    """How the encoder is fine-tuned; the defaults won CV on bueck-v3's training part."""

    epochs: int = 10  # 3-fold CV on bueck-v3's training part: 3 < 6 < 10 (docs)
    learning_rate: float = 5e-5  # the encoder's; the throw-away heads learn at head_learning_rate
    head_learning_rate: float = 1e-3
    batch_size: int = 32
    max_tokens: int = 256
    # Cosine-similarity logits are in [-1, 1]; a scale makes the softmax sharp enough to learn.
    logit_scale: float = 20.0
    warmup: float = 0.1  # share of the steps with a linear warm-up
    seed: int = 42


@dataclass(frozen=True)
class FinetuneResult:
    directory: Path
    base_model: str
    seconds: float
    device: str
    final_loss: float
    reused: bool


def finetuned_dir_name(
    base_model: str,
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str]],
    config: FinetuneConfig,
) -> str:
    """A name that changes with the base model, the data, the labels and the config, so a
    retried Job reuses a finished fine-tune instead of spending another half hour on it."""
    digest = hashlib.sha256()
    digest.update(base_model.encode())
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    for text in texts:
        digest.update(text.encode("utf-8", "replace") + b"\0")
    for target in sorted(labels):
        digest.update(target.encode() + b"\1" + "\0".join(labels[target]).encode() + b"\1")
    return f"finetuned-{digest.hexdigest()[:16]}"


def default_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def finetune_encoder(
    base_model: str,
    texts: Sequence[str],
    labels: Mapping[str, Sequence[str]],
    out_dir: Path,
    *,
    config: FinetuneConfig = FinetuneConfig(),
    device: str | None = None,
    threads: int | None = None,
    show_progress: bool = True,
) -> FinetuneResult:
    """Fine-tune ``base_model`` on (``texts``, ``labels``) and save it to ``out_dir``.

    ``out_dir`` is written atomically; when it already holds a finished fine-tune it is
    reused as is. ``labels``: per target, one label per text.
    """
    stamp = out_dir / STAMP_FILE
    if stamp.is_file():
        info = json.loads(stamp.read_text("utf-8"))
        logger.info("reusing the fine-tuned encoder in %s", out_dir)
        return FinetuneResult(
            directory=out_dir,
            base_model=str(info.get("base_model", base_model)),
            seconds=0.0,
            device=str(info.get("device", "?")),
            final_loss=float(info.get("final_loss", math.nan)),
            reused=True,
        )
    if not texts:
        raise ValueError("fine-tuning needs at least one labelled text")
    for target, y in labels.items():
        if len(y) != len(texts):
            raise ValueError(f"target {target!r} has {len(y)} labels for {len(texts)} texts")
        if len(set(y)) < 2:
            raise ValueError(f"target {target!r} needs at least two classes to fine-tune on")

    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    device = device or default_device()
    source = resolve_model_source(base_model)
    if source != base_model:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = SentenceTransformer(source, device=device)
    model.max_seq_length = config.max_tokens
    dimension = int(model.get_embedding_dimension() or 0)

    targets = sorted(labels)
    classes = {t: sorted(set(labels[t])) for t in targets}
    index = {t: {c: i for i, c in enumerate(classes[t])} for t in targets}
    codes = {
        t: torch.tensor([index[t][v] for v in labels[t]], dtype=torch.long, device=device)
        for t in targets
    }
    weights = {}
    for t in targets:
        counts = torch.bincount(codes[t], minlength=len(classes[t])).float()
        weights[t] = counts.sum() / (len(counts) * counts.clamp(min=1.0))
    # Module names must not shadow nn.Module attributes ("type" is a target here).
    heads = torch.nn.ModuleDict(
        {f"head_{i}": torch.nn.Linear(dimension, len(classes[t])) for i, t in enumerate(targets)}
    ).to(device)
    head_of = {t: heads[f"head_{i}"] for i, t in enumerate(targets)}

    n = len(texts)
    steps_per_epoch = math.ceil(n / config.batch_size)
    steps = config.epochs * steps_per_epoch
    warmup = max(1, int(config.warmup * steps))
    optimizer = torch.optim.AdamW(
        [
            {"params": list(model.parameters()), "lr": config.learning_rate},
            {"params": list(heads.parameters()), "lr": config.head_learning_rate},
        ],
        weight_decay=0.01,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / steps)
    )
    autocast = device.startswith("cuda")
    # sentence-transformers 6 renamed tokenize to preprocess (and deprecated the old name).
    prepare = getattr(model, "preprocess", None) or model.tokenize
    started = time.perf_counter()
    loss_value = math.nan
    model.train()
    bar = progress(
        steps, desc=f"fine-tuning on {n} tickets", unit="step", disable=not show_progress
    )
    try:
        for _ in range(config.epochs):
            order = rng.permutation(n)
            for start in range(0, n, config.batch_size):
                rows = order[start : start + config.batch_size]
                tokens = prepare([texts[i] for i in rows])
                batch: dict[str, Any] = {
                    k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in tokens.items()
                }
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=autocast):
                    embedded = model(batch)["sentence_embedding"]
                embedded = torch.nn.functional.normalize(embedded.float(), dim=-1)
                chosen = torch.as_tensor(rows, device=device)
                loss = torch.stack(
                    [
                        torch.nn.functional.cross_entropy(
                            head_of[t](embedded) * config.logit_scale,
                            codes[t][chosen],
                            weight=weights[t].to(device),
                        )
                        for t in targets
                    ]
                ).sum()
                optimizer.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                torch.nn.utils.clip_grad_norm_(
                    [*model.parameters(), *heads.parameters()], max_norm=1.0
                )
                optimizer.step()
                scheduler.step()
                loss_value = float(loss.detach())
                bar.set_postfix_str(f"loss {loss_value:.3f}", refresh=False)
                bar.update(1)
    finally:
        bar.close()
    model.eval()
    seconds = time.perf_counter() - started
    with atomic_directory(out_dir) as work:
        model.save(str(work))
        (work / STAMP_FILE).write_text(
            json.dumps(
                {
                    "base_model": base_model,
                    "config": asdict(config),
                    "targets": {t: classes[t] for t in targets},
                    "tickets": n,
                    "device": device,
                    "seconds": round(seconds, 1),
                    "final_loss": loss_value,
                },
                indent=2,
            )
            + "\n",
            "utf-8",
        )
    logger.info(
        "fine-tuned %s on %d tickets in %.0f s on %s (final loss %.3f) into %s",
        base_model,
        n,
        seconds,
        device,
        loss_value,
        out_dir,
    )
    return FinetuneResult(
        directory=out_dir,
        base_model=base_model,
        seconds=seconds,
        device=device,
        final_loss=loss_value,
        reused=False,
    )
