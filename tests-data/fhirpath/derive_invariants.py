#!/usr/bin/env python3
"""Extract the distinct FHIRPath invariant expressions of the R4 core
StructureDefinitions (snapshot element constraints).

Usage:
    python3 derive_invariants.py DEFS_DIR
where DEFS_DIR holds profiles-types.json and profiles-resources.json.

Writes invariant-expressions.tsv next to this script: <key> TAB <first
element path using it> TAB <expression>, one line per distinct expression.
"""

import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    seen = {}
    for name in ("profiles-types.json", "profiles-resources.json"):
        with open(os.path.join(sys.argv[1], name), encoding="utf-8") as fh:
            bundle = json.load(fh)
        for entry in bundle["entry"]:
            sd = entry["resource"]
            for el in sd.get("snapshot", {}).get("element", []):
                for c in el.get("constraint", []):
                    expr = c.get("expression")
                    if expr:
                        seen.setdefault(" ".join(expr.split()), (c["key"], el["path"]))
    here = os.path.dirname(os.path.abspath(__file__))
    rows = sorted(seen.items(), key=lambda kv: kv[1])
    with open(os.path.join(here, "invariant-expressions.tsv"), "w", encoding="utf-8") as out:
        for expr, (key, path) in rows:
            out.write("%s\t%s\t%s\n" % (key, path, expr))
    print("wrote %d expressions" % len(rows))


if __name__ == "__main__":
    main()
