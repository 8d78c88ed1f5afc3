//! Save: one FULL section per device through the [`StreamWriter`].

use super::{section_ref, Registry, SaveReport, SectionInfo, SectionKey};
use crate::context::{GateCtx, SaveCx};
use crate::error::{Error, ErrorKind, Result};
use crate::machine::MachineType;
use crate::stream::StreamWriter;
use crate::vmdesc::{self, DescBody, DescDevice, Vmdesc};
use crate::writer::Writer;

use std::sync::atomic::Ordering;

impl Registry {
    /// Saves every device into a whole stream for `machine`.
    ///
    /// The stream is built in memory and written to `w` in one piece at the end; on error
    /// nothing is written. Section versions are `SCHEMA.version_for(machine)` (machine-pinned
    /// versions); section ids count from 0 in stream order. Error offsets are stream offsets.
    ///
    /// # Errors
    /// Any error of a device's save (named by its section), and writer errors.
    pub fn save<W: Writer + ?Sized>(&self, machine: &MachineType, w: &mut W) -> Result<SaveReport> {
        let (buf, mut report) = self.save_to_vec(machine)?;
        w.write_all(&buf)?;
        report.total_bytes = buf.len() as u64;
        Ok(report)
    }

    /// Saves every device into a new buffer; see [`save`](Self::save).
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_to_vec(&self, machine: &MachineType) -> Result<(Vec<u8>, SaveReport)> {
        let mut s = StreamWriter::for_machine(self.save_buffer(), machine);
        s.prologue(machine.name())?;
        let report = self.write_sections(machine, &mut s, 0, None)?;
        Ok((s.into_inner(), report))
    }

    /// Saves every device, appending the whole stream to `out` (a buffer the caller reuses from
    /// save to save, so its memory is not fresh each time); see [`save`](Self::save). Offsets in
    /// the report are positions in `out`. On error, `out` may hold a partial stream after its
    /// previous length.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_into(&self, machine: &MachineType, out: &mut Vec<u8>) -> Result<SaveReport> {
        let start = out.len() as u64;
        let mut s = StreamWriter::for_machine(std::mem::take(out), machine);
        let result = s
            .prologue(machine.name())
            .and_then(|()| self.write_sections(machine, &mut s, 0, None));
        *out = s.into_inner();
        result.map(|mut report| {
            report.total_bytes = out.len() as u64 - start;
            report
        })
    }

    /// Saves only the device sections, EOF and the vmdesc — what follows the header and the
    /// configuration section, or an iterative section such as RAM — numbering sections from
    /// `first_section_id`. Offsets in the report are relative to the returned buffer.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_sections_to_vec(
        &self,
        machine: &MachineType,
        first_section_id: u32,
    ) -> Result<(Vec<u8>, SaveReport)> {
        self.save_sections_to_vec_with(machine, first_section_id, None)
    }

    /// [`save_sections_to_vec`](Self::save_sections_to_vec), with `manifest` (the writer's
    /// configuration manifest as JSON) stored in the vmdesc under `vmstate-manifest`
    /// ([`Vmdesc::manifest`]): a saved file then carries it for a later load to check first.
    ///
    /// # Errors
    /// As [`save`](Self::save).
    pub fn save_sections_to_vec_with(
        &self,
        machine: &MachineType,
        first_section_id: u32,
        manifest: Option<serde_json::Value>,
    ) -> Result<(Vec<u8>, SaveReport)> {
        let mut s = StreamWriter::for_machine(self.save_buffer(), machine);
        let report = self.write_sections(machine, &mut s, first_section_id, manifest)?;
        Ok((s.into_inner(), report))
    }

    /// An output buffer the size of the last save (a machine's stream size barely changes).
    fn save_buffer(&self) -> Vec<u8> {
        Vec::with_capacity(self.save_size_hint.load(Ordering::Relaxed))
    }

    /// Writes one FULL section per device (in save order), EOF and the vmdesc.
    fn write_sections(
        &self,
        machine: &MachineType,
        s: &mut StreamWriter<Vec<u8>>,
        first_section_id: u32,
        manifest: Option<serde_json::Value>,
    ) -> Result<SaveReport> {
        let framing = s.framing();
        let mut report = SaveReport::default();
        let mut devices = Vec::new();
        let mut section_id = first_section_id;
        for i in self.order() {
            let e = &self.entries[i];
            let schema = e.handle.schema();
            let version = schema.version_for(machine.version());
            let sref = || section_ref(&e.key.idstr, e.key.instance_id, Some(version));
            let gates = GateCtx::new(machine, &schema.name);
            let mut snap = e.handle.snapshot().map_err(|err| err.in_section(sref()))?;
            if !snap.section_needed(&gates) {
                report.skipped.push(e.key.clone());
                continue;
            }
            let offset = s.position();
            s.full_header(section_id, &e.key.idstr, e.key.instance_id, version)
                .map_err(|err| err.in_section(sref()))?;
            let payload_start = s.position();
            let describe = framing.vmdesc && snap.describes_vmdesc();
            let mut cx = SaveCx::new(gates, describe);
            if let Some(d) = cx.desc() {
                d.struct_begin(&schema.name, version, payload_start);
            }
            snap.save(s.payload(), version, &mut cx)
                .map_err(|err| err.at_offset(payload_start).in_section(sref()))?;
            let payload_end = s.position();
            if let Some(d) = cx.desc() {
                d.struct_end(payload_end);
            }
            let payload_len = payload_end - payload_start;
            s.footer(section_id)?;
            if framing.vmdesc {
                let body = match cx.take_desc() {
                    Some(d) if describe => DescBody::Vmsd(d),
                    _ => DescBody::Raw(legacy_desc(&e.key, payload_len)),
                };
                devices.push(DescDevice {
                    name: e.key.idstr.clone(),
                    instance_id: e.key.instance_id,
                    body,
                });
            }
            report.sections.push(SectionInfo {
                key: e.key.clone(),
                stream_instance_id: e.key.instance_id,
                section_id,
                version,
                offset,
                payload_len,
            });
            section_id = section_id.checked_add(1).ok_or_else(|| {
                Error::without_offset(ErrorKind::LengthTooLarge {
                    len: u64::from(u32::MAX) + 1,
                    limit: u32::MAX.into(),
                })
            })?;
        }
        s.eof()?;
        if framing.vmdesc {
            let desc = Vmdesc {
                configuration: None,
                page_size: self.page_size,
                devices,
                manifest,
            };
            report.vmdesc_len = Some(s.vmdesc_with(|out| vmdesc::write_json_into(&desc, out))?);
        }
        report.total_bytes = s.position();
        self.save_size_hint.store(
            usize::try_from(report.total_bytes).unwrap_or(0),
            Ordering::Relaxed,
        );
        Ok(report)
    }
}

/// The vmdesc entry QEMU writes for a section without a vmsd description.
fn legacy_desc(key: &SectionKey, size: u64) -> serde_json::Value {
    serde_json::json!({
        "name": key.idstr,
        "instance_id": key.instance_id,
        "size": size,
        "fields": [{"name": "data", "size": size, "type": "buffer"}],
    })
}
