"""Benchmark: which targets should send a ticket to the transformer? (issue #32, lever c)

    python -m bench.escalation [--datasets ../shared/datasets] [--target queue --target type
                                --target priority] [--agreement 0.97 ...]

On bueck-v3 (the split of ``ticketflow experiments``: stratified 80/20, seed 42), with the
default backend at ``EMBEDDING_MAX_TOKENS`` and the static model, fits both cascade stages as
``ticketflow train`` does (one per target, the same out-of-fold sample) and compares
escalation policies: every target's unsure answer escalates (the default), only the first
target's (the review gate's) does, and no cascade. For each: the share of tickets escalated
and the macro-F1 per target, out-of-fold on the training part (what a choice may be made
on) and on the test part (reported only). The thresholds are those :func:`add_first_stage`
picks for ``--agreement`` (several values: one row each). ``--no-block-grid`` fits the
block weights as built instead of choosing them by CV (half the fits; both stages alike).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import f1_score

from ticketflow.batch.embedding_cache import CachedEncoder
from ticketflow.batch.experiments import SEED, TEST_SIZE, default_datasets_dir
from ticketflow.batch.train import split_indices
from ticketflow.config import Settings
from ticketflow.data.datasets import ColumnMapping, load_labeled
from ticketflow.models.cascade import escalation_threshold
from ticketflow.models.classifier import apply_temperature
from ticketflow.models.encoders import encoders_root, load_encoder
from ticketflow.models.recipe import ModelConfig, fit_model
from ticketflow.models.static_encoder import StaticEncoder, ensure_static
from ticketflow.models.text import build_texts

REPO = Path(__file__).resolve().parents[1]


def policy_scores(
    first: Mapping[str, npt.NDArray[np.float64]],
    second: Mapping[str, npt.NDArray[np.float64]],
    thresholds: Mapping[str, float],
    escalating: Sequence[str],
    truth: Mapping[str, npt.NDArray[np.int64]],
) -> dict[str, Any]:
    """Escalated share and macro-F1 per target when the unsure answers of ``escalating``
    send a row to the second stage (probability matrices with the same class columns)."""
    n = len(next(iter(first.values())))
    escalate = np.zeros(n, dtype=bool)
    for target in escalating:
        escalate |= first[target].max(axis=1) < thresholds[target]
    f1 = {}
    for target, p1 in first.items():
        label = np.where(escalate, second[target].argmax(axis=1), p1.argmax(axis=1))
        f1[target] = float(f1_score(truth[target], label, average="macro"))
    return {"escalated_share": float(escalate.mean()), "macro_f1": f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=default_datasets_dir())
    parser.add_argument("--target", action="append", default=None)
    parser.add_argument("--agreement", type=float, action="append", default=None)
    parser.add_argument(
        "--block-grid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="choose block weights by CV as training does (--no-block-grid: half the fits)",
    )
    parser.add_argument(
        "--static-dir",
        type=Path,
        default=None,
        help="a model2vec directory to use as the first stage's encoder instead of the one "
        "distilled by default (lever d: another static model)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/escalation.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    targets = args.target or ["queue", "type", "priority"]
    settings = Settings()
    agreements = args.agreement or [settings.cascade_agreement]
    data = load_labeled(
        args.datasets / "bueck-v3" / "tickets.csv",
        targets=targets,
        mapping=ColumnMapping.parse([]),
        progress=False,
    )
    texts = build_texts(data.tickets, max_chars=settings.max_text_chars)
    train_idx, test_idx = split_indices(
        len(texts), data.labels[targets[0]], test_size=TEST_SIZE, seed=SEED
    )
    model_name = settings.embedding_model
    export_root = encoders_root(settings.model_registry_dir)
    cache_root = settings.cache_dir / "encoders"
    encoder = load_encoder(
        model_name,
        settings.embedding_backend,
        export_root=export_root,
        cache_root=cache_root,
        max_tokens=settings.embedding_max_tokens,
    )
    dense = CachedEncoder(encoder, settings.cache_dir / "embeddings").encode(
        texts, show_progress=True
    )
    static_dir = args.static_dir or ensure_static(model_name, export_root, cache_root=cache_root)
    static = StaticEncoder(static_dir, source_model=model_name).encode(texts)
    train_texts = [texts[i] for i in train_idx]
    test_texts = [texts[i] for i in test_idx]
    labels = {t: [data.labels[t][i] for i in train_idx] for t in targets}
    config = ModelConfig() if args.block_grid else ModelConfig(block_grid=())
    second, second_oof = fit_model(
        train_texts, dense[train_idx], labels, config=config, review=None, seed=SEED
    )
    first, first_oof = fit_model(
        train_texts,
        static[train_idx],
        labels,
        config=config,
        review=None,
        seed=SEED,
        text_blocks=second.features,
    )
    oof_p1 = {
        t: apply_temperature(first_oof[t].logits, first.temperatures.get(t, 1.0)) for t in targets
    }
    oof_p2 = {
        t: apply_temperature(second_oof[t].logits, second.temperatures.get(t, 1.0)) for t in targets
    }
    oof_truth = {
        t: np.asarray([second_oof[t].classes.index(v) for v in second_oof[t].labels_of(labels[t])])
        for t in targets
    }
    test_first = first.predict_proba(static[test_idx], test_texts)
    test_second = second.predict_proba(dense[test_idx], test_texts)
    test_truth = {
        t: np.asarray([second_oof[t].classes.index(data.labels[t][i]) for i in test_idx])
        for t in targets
    }
    policies = {
        "every target escalates": targets,
        f"only {targets[0]} escalates": targets[:1],
        "no cascade (transformer on every ticket)": None,
    }
    rows: list[dict[str, Any]] = []
    for agreement in agreements:
        thresholds = {
            t: escalation_threshold(oof_p1[t], oof_p2[t], agreement=agreement)[0] for t in targets
        }
        for name, escalating in policies.items():
            # No cascade: a threshold above every probability escalates every row.
            cut = thresholds if escalating is not None else dict.fromkeys(targets, 2.0)
            chosen = escalating if escalating is not None else targets
            row = {
                "agreement": agreement,
                "policy": name,
                "thresholds": thresholds,
                "oof": policy_scores(oof_p1, oof_p2, cut, chosen, oof_truth),
                "test": policy_scores(test_first, test_second, cut, chosen, test_truth),
            }
            rows.append(row)
            print(
                f"agreement {agreement:.2f} | {name:42s} | "
                + " | ".join(
                    f"{part} escalated {row[part]['escalated_share']:.3f} "
                    + " ".join(f"{t} {f:.4f}" for t, f in row[part]["macro_f1"].items())
                    for part in ("oof", "test")
                ),
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"targets": targets, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
