#!/usr/bin/env python3
"""restore-bench.py SNAPSHOT [RUNS] [TINYVM]: spawns `tinyvm restore SNAPSHOT` RUNS times (default 5)
and prints, per run and as min/median, the time from the spawn (this process's CLOCK_MONOTONIC just
before it, passed in TINYVM_SPAWNED_AT_NS) to the restored guest running, and from main() entry.
Process creation, exec and dynamic loading are in the first number, not in the second."""
import os, re, statistics, subprocess, sys, time

snap = sys.argv[1]
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
tinyvm = sys.argv[3] if len(sys.argv) > 3 else "target/release/tinyvm"
spawn, main = [], []
for _ in range(runs):
    env = dict(os.environ, TINYVM_SPAWNED_AT_NS=str(time.monotonic_ns()))
    out = subprocess.run([tinyvm, "restore", snap], env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"guest running ([0-9.]+) ms after main\(\) entry \(([0-9.]+) ms after the parent spawned", out)
    if not m:
        sys.exit(f"unexpected output: {out}")
    main.append(float(m.group(1)))
    spawn.append(float(m.group(2)))
    print(f"spawn -> running {spawn[-1]:.3f} ms   main() -> running {main[-1]:.3f} ms")
print(f"{snap}: spawn -> running min {min(spawn):.3f} median {statistics.median(spawn):.3f} ms; "
      f"main() -> running min {min(main):.3f} median {statistics.median(main):.3f} ms ({runs} runs)")
