#!/usr/bin/env python3
"""Extract every FHIRPath expression from the R4 SearchParameter bundle.

Usage:
    python3 derive_search_expressions.py /work/shared/data/fhir-r4/search-parameters.json

Writes search-parameter-expressions.tsv next to this script, one search
parameter per line: <id> TAB <type> TAB <comma-separated bases> TAB <expression>.
Newlines inside an expression are folded to spaces (FHIRPath treats them as
whitespace).
"""

import json
import os
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    with open(sys.argv[1], encoding="utf-8") as fh:
        bundle = json.load(fh)
    rows = []
    for entry in bundle.get("entry", []):
        sp = entry.get("resource", {})
        expr = sp.get("expression")
        if not expr:
            continue
        expr = " ".join(expr.split())
        rows.append((sp["id"], sp.get("type", ""), ",".join(sp.get("base", [])), expr))
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "search-parameter-expressions.tsv"), "w", encoding="utf-8") as out:
        for row in rows:
            out.write("\t".join(row) + "\n")
    print("wrote %d expressions" % len(rows))


if __name__ == "__main__":
    main()
