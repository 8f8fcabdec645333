#!/usr/bin/env python3
"""Convert the fhirpath.js conformance suite (YAML) into one JSON file.

The Rust conformance test (crates/hearth-fhirpath/tests/conformance.rs) reads
only the JSON written here, so the build needs no YAML parser.

Usage:
    python3 convert_cases.py /work/shared/data/fhirpath-tests

Writes, next to this script:
    cases.json      every test case, flattened (groups become a name path)
    resources/      the JSON input resources the cases refer to
    LICENSE.md      the suite's licence (BSD-style, must travel with the data)
    LICENSE-hl7-fhir-test-cases.txt  licence of the HL7 tests inside fhir-r4.yaml

Needs PyYAML (`pip install pyyaml`); only this script does.
"""

import json
import os
import shutil
import sys

import yaml


class NoDatesLoader(yaml.SafeLoader):
    """SafeLoader that keeps YAML timestamps as plain strings."""


NoDatesLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def is_group(entry):
    return isinstance(entry, dict) and any(str(k).startswith("group") for k in entry)


def walk(entries, file_name, group_path, group_disabled, out):
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if is_group(entry):
            name = next(k for k in entry if str(k).startswith("group"))
            disabled = group_disabled or bool(entry.get("disable"))
            walk(entry[name] or [], file_name, group_path + [str(name)], disabled, out)
            continue
        if "expression" not in entry:
            continue  # section headers ("desc" only)
        expressions = entry["expression"]
        if not isinstance(expressions, list):
            expressions = [expressions]
        for expression in expressions:
            case = {
                "file": file_name,
                "group": " / ".join(group_path),
                "desc": entry.get("desc") or entry.get("description") or "",
                "expression": str(expression),
                "disabled": group_disabled or bool(entry.get("disable")),
            }
            for key in ("inputfile", "model", "context", "variables"):
                if key in entry:
                    case[key] = entry[key]
            if entry.get("error"):
                case["error"] = True
            else:
                case["result"] = entry.get("result", [])
            out.append(case)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    cases_dir = os.path.join(src, "test", "cases")
    cases = []
    subjects = {}
    for name in sorted(os.listdir(cases_dir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(cases_dir, name), encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=NoDatesLoader)
        if data.get("subject") is not None:
            subjects[name] = data["subject"]
        walk(data.get("tests") or [], name, [], False, cases)
    # A stable id per case: file + ordinal within the file.
    counters = {}
    for case in cases:
        n = counters.get(case["file"], 0) + 1
        counters[case["file"]] = n
        case["id"] = "%s#%d" % (case["file"][: -len(".yaml")], n)
    with open(os.path.join(here, "cases.json"), "w", encoding="utf-8") as fh:
        json.dump({"subjects": subjects, "cases": cases}, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    res_src = os.path.join(src, "test", "resources", "r4")
    res_dst = os.path.join(here, "resources")
    if os.path.isdir(res_dst):
        shutil.rmtree(res_dst)
    shutil.copytree(res_src, res_dst)
    os.chmod(res_dst, 0o755)
    for root, dirs, files in os.walk(res_dst):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    shutil.copyfile(os.path.join(src, "LICENSE.md"), os.path.join(here, "LICENSE.md"))
    os.chmod(os.path.join(here, "LICENSE.md"), 0o644)
    # fhir-r4.yaml is derived from the HL7 FHIR test cases: keep their licence too.
    hl7 = os.path.join(src, "hl7-fhir-test-cases", "LICENSE.txt")
    if os.path.exists(hl7):
        dst = os.path.join(here, "LICENSE-hl7-fhir-test-cases.txt")
        shutil.copyfile(hl7, dst)
        os.chmod(dst, 0o644)
    print("wrote %d cases" % len(cases))


if __name__ == "__main__":
    main()
