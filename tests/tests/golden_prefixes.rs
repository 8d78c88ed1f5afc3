//! Every prefix of every golden QEMU 7.2 stream fails cleanly in the generic decoder: an error
//! with an offset inside the prefix, never a panic. Every prefix is tried around the framing,
//! the RAM chunk boundaries and EOF of every stream, and inside the serial/i8254/mc146818rtc
//! sections of three streams that cover all framings and subsections; elsewhere every 2999th.
//! (The typed devices' tests cut every golden section at every byte.)

use std::path::Path;

use vmstate_runtime::decode::{decode_stream, decode_stream_with};

#[test]
fn every_prefix_of_every_golden_stream_fails_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden/qemu72");
    let mut streams: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "mig"))
        .collect();
    streams.sort();
    assert!(streams.len() >= 10);
    // The 2.2 stream has no vmdesc of its own; decode it with the 2.3 one, as a tool would.
    let v23 = decode_stream(&std::fs::read(dir.join("machine-pc-i440fx-2.3.mig")).unwrap())
        .unwrap()
        .vmdesc
        .unwrap()
        .1;
    let mut tried = 0usize;
    for p in streams {
        let bytes = std::fs::read(&p).unwrap();
        let ext = p.to_string_lossy().contains("2.2").then_some(&v23);
        let full = decode_stream_with(&bytes, ext).unwrap();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let devices =
            ["uart-xmit.mig", "rtc-slew.mig", "machine-pc-i440fx-2.3.mig"].contains(&name.as_str());
        let mut interesting: Vec<std::ops::Range<usize>> = Vec::new();
        interesting.push(0..64);
        for s in &full.sections {
            let device = ["serial", "i8254", "mc146818rtc"].contains(&s.idstr.as_str());
            if (devices && device) || s.kind != vmstate_runtime::decode::SectionKind::Full {
                let r =
                    s.full_range.start.saturating_sub(2)..(s.full_range.end + 2).min(bytes.len());
                if s.kind == vmstate_runtime::decode::SectionKind::Full {
                    interesting.push(r);
                } else {
                    // RAM chunk headers and ends only.
                    interesting.push(r.start..(r.start + 64).min(r.end));
                    interesting.push(r.end.saturating_sub(64)..r.end);
                }
            }
        }
        interesting
            .push(full.eof_offset.saturating_sub(8)..(full.eof_offset + 16).min(bytes.len()));
        let end_of_data = full.vmdesc.as_ref().map_or(bytes.len(), |v| v.0.start);
        for n in 0..end_of_data {
            if n % 2999 != 0 && !interesting.iter().any(|r| r.contains(&n)) {
                continue;
            }
            tried += 1;
            // A cut right after EOF is a complete stream without its (optional) vmdesc.
            match decode_stream_with(&bytes[..n], ext.or(full.vmdesc.as_ref().map(|v| &v.1))) {
                Err(e) => assert!(
                    e.offset().is_none_or(|o| o <= n as u64),
                    "{}: prefix {n}: offset beyond the prefix: {e}",
                    p.display()
                ),
                Ok(_) => assert_eq!(
                    n,
                    full.eof_offset + 1,
                    "{}: prefix {n} decoded",
                    p.display()
                ),
            }
        }
    }
    assert!(tried > 2_000, "{tried}");
}
