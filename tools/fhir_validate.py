#!/usr/bin/env python3
"""Validates a FHIR Bundle (JSON) against the FHIR R4 (4.0.1) model.

Usage: fhir_validate.py BUNDLE.json

Every entry's resource is parsed with the class of its resourceType from
fhir.resources 6.1.0 -- the last release whose models are R4 4.0.1 (6.2+ and
7+ are R4B 4.3.0 and R5) -- and so is the Bundle itself. Also checked: every
fullUrl is unique, and every `reference` inside the Bundle resolves to an
entry's fullUrl. Prints one JSON line {"resources": N, "by_type": {...}} and
exits 0; on any failure prints what failed and exits 1. Exits 3 when the
installed fhir.resources is not the R4 4.0.1 one (tools/test.sh installs it
in its own virtual environment: pydantic 1 beside the system's pydantic 2).
"""
import json
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import fhir.resources
        from fhir.resources import get_fhir_model_class
        import fhir.resources.observation as obs_mod
    except Exception as e:  # noqa: BLE001 - report any import failure
        print(f"fhir.resources is not importable: {e}", file=sys.stderr)
        return 3
    doc = obs_mod.__doc__ or ""
    if "Version: 4.0.1" not in doc:
        print(
            f"fhir.resources {fhir.resources.__version__} is not FHIR R4 4.0.1 "
            "(install fhir.resources==6.1.0 with pydantic<2)",
            file=sys.stderr,
        )
        return 3
    with open(sys.argv[1], encoding="utf-8") as f:
        bundle = json.load(f)
    errors = []
    by_type = {}
    urls = set()
    entries = bundle.get("entry", [])
    for i, e in enumerate(entries):
        url = e.get("fullUrl")
        if url in urls:
            errors.append(f"entry {i}: duplicate fullUrl {url}")
        urls.add(url)
        res = e.get("resource", {})
        rt = res.get("resourceType")
        try:
            cls = get_fhir_model_class(rt)
            cls.parse_obj(res)
        except Exception as ex:  # noqa: BLE001 - every validation error counts
            errors.append(f"entry {i} ({rt}): {ex}")
            continue
        by_type[rt] = by_type.get(rt, 0) + 1

    def refs(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "reference" and isinstance(x, str):
                    yield x
                else:
                    yield from refs(x)
        elif isinstance(v, list):
            for x in v:
                yield from refs(x)

    # The models check types, cardinality and required elements, not the
    # string patterns: SampledData.data is checked here against R4's
    # definition (decimals, or E/U/L, separated by single spaces).
    import re

    sample = re.compile(r"^(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?|[EUL])$")

    def sampled(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if k == "valueSampledData" and isinstance(x, dict) and "data" in x:
                    yield x["data"]
                else:
                    yield from sampled(x)
        elif isinstance(v, list):
            for x in v:
                yield from sampled(x)

    for i, e in enumerate(entries):
        for data in sampled(e.get("resource", {})):
            bad = [t for t in str(data).split(" ") if not sample.match(t)]
            if bad:
                errors.append(f"entry {i}: SampledData.data holds {bad[:3]!r}, not decimals")
        for r in refs(e.get("resource", {})):
            if r not in urls:
                errors.append(f"entry {i}: reference {r} resolves to no entry")
    try:
        get_fhir_model_class("Bundle").parse_obj(bundle)
    except Exception as ex:  # noqa: BLE001
        errors.append(f"Bundle: {ex}")
    if errors:
        for e in errors[:50]:
            print(e, file=sys.stderr)
        print(f"{len(errors)} error(s)", file=sys.stderr)
        return 1
    print(json.dumps({"resources": sum(by_type.values()), "by_type": by_type,
                      "fhir_resources": fhir.resources.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
