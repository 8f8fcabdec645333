#!/usr/bin/env python3
"""Derives pddi-valuesets.json from the HL7 PDDI-CDS guide (CC0-1.0).

Run from this directory with the guide's `input/` folder as the argument:
    python3 derive_pddi.py /path/to/hl7-pddi-cds/input
It reads the two value-set bundles of the guide's artifacts (warfarin-NSAIDs, digoxin-cyclosporine)
and the guide's misoprostol value set, keeps the RxNorm ones, and writes each as
{id, title, url, members (for a class: its ingredient value sets), codes: [[code, display]]}.
"""
import json
import sys
import xml.etree.ElementTree as ET

NS = {"f": "http://hl7.org/fhir"}
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def sets(path):
    root = ET.parse(path).getroot()
    for vs in root.iter("{http://hl7.org/fhir}ValueSet"):
        vid = vs.find("f:id", NS).get("value")
        title = vs.find("f:title", NS)
        url = vs.find("f:url", NS).get("value")
        codes, members, systems = [], [], set()
        for inc in vs.iter("{http://hl7.org/fhir}include"):
            sysel = inc.find("f:system", NS)
            if sysel is not None:
                systems.add(sysel.get("value"))
            for c in inc.findall("f:concept", NS):
                d = c.find("f:display", NS)
                codes.append([c.find("f:code", NS).get("value"), " ".join(d.get("value").split()) if d is not None else ""])
            for v in inc.findall("f:valueSet", NS):
                members.append(v.get("value").rsplit("/", 1)[-1])
        if codes and systems != {RXNORM}:
            continue
        yield vid, {"id": vid, "title": title.get("value") if title is not None else vid, "url": url,
                    "members": members, "codes": sorted(codes)}


def main():
    base = sys.argv[1]
    out = {}
    for p in ["images/artifacts/warfarin-nsaids/valueset-bundle.xml",
              "images/artifacts/digoxin-cyclosporine/valueset-bundle.xml",
              "vocabulary/valueset-misoprostol.xml"]:
        for vid, v in sets(f"{base}/{p}"):
            out[vid] = v
    doc = {"source": "HL7 PDDI-CDS implementation guide (http://hl7.org/fhir/uv/pddi/), CC0-1.0; "
                     "value sets of its warfarin-NSAIDs and digoxin-cyclosporine artifacts and its misoprostol value set",
           "value_sets": [out[k] for k in sorted(out)]}
    with open("pddi-valuesets.json", "w") as f:
        json.dump(doc, f, indent=0, ensure_ascii=False)
        f.write("\n")


main()
