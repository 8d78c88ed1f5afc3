//! QEMU's own vmdescs (the golden streams and their `.desc.json` files) parse into exactly what a
//! plain `serde_json::Value` walk gives; the vmdescs this crate writes print back byte for byte.
//! (QEMU's do not: it writes the members of a `tmp` field's struct inline in the field entry,
//! which [`DescField`] does not model.)

use std::borrow::Cow;
use std::path::PathBuf;

use examples_devices::machine::DemoMachine;
use serde_json::Value;
use vmstate_runtime::decode_stream;
use vmstate_runtime::vmdesc::{
    parse_vmdesc, write_json, DescArray, DescBody, DescDevice, DescField, DescStruct, Vmdesc,
};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/qemu72")
}

/// The reference reading: the whole document as a `Value`, then the same rules the parser
/// documents (unknown members ignored, `array_len` before `index`, `page_size` 4096 by default).
fn reference(json: &[u8]) -> Vmdesc {
    fn strukt(v: &Value) -> DescStruct {
        let fields = v["fields"].as_array().map_or_else(Vec::new, |fs| {
            fs.iter()
                .map(|f| DescField {
                    name: Cow::Owned(f["name"].as_str().unwrap().to_owned()),
                    array: f["array_len"]
                        .as_u64()
                        .map(DescArray::Len)
                        .or_else(|| f["index"].as_u64().map(DescArray::Index)),
                    ty: Cow::Owned(f["type"].as_str().unwrap().to_owned()),
                    strukt: f.get("struct").map(|s| Box::new(strukt(s))),
                    size: f["size"].as_u64().unwrap(),
                    // A description written into the field object (QEMU's `tmp`, `qtailq`, `qlist`,
                    // `gtree`). Lists and trees repeat those members, which a `Value` cannot hold;
                    // the golden streams have only `tmp` entries, with one each
                    // (tests/field_kinds.rs covers the repeated form).
                    elems: if f.get("vmsd_name").is_some() {
                        vec![strukt(f)]
                    } else {
                        Vec::new()
                    },
                })
                .collect()
        });
        DescStruct {
            vmsd_name: Cow::Owned(v["vmsd_name"].as_str().unwrap().to_owned()),
            version: u32::try_from(v["version"].as_u64().unwrap()).unwrap(),
            fields,
            subsections: v["subsections"]
                .as_array()
                .map_or_else(Vec::new, |s| s.iter().map(strukt).collect()),
            size: 0,
        }
    }
    let v: Value = serde_json::from_slice(json).unwrap();
    Vmdesc {
        configuration: v.get("configuration").cloned(),
        page_size: v["page_size"].as_u64().unwrap_or(4096),
        devices: v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| DescDevice {
                name: d["name"].as_str().unwrap().to_owned(),
                instance_id: u32::try_from(d["instance_id"].as_u64().unwrap()).unwrap(),
                body: if d.get("vmsd_name").is_some() {
                    DescBody::Vmsd(strukt(d))
                } else {
                    DescBody::Raw(d.clone())
                },
            })
            .collect(),
        manifest: v.get("vmstate-manifest").cloned(),
    }
}

#[test]
fn qemu_vmdescs_parse_as_before_and_print_back_identically() {
    let mut files: Vec<_> = std::fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut streams, mut descs) = (0, 0);
    for path in files {
        let name = path.display();
        let bytes = std::fs::read(&path).unwrap();
        let json = if path.extension().is_some_and(|e| e == "mig") {
            let Ok(d) = decode_stream(&bytes) else {
                continue; // pc-i440fx-2.2 has no vmdesc
            };
            let Some((range, parsed)) = d.vmdesc else {
                continue;
            };
            // `06 · be32 len · json`.
            let json = bytes[range.start + 5..range.end].to_vec();
            assert_eq!(parsed, reference(&json), "{name}");
            streams += 1;
            json
        } else if path.to_string_lossy().ends_with(".desc.json") {
            descs += 1;
            bytes
        } else {
            continue;
        };
        assert_eq!(parse_vmdesc(&json).unwrap(), reference(&json), "{name}");
    }
    assert!(
        streams >= 9 && descs >= 9,
        "{streams} streams, {descs} descs"
    );
}

#[test]
fn our_vmdescs_print_back_byte_for_byte() {
    let cat = examples_devices::catalog();
    for m in ["pc-i440fx-7.2", "pc-q35-7.2", "pc-i440fx-2.3"] {
        let machine = DemoMachine::new(&cat.resolve(m).unwrap()).unwrap();
        machine.run_guest_program();
        let (bytes, report) = machine.save().unwrap();
        let n = usize::try_from(report.vmdesc_len.unwrap()).unwrap();
        let json = &bytes[bytes.len() - n..];
        let parsed = parse_vmdesc(json).unwrap();
        assert_eq!(parsed, reference(json), "{m}");
        assert_eq!(write_json(&parsed).as_bytes(), json, "{m}");
    }
}
