#!/usr/bin/env python3
"""Convert the official FHIRPath Patch test cases (XML) into FHIR JSON.

The Rust test (crates/hearth-fhirpath/tests/fhirpath_patch.rs) reads only the
files written here, so the build needs no XML parser and no FHIR model beyond
this folder.

Usage:
    python3 convert.py /work/shared/data/fhir-patch-tests/fhir-patch-tests.xml \
        ../../crates/hearth-fhir/data/r4-model.json

Writes, next to this script:
    cases.json          [{name, mode, notes?, input, patch, output | error}]
    repeating-r4.tsv    every R4 element whose max cardinality is `*`, keyed the
                        way the FHIRPath engine names definitions
                        (`Patient` / `Patient.contact`, tab, element name)

XML -> JSON follows the FHIR JSON rules: `value` attributes become primitives
typed by the element's FHIR type (boolean, integer, decimal -> JSON bool /
number), elements whose max cardinality is `*` become arrays, `id` and
`extension` of primitives go into the `_name` sibling (arrays padded with
null), resources keep their `resourceType`, and an xhtml `div` becomes its
XML text.
"""

import json
import os
import sys
import xml.etree.ElementTree as ET

FHIR = "{http://hl7.org/fhir}"
XHTML = "{http://www.w3.org/1999/xhtml}"
HERE = os.path.dirname(os.path.abspath(__file__))

NUMBER_TYPES = {"integer", "positiveInt", "unsignedInt", "decimal"}


class Model:
    def __init__(self, path):
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
        self.types = {}
        for t in raw["types"]:
            self.types[t["name"]] = {
                "kind": t["kind"],
                "base": t.get("base"),
                "elements": {e["path"]: e for e in t.get("elements", [])},
            }

    def kind(self, type_name):
        t = self.types.get(type_name)
        return t["kind"] if t else None

    def lookup(self, type_name, prefix, name):
        """(element definition, concrete type, child scope) of child `name`."""
        t = self.types[type_name]
        path = f"{prefix}.{name}" if prefix else name
        e = t["elements"].get(path)
        if e is not None:
            if "contentReference" in e:
                return e, "BackboneElement", (type_name, e["contentReference"])
            ty = e["types"][0]
            if ty.startswith("Reference("):
                ty = "Reference"
            if ty in ("BackboneElement", "Element") and any(
                p.startswith(path + ".") for p in t["elements"]
            ):
                return e, ty, (type_name, path)
            return e, ty, (ty, "")
        # Choice element: `valueString` is `value[x]` with type `string`.
        for p, e in t["elements"].items():
            if not p.endswith("[x]"):
                continue
            base = p[:-3]
            if not path.startswith(base) or path == base:
                continue
            suffix = path[len(base):]
            for ty in e["types"]:
                if ty[0].upper() + ty[1:] == suffix:
                    return e, ty, (ty, "")
        raise KeyError(f"{type_name}.{path}")

    def repeating(self):
        rows = []
        for name, t in sorted(self.types.items()):
            for path, e in t["elements"].items():
                if e["max"] != "*":
                    continue
                parent, _, leaf = path.rpartition(".")
                key = f"{name}.{parent}" if parent else name
                rows.append((key, leaf.replace("[x]", "")))
        return sorted(set(rows))


def local(tag):
    return tag.split("}", 1)[-1]


def children(el):
    return [c for c in el if isinstance(c.tag, str)]


def xhtml_text(el, root=True):
    """Serialise an xhtml element as FHIR JSON carries it."""

    def esc(s, attr=False):
        s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return s.replace('"', "&quot;") if attr else s

    tag = local(el.tag)
    out = [f"<{tag}"]
    if root:
        out.append(' xmlns="http://www.w3.org/1999/xhtml"')
    for k, v in el.attrib.items():
        out.append(f' {local(k)}="{esc(v, True)}"')
    out.append(">")
    out.append(esc(el.text or ""))
    for c in el:
        if isinstance(c.tag, str):
            out.append(xhtml_text(c, False))
        out.append(esc(c.tail or ""))
    out.append(f"</{tag}>")
    return "".join(out)


def primitive(type_name, value):
    if type_name == "boolean":
        return value == "true"
    if type_name in ("integer", "positiveInt", "unsignedInt"):
        return int(value)
    if type_name == "decimal":
        f = float(value)
        return int(f) if f.is_integer() and "." not in value and "e" not in value.lower() else f
    return value


def convert_resource(model, el):
    rtype = local(el.tag)
    out = {"resourceType": rtype}
    fill(model, el, (rtype, ""), out)
    return out


def convert_element(model, el, ty, scope):
    """(value, extension object or None) of one element occurrence."""
    if ty == "Resource":
        inner = children(el)
        if len(inner) != 1:
            raise ValueError(f"resource element {local(el.tag)} must hold one resource")
        return convert_resource(model, inner[0]), None
    if ty == "xhtml":
        return xhtml_text(el), None
    if model.kind(ty) == "primitive-type":
        value = primitive(ty, el.attrib["value"]) if "value" in el.attrib else None
        ext = {}
        if "id" in el.attrib:
            ext["id"] = el.attrib["id"]
        fill(model, el, ("Element", ""), ext)
        return value, (ext or None)
    obj = {}
    for attr in ("id", "url"):
        if attr in el.attrib:
            obj[attr] = el.attrib[attr]
    fill(model, el, scope, obj)
    return obj, None


def fill(model, el, scope, out):
    type_name, prefix = scope
    for child in children(el):
        name = local(child.tag)
        e, ty, child_scope = model.lookup(type_name, prefix, name)
        value, ext = convert_element(model, child, ty, child_scope)
        if e["max"] == "*":
            arr = out.setdefault(name, [])
            arr.append(value)
            if ext is not None or f"_{name}" in out:
                exts = out.setdefault(f"_{name}", [])
                exts.extend([None] * (len(arr) - 1 - len(exts)))
                exts.append(ext)
        else:
            if name in out:
                raise ValueError(f"{name} repeats but has max 1")
            if value is not None:
                out[name] = value
            if ext is not None:
                out[f"_{name}"] = ext
    # Pad extension arrays to the length of their values.
    for key in list(out):
        if key.startswith("_") and isinstance(out[key], list):
            out[key].extend([None] * (len(out.get(key[1:], [])) - len(out[key])))


def single_resource(container):
    inner = children(container)
    if len(inner) != 1:
        raise ValueError(f"<{local(container.tag)}> must hold exactly one resource")
    return inner[0]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, model_path = sys.argv[1], sys.argv[2]
    model = Model(model_path)
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True))
    root = ET.parse(source, parser).getroot()
    cases = []
    for case in root.iter("case"):
        entry = {"name": case.attrib["name"], "mode": case.attrib.get("mode", "both")}
        notes = [c.text.strip() for c in case if c.tag is ET.Comment and c.text and c.text.strip()]
        if notes:
            entry["notes"] = "; ".join(notes)
        for part in children(case):
            tag = local(part.tag)
            if tag == "input":
                entry["input"] = convert_resource(model, single_resource(part))
            elif tag == "diff":
                entry["patch"] = convert_resource(model, single_resource(part))
            elif tag == "output":
                entry["output"] = convert_resource(model, single_resource(part))
            elif tag == "error":
                entry["error"] = part.attrib.get("msg", "")
            else:
                raise ValueError(f"unknown case element <{tag}>")
        if "input" not in entry or "patch" not in entry or ("output" in entry) == ("error" in entry):
            raise ValueError(f"case {entry['name']!r} is incomplete")
        cases.append(entry)
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(HERE, "repeating-r4.tsv"), "w", encoding="utf-8") as f:
        f.write("# Derived by convert.py from r4-model.json: elements with max cardinality *; do not edit.\n")
        for key, name in model.repeating():
            f.write(f"{key}\t{name}\n")
    print(f"{len(cases)} cases")


if __name__ == "__main__":
    main()
