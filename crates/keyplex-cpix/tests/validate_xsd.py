#!/usr/bin/env python3
"""Validate CPIX documents written by keyplex-cpix against the official DASH-IF schemas.

Usage: validate_xsd.py SAMPLES_DIR [SCHEMA_ROOT]

Every *.xml file in SAMPLES_DIR is validated against SCHEMA_ROOT/schema-2.4/cpix.xsd when its
root element has version="2.4", else against SCHEMA_ROOT/schema-2.3/cpix.xsd (CPIX 2.3, and the
2.0-era documents without a version). SCHEMA_ROOT defaults to /work/shared/vectors/cpix.
The samples are produced by `cargo test -p keyplex-cpix writes_schema_samples` (see
writer.rs). Exit status 0 only when every file validates and there is at least one file.
Needs lxml (e.g. python3 -m venv /work/venv-cpix && /work/venv-cpix/bin/pip install lxml).
"""
import pathlib
import sys

from lxml import etree


def main() -> int:
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    samples = pathlib.Path(sys.argv[1])
    schema_root = pathlib.Path(sys.argv[2] if len(sys.argv) == 3 else "/work/shared/vectors/cpix")
    schemas = {
        v: etree.XMLSchema(etree.parse(str(schema_root / f"schema-{v}" / "cpix.xsd")))
        for v in ("2.3", "2.4")
    }
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    files = sorted(samples.glob("*.xml"))
    failures = 0
    for path in files:
        doc = etree.parse(str(path), parser)
        version = "2.4" if doc.getroot().get("version") == "2.4" else "2.3"
        schema = schemas[version]
        if schema.validate(doc):
            continue
        failures += 1
        print(f"INVALID ({version}) {path.name}:")
        for err in schema.error_log:
            print(f"  line {err.line}: {err.message}")
    print(f"{len(files) - failures}/{len(files)} documents valid")
    return 0 if files and failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
