//! tinyvm on KVM: the guest runs and prints through the example UART, its memory pattern is
//! consistent, and an in-process migration (vCPU state + UART payloads + RAM copy) to a second
//! VM continues the guest where it stopped.
//!
//! Every test is in `needs_kvm` and ignored by default: run them where `/dev/kvm` opens with
//! `cargo test -p examples-devices --features kvm --test tinyvm_kvm -- --ignored needs_kvm::`.
//! Run that way, a missing `kvm` feature or a `/dev/kvm` that does not open is a failure.

mod tools;

/// Without the `kvm` feature there is no runner: one ignored test that fails when it is run, so
/// asking for the KVM tests of a build without the feature does not pass.
#[cfg(not(feature = "kvm"))]
mod needs_kvm {
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn tinyvm_kvm_needs_feature_kvm() {
        super::tools::require_kvm();
    }
}

#[cfg(feature = "kvm")]
mod needs_kvm {
    use std::time::Duration;

    use examples_devices::tinyvm::guest::{check_output, check_pattern, PatternState};
    use examples_devices::tinyvm::{CpuState, Vm, Workload, MAX_MSRS};
    use examples_devices::SerialSection;
    use vmstate_runtime::{load_payload, save_payload, MachineType};

    const RUN: Duration = Duration::from_millis(200);

    fn machine() -> MachineType {
        examples_devices::catalog()
            .resolve("pc-i440fx-7.2")
            .unwrap()
    }

    /// Runs a fresh guest for [`RUN`] and returns it with its pattern state.
    fn started_vm() -> (Vm, PatternState) {
        let mut vm = Vm::new().expect("create VM");
        let report = vm.run_for(RUN).expect("run guest");
        assert!(report.uart_exits > 0, "no UART I/O: {report:?}");
        let state = check_pattern(&vm.counters().unwrap()).expect("pattern after first run");
        (vm, state)
    }

    /// `vm`'s vCPU state, with its `tinyvm-cpu` payload and the version that was saved.
    fn saved_cpu(vm: &Vm, m: &MachineType) -> (CpuState, u32, Vec<u8>) {
        let cpu = vm.save_cpu().unwrap();
        let (version, payload, _) = save_payload(&cpu, m).unwrap();
        (cpu, version, payload)
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn guest_prints_a_then_bs_and_keeps_its_pattern() {
        super::tools::require_kvm();
        let (mut vm, first) = started_vm();
        assert!(first.passes > 1, "guest made no progress: {first:?}");
        let out = vm.serial.state.take_tx_output();
        let bs = check_output(&out, true, 0, first).unwrap();
        println!("first run: {first:?}, {bs} 'B's");

        // Paused: nothing runs.
        vm.pause();
        assert_eq!(vm.run_for(RUN).unwrap().exits, 0);
        assert_eq!(check_pattern(&vm.counters().unwrap()).unwrap(), first);
        vm.resume();

        // Resumed: the walk goes on, the output continues with 'B's only.
        vm.run_for(Duration::from_millis(50)).unwrap();
        let second = check_pattern(&vm.counters().unwrap()).unwrap();
        assert!(second.passes > first.passes, "{first:?} -> {second:?}");
        let out = vm.serial.state.take_tx_output();
        check_output(&out, false, bs, second).unwrap();
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn stop_handle_ends_run_for_early() {
        super::tools::require_kvm();
        let mut vm = Vm::new().unwrap();
        let stop = vm.stop_handle();
        let kicker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, std::sync::atomic::Ordering::Release);
        });
        let report = vm.run_for(Duration::from_secs(10)).unwrap();
        kicker.join().unwrap();
        assert!(report.elapsed < Duration::from_secs(2), "{report:?}");
        check_pattern(&vm.counters().unwrap()).unwrap();
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn in_process_migration_continues_the_guest() {
        super::tools::require_kvm();
        let m = machine();
        let (mut src, before) = started_vm();
        let src_out = src.serial.state.take_tx_output();
        let src_bs = check_output(&src_out, true, 0, before).unwrap();

        // Source stopped (run_for returned): save vCPU + UART, copy RAM.
        src.pause();
        let (cpu, cpu_version, cpu_payload) = saved_cpu(&src, &m);
        assert!(
            cpu.msr_count > 0,
            "no MSRs saved (host list: {:x?})",
            src.msr_indices()
        );
        let (uart_version, uart_payload, _) = save_payload(&src.serial, &m).unwrap();
        let ram = src.read_memory().unwrap();

        // Destination: load everything, then start.
        let mut dst = Vm::new_empty().unwrap();
        let mut loaded_cpu = CpuState::default();
        load_payload(&mut loaded_cpu, &cpu_payload, cpu_version, &m).unwrap();
        assert_eq!(loaded_cpu, cpu);
        let mut uart = SerialSection::default();
        load_payload(&mut uart, &uart_payload, uart_version, &m).unwrap();
        dst.write_memory(&ram).unwrap();
        dst.restore_cpu(&loaded_cpu).unwrap();
        dst.serial = uart;
        assert_eq!(
            check_pattern(&dst.counters().unwrap()).unwrap(),
            before,
            "destination RAM differs before it runs"
        );
        // The restored vCPU reads back as saved, apart from the TSC, which kept counting.
        let mut reread = dst.save_cpu().unwrap();
        for (r, c) in reread.msrs.iter_mut().zip(cpu.msrs.iter()) {
            if r.index == 0x10 {
                r.data = c.data;
            }
        }
        assert_eq!(reread, cpu);

        let report = dst.run_for(RUN).unwrap();
        assert!(report.uart_exits > 0);
        let after = check_pattern(&dst.counters().unwrap()).unwrap();
        assert!(after.passes > before.passes, "{before:?} -> {after:?}");
        // The destination prints no 'A': its output continues the source's 'B's.
        let dst_out = dst.serial.state.take_tx_output();
        let total = check_output(&dst_out, false, src_bs, after).unwrap();
        println!(
            "source: {before:?}, {src_bs} 'B's; destination: {after:?}, {total} 'B's in all, {report:?}"
        );

        // The source, untouched, can still resume on its own.
        src.resume();
        src.run_for(Duration::from_millis(20)).unwrap();
        check_pattern(&src.counters().unwrap()).unwrap();
    }

    /// The 32-bit guest (4 MiB, so beyond the real-mode walk, in flat protected mode): it walks
    /// every page, its vCPU state (protected-mode segment caches, CR0.PE) moves to a second VM
    /// through the `tinyvm-cpu` payload and the guest goes on there, pattern and output intact.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn protected_mode_guest_walks_all_pages_and_migrates() {
        super::tools::require_kvm();
        let m = machine();
        let w = Workload {
            ram_size: 4 << 20,
            dirty_rate: None,
        };
        let mut src = Vm::with_workload(w).unwrap();
        src.run_for(RUN).unwrap();
        let counters = src.counters().unwrap();
        assert_eq!(counters.len(), w.pattern_pages());
        let before = check_pattern(&counters).unwrap();
        assert!(before.passes > 0, "no pass over 4 MiB: {before:?}");
        let src_bs = check_output(&src.serial.state.take_tx_output(), true, 0, before).unwrap();

        let (cpu, cpu_version, cpu_payload) = saved_cpu(&src, &m);
        assert_eq!(cpu.cr0 & 1, 1, "not in protected mode: cr0 {:#x}", cpu.cr0);
        let mut dst = Vm::new_empty_with(w).unwrap();
        let mut loaded = CpuState::default();
        load_payload(&mut loaded, &cpu_payload, cpu_version, &m).unwrap();
        assert_eq!(loaded, cpu);
        dst.write_memory(&src.read_memory().unwrap()).unwrap();
        dst.restore_cpu(&loaded).unwrap();
        dst.serial = src.serial.clone();
        dst.run_for(RUN).unwrap();
        let after = check_pattern(&dst.counters().unwrap()).unwrap();
        assert!(after.passes > before.passes, "{before:?} -> {after:?}");
        check_output(&dst.serial.state.take_tx_output(), false, src_bs, after).unwrap();
    }

    /// The 32-bit guest paced to 2,000 pages a second through its budget port dirties about
    /// 200 pages in 100 ms; a guest that ignored the budget would walk millions.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn dirty_rate_paces_the_guest() {
        super::tools::require_kvm();
        let w = Workload {
            ram_size: 1 << 20,
            dirty_rate: Some(2000),
        };
        let mut vm = Vm::with_workload(w).unwrap();
        let report = vm.run_for(Duration::from_millis(100)).unwrap();
        let st = check_pattern(&vm.counters().unwrap()).unwrap();
        let pages = st.passes as usize * w.pattern_pages() + st.pages_done;
        // 2,000 pages/s for 100 ms (plus the 10-page bank) is about 210 pages; unpaced, the
        // guest walks millions of pages in that time.
        assert!(pages <= 2000, "{pages} pages in {report:?}: {st:?}");
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn cpu_state_round_trips_byte_identically() {
        super::tools::require_kvm();
        let m = machine();
        let (vm, _) = started_vm();
        let (cpu, version, payload) = saved_cpu(&vm, &m);
        assert_eq!(cpu.rip & !0xffff, 0, "real-mode RIP {:#x}", cpu.rip);
        let mut loaded = CpuState::default();
        load_payload(&mut loaded, &payload, version, &m).unwrap();
        assert_eq!(loaded, cpu);
        let (_, again, _) = save_payload(&loaded, &m).unwrap();
        assert_eq!(again, payload);
    }

    /// Offset of `msr_count` in a `tinyvm-cpu` payload: it precedes the MSR entries (12 bytes
    /// each) and the 1024-byte LAPIC page, the last fields.
    fn msr_count_offset(payload: &[u8], cpu: &CpuState) -> usize {
        payload.len() - 1024 - 12 * cpu.msr_count as usize - 4
    }

    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn corrupted_cpu_state_is_refused_naming_the_field() {
        super::tools::require_kvm();
        let m = machine();
        let (vm, _) = started_vm();
        let (cpu, version, payload) = saved_cpu(&vm, &m);
        let at = msr_count_offset(&payload, &cpu);
        assert_eq!(
            payload[at..at + 4],
            cpu.msr_count.to_be_bytes(),
            "msr_count not where expected"
        );

        // The error loading `bad` into a fresh state, which the failed load leaves unchanged.
        let refused = |bad: &[u8], what: &str| {
            let mut dest = CpuState::default();
            let msg = load_payload(&mut dest, bad, version, &m)
                .unwrap_err()
                .to_string();
            println!("{what}: {msg}");
            assert_eq!(dest, CpuState::default(), "state changed by a failed load");
            msg
        };

        // An MSR count above the array's room.
        let mut bad = payload.clone();
        bad[at..at + 4].copy_from_slice(&(MAX_MSRS as u32 + 1).to_be_bytes());
        let msg = refused(&bad, "out-of-range count");
        assert!(msg.contains("msr"), "error does not name the field: {msg}");

        // An MSR index tinyvm does not migrate (the first entry's index).
        let mut bad = payload.clone();
        bad[at + 4..at + 8].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        let msg = refused(&bad, "bad MSR index");
        assert!(msg.contains("msrs[0].index"), "{msg}");

        // A segment attribute out of range (CS.present = 2): CS follows the 18 register words;
        // present is at base(8) + limit(4) + selector(2) + type(1).
        let mut bad = payload;
        let present = 18 * 8 + 15;
        assert_eq!(bad[present], cpu.cs.present);
        bad[present] = 2;
        let msg = refused(&bad, "bad segment");
        assert!(msg.contains("present"), "{msg}");
    }
    /// The 64-bit guest (5 GiB: 3 GiB below the hole under 4 GiB, 2 GiB from 4 GiB up, one RAM
    /// block seen by KVM through two slots) starts in long mode, and walks across the hole and
    /// around the end of RAM. To touch a few dozen pages only (not 5 GiB), its vCPU state is
    /// moved to the middle of a pass twice, through the same `KVM_SET_*` path a restore uses:
    /// RIP at `inner`, RBX 16 pages before the hole, then 16 pages before the end of RAM.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn long_mode_guest_walks_across_the_hole_and_around() {
        use examples_devices::tinyvm::guest::{
            ram_layout, HIGH_RAM_BASE, LONG_FIRST_PATTERN_PAGE, PAGE_SIZE, PAGE_TABLES_ADDR,
        };
        use vm_memory::{Bytes, GuestAddress};
        super::tools::require_kvm();
        const INNER: u64 = 0x100f;
        let w = Workload {
            ram_size: 5 << 30,
            dirty_rate: Some(20_000),
        };
        assert!(w.long_mode());
        let mut vm = Vm::with_workload(w).unwrap();
        let cpu = vm.save_cpu().unwrap();
        assert_eq!(cpu.efer & 0x500, 0x500, "EFER.LME|LMA: {:#x}", cpu.efer);
        assert_eq!((cpu.cs.l, cpu.cs.db), (1, 0), "CS not 64-bit: {:?}", cpu.cs);
        assert_eq!(cpu.cr3, PAGE_TABLES_ADDR);
        assert_eq!(cpu.cr4 & 0x20, 0x20, "CR4.PAE: {:#x}", cpu.cr4);
        assert_eq!(
            cpu.cr0 & 0x8000_0001,
            0x8000_0001,
            "CR0.PG|PE: {:#x}",
            cpu.cr0
        );
        // The long-mode state survives the `tinyvm-cpu` section.
        let m = machine();
        let (version, payload, _) = save_payload(&cpu, &m).unwrap();
        let mut loaded = CpuState::default();
        load_payload(&mut loaded, &payload, version, &m).unwrap();
        assert_eq!(loaded, cpu);

        let (low, high) = ram_layout(w.ram_size);
        let (low_pages, pages) = (low / PAGE_SIZE, w.ram_size / PAGE_SIZE);
        let counter = |vm: &Vm, page: usize| -> u32 {
            vm.memory()
                .read_obj(GuestAddress((page * PAGE_SIZE) as u64))
                .unwrap()
        };
        // Runs until `page`'s counter is set (a bounded number of 20 ms slices; at 20,000
        // pages/s the 32 pages take about 2 ms).
        let run_until = |vm: &mut Vm, page: usize| {
            for _ in 0..250 {
                if counter(vm, page) != 0 {
                    return;
                }
                vm.run_for(Duration::from_millis(20)).unwrap();
            }
            panic!("the guest never reached block page {page}");
        };
        let log = vm.dirty_log();
        let _ = log.take().unwrap();

        // Across the hole: 16 pages below 3 GiB, then on at 4 GiB (block page 3 GiB / 4 KiB).
        let mut at = cpu.clone();
        (at.rip, at.rbx, at.rsi) = (INNER, (low - 16 * PAGE_SIZE) as u64, 0);
        vm.restore_cpu(&at).unwrap();
        run_until(&mut vm, low_pages + 15);
        let mid = vm.save_cpu().unwrap();
        assert!(
            (HIGH_RAM_BASE + 16 * PAGE_SIZE as u64..HIGH_RAM_BASE + high as u64).contains(&mid.rbx),
            "RBX {:#x} not past 4 GiB",
            mid.rbx
        );
        let bits = log.take().unwrap();
        assert_eq!(bits.len(), pages / 64, "one bit per page of the block");
        let dirty = |p: usize| bits[p / 64] >> (p % 64) & 1 == 1;
        for p in low_pages - 16..low_pages + 16 {
            assert_eq!(counter(&vm, p), 1, "block page {p}");
            assert!(dirty(p), "block page {p} not in the dirty log");
        }
        assert!(!dirty(low_pages - 17) && !dirty(LONG_FIRST_PATTERN_PAGE));
        assert_eq!(counter(&vm, low_pages - 17), 0);
        assert_eq!(counter(&vm, LONG_FIRST_PATTERN_PAGE), 0);

        // Around the end of RAM: the last 16 pages, `B`, and the next pass from page 64.
        let mut at = mid;
        (at.rip, at.rbx, at.rsi) = (INNER, HIGH_RAM_BASE + (high - 16 * PAGE_SIZE) as u64, 0);
        vm.restore_cpu(&at).unwrap();
        run_until(&mut vm, LONG_FIRST_PATTERN_PAGE);
        for p in pages - 16..pages {
            assert_eq!(counter(&vm, p), 1, "block page {p}");
        }
        assert_eq!(vm.serial.state.take_tx_output(), b"B");
        let end = vm.save_cpu().unwrap();
        assert!(
            end.rbx < low as u64,
            "RBX {:#x}: not back below the hole",
            end.rbx
        );
    }

    /// KVM's dirty log sees the guest's writes: after a run, every pattern page is dirty, and
    /// a second read right after (vCPU stopped) is clean.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn dirty_log_reports_the_pattern_pages() {
        super::tools::require_kvm();
        let mut vm = Vm::new().unwrap();
        let log = vm.dirty_log();
        let _ = log.take().unwrap();
        vm.run_for(Duration::from_millis(20)).unwrap();
        let bits = log.take().unwrap();
        let dirty = |p: usize| bits[p / 64] >> (p % 64) & 1 == 1;
        for p in 2..256 {
            assert!(dirty(p), "pattern page {p} not in the dirty log");
        }
        assert!(dirty(0), "the stack page (call/ret) is dirty");
        assert!(log.take().unwrap().iter().all(|&w| w == 0));
    }

    /// A live migration of a running guest (vCPU on its own thread, KVM dirty log feeding the
    /// passes, `tinyvm-cpu` and `serial` sections) over a Unix socket pair, in one process.
    #[test]
    #[ignore = "needs /dev/kvm: --features kvm, on a host where /dev/kvm opens read-write"]
    fn live_migration_with_the_vcpu_on_its_thread() {
        use examples_devices::tinyvm::live::{KvmDest, KvmSource};
        use vmstate_migration::{migrate, receive, ReceiveSettings, Settings};
        super::tools::require_kvm();
        let mut src = KvmSource::start(Vm::new().unwrap(), machine()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let dest = std::thread::spawn(move || {
            let mut d = KvmDest::new(machine()).unwrap();
            let r = receive(&mut d, &mut b, &ReceiveSettings::default());
            (d, r)
        });
        let settings = Settings {
            downtime: Duration::from_millis(50),
            max_passes: 10,
            ..Settings::default()
        };
        let report = migrate(&mut src, &mut a, &settings).expect("migrate");
        let (mut d, r) = dest.join().unwrap();
        let r = r.expect("receive");
        assert_eq!(report.device_sections, 2);
        assert_eq!(r.device_sections, 2);
        // Source stopped: its state is what the destination loaded.
        let src_vm = src.vm().unwrap();
        let at_stop = check_pattern(&src_vm.counters().unwrap()).unwrap();
        let src_out = src_vm.serial.state.take_tx_output();
        let bs = check_output(&src_out, true, 0, at_stop).unwrap();
        let mut running = d.started.take().unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let vm = running.vm().unwrap();
        let after = check_pattern(&vm.counters().unwrap()).unwrap();
        assert!(after.passes > at_stop.passes, "{at_stop:?} -> {after:?}");
        let out = vm.serial.state.take_tx_output();
        check_output(&out, false, bs, after).unwrap();
        println!(
            "passes {}, downtime {:?}, {} bytes; {at_stop:?} -> {after:?}",
            report.passes.len(),
            report.downtime,
            report.bytes
        );
    }
}
