#!/usr/bin/env python3
"""Writes compat-checker/tests/qemu-fixtures/<rule>/{old,new}.json: for every `qemu-*` rule a
minimal pair of -dump-vmstate files (old = SRC, the older release; new = DST) whose comparison
triggers that rule. The snapshots of `cargo compat-check qemu-dump old.json new.json` are in
compat-checker/tests/snapshots/<rule>.txt (UPDATE_SNAPSHOTS=1 cargo test -p compat-checker
--test rules rewrites them). Run from the workspace root; review the diff."""

import copy
import json
import os


def field(name, version=0, size=1, exists=False, **extra):
    f = {"field": name, "version_id": version, "field_exists": exists, "size": size}
    f.update(extra)
    return f


BASE = {
    "vmschkmachine": {"Name": "pc-i440fx-7.2"},
    "isa-serial": {
        "Name": "isa-serial",
        "version_id": 3,
        "minimum_version_id": 2,
        "Description": {
            "name": "serial",
            "version_id": 3,
            "minimum_version_id": 2,
            "Fields": [
                field("divider", version=2, size=2),
                field("rbr"),
                field("regs", num=4),
                field("unused", size=2),
                field(
                    "fifo",
                    size=16,
                    Description={
                        "name": "fifo8",
                        "version_id": 1,
                        "minimum_version_id": 1,
                        "Fields": [field("data", size=16)],
                    },
                ),
            ],
            "Subsections": [
                {
                    "name": "serial/tsr",
                    "version_id": 1,
                    "minimum_version_id": 1,
                    "Fields": [field("tsr_retry", size=4)],
                }
            ],
        },
    },
    "hpet": {
        "Name": "hpet",
        "version_id": 2,
        "minimum_version_id": 1,
        "Description": {
            "name": "hpet",
            "version_id": 2,
            "minimum_version_id": 1,
            "Fields": [field("config", size=8)],
        },
    },
}


def serial(d):
    return d["isa-serial"]["Description"]


def fields(d):
    return serial(d)["Fields"]


def find(d, name):
    return next(f for f in fields(d) if f["field"] == name)


def set_versions(d, version=None, minimum=None):
    for o in (d["isa-serial"], serial(d)):
        if version is not None:
            o["version_id"] = version
        if minimum is not None:
            o["minimum_version_id"] = minimum


def section_missing(old, new):
    del new["hpet"]


def version_too_new(old, new):
    set_versions(new, version=4)


def minimum_version(old, new):
    set_versions(new, version=4, minimum=4)


def entry_missing(old, new):
    del new["isa-serial"]["minimum_version_id"]


def description_renamed(old, new):
    serial(new)["name"] = "uart"


def field_mismatch(old, new):
    find(new, "rbr")["field"] = "rx"


def unused_size_mismatch(old, new):
    f = find(new, "rbr")
    f["field"] = "unused"
    f["size"] = 2


def dest_runs_out_of_fields(old, new):
    fields(new).pop()


def field_size_mismatch(old, new):
    find(new, "divider")["size"] = 4


def missing_description(old, new):
    del find(new, "fifo")["Description"]


def subsection_missing(old, new):
    serial(new)["Subsections"] = []


def field_appended(old, new):
    fields(new).append(field("lsr"))


def conditional_field_appended(old, new):
    fields(new).append(field("lsr", exists=True))


def field_presence_changed(old, new):
    find(new, "divider")["version_id"] = 4


def array_length_changed(old, new):
    find(new, "regs")["num"] = 8


def machine_mismatch(old, new):
    new["vmschkmachine"]["Name"] = "pc-i440fx-8.0"


CASES = [
    section_missing,
    version_too_new,
    minimum_version,
    entry_missing,
    description_renamed,
    field_mismatch,
    unused_size_mismatch,
    dest_runs_out_of_fields,
    field_size_mismatch,
    missing_description,
    subsection_missing,
    field_appended,
    conditional_field_appended,
    field_presence_changed,
    array_length_changed,
    machine_mismatch,
]

if __name__ == "__main__":
    root = "compat-checker/tests/qemu-fixtures"
    for case in CASES:
        rule = "qemu-" + case.__name__.replace("_", "-")
        old, new = copy.deepcopy(BASE), copy.deepcopy(BASE)
        case(old, new)
        os.makedirs(os.path.join(root, rule), exist_ok=True)
        for name, dump in (("old.json", old), ("new.json", new)):
            with open(os.path.join(root, rule, name), "w") as f:
                json.dump(dump, f, indent=2)
                f.write("\n")
