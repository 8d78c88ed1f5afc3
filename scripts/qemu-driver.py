#!/usr/bin/env python3
"""qemu-driver.py - run QEMU under a QMP socket and feed it a small command script.

Used by make-golden.sh (to put devices into known states and save a migration
stream) and by qemu-load-check.sh (to check that QEMU accepts a stream).

Usage:
    qemu-driver.py [--timeout SECS] [--pty] [--script FILE | -c CMD ...] -- QEMU ARGV...

QEMU is started with the given argv plus `-qmp unix:<tmp>,server=on,wait=off`.
If --pty is given, a pseudo terminal pair is created first and every
occurrence of the literal text @PTY@ in the QEMU argv is replaced with the
slave path (use it as `-chardev serial,id=c0,path=@PTY@`).  The driver keeps
the master (and one slave fd) open for the lifetime of QEMU and never reads
the master.

Script language (one command per line; blank lines and lines starting with
'#' are ignored):
    <anything else>      an HMP command, sent via QMP human-monitor-command
                         (e.g. `o /b 0x3fb 0x80`)
    @migrate FILE        migrate to "exec:cat > FILE" and wait for completion
    @cont-ms N           `cont`, sleep N milliseconds, `stop`
    @sleep-ms N          sleep N milliseconds
    @pty-stop            tcflow(TCOOFF) on the pty slave: QEMU's writes to the
                         slave then fail with EAGAIN (output stopped)
    @pty-input HEX       write bytes (hex, e.g. 414243) into the pty master,
                         i.e. as input towards the emulated UART
    @expect-incoming     wait until an incoming migration finishes; exit 0 if it
                         completed (query-migrate status "completed"), else 1
    @hmp-print CMD       run an HMP command and print its output to stdout
    @quit                send `quit` (done automatically at the end)

Exit status: 0 on success, 1 on a failed step, 2 on timeout.  On failure the
QEMU stderr is echoed to our stderr.
"""

import argparse
import json
import os
import pty
import signal
import socket
import subprocess
import sys
import tempfile
import termios
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, deadline, proc):
        self.deadline = deadline
        self.proc = proc
        self.sock = None
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                self.sock = s
                break
            except OSError:
                s.close()
                if proc.poll() is not None:
                    raise QMPError("QEMU exited before QMP was available (rc=%d)" % proc.returncode)
                if time.time() > deadline:
                    raise TimeoutError("timed out waiting for QMP socket")
                time.sleep(0.05)
        self.sock.settimeout(0.5)
        self.buf = b""
        self.events = []
        greeting = self._read_msg()
        if "QMP" not in greeting:
            raise QMPError("unexpected greeting %r" % greeting)
        self.cmd("qmp_capabilities")

    def _read_msg(self):
        while b"\n" not in self.buf:
            if time.time() > self.deadline:
                raise TimeoutError("timed out waiting for QMP reply")
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                if self.proc.poll() is not None:
                    raise QMPError("QEMU exited (rc=%d)" % self.proc.returncode)
                continue
            if not chunk:
                raise QMPError("QMP connection closed (QEMU exited?)")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read_msg()
            if "event" in r:
                self.events.append(r)
                continue
            if "error" in r:
                raise QMPError("%s: %s" % (name, r["error"]))
            return r.get("return")

    def hmp(self, line):
        out = self.cmd("human-monitor-command", **{"command-line": line})
        return out or ""


def wait_migration(q, deadline, want_incoming=False):
    while True:
        info = q.cmd("query-migrate")
        st = info.get("status")
        if st == "completed":
            return info
        if st in ("failed", "cancelled"):
            raise QMPError("migration %s: %s" % (st, info.get("error-desc", "")))
        if time.time() > deadline:
            raise TimeoutError("migration did not finish (status %r)" % st)
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--pty", action="store_true")
    ap.add_argument("--script")
    ap.add_argument("-c", action="append", default=[], dest="cmds")
    ap.add_argument("qemu", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    argv = a.qemu
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        ap.error("missing QEMU command line")

    lines = []
    if a.script:
        with open(a.script) as f:
            lines += f.read().splitlines()
    lines += a.cmds

    deadline = time.time() + a.timeout
    tmpdir = tempfile.mkdtemp(prefix="qemu-driver-")
    qmp_path = os.path.join(tmpdir, "qmp.sock")
    errpath = os.path.join(tmpdir, "stderr")

    master = slave = None
    if a.pty:
        master, slave = pty.openpty()
        slave_name = os.ttyname(slave)
        argv = [x.replace("@PTY@", slave_name) for x in argv]

    argv = list(argv) + ["-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    errf = open(errpath, "wb")
    # Own process group, so that helpers QEMU spawns (the `cat` of an exec:
    # migration URI) can be cleaned up with it.
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=errf, start_new_session=True)
    rc = 0
    q = None
    try:
        q = QMP(qmp_path, deadline, proc)
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("@"):
                out = q.hmp(line)
                if out.strip():
                    # HMP reports errors as text output
                    sys.stderr.write("hmp %r: %s" % (line, out))
                continue
            word, _, rest = line.partition(" ")
            rest = rest.strip()
            if word == "@migrate":
                q.cmd("migrate", uri="exec:cat > %s" % rest)
                wait_migration(q, deadline)
            elif word == "@cont-ms":
                q.cmd("cont")
                time.sleep(int(rest) / 1000.0)
                q.cmd("stop")
            elif word == "@sleep-ms":
                time.sleep(int(rest) / 1000.0)
            elif word == "@pty-stop":
                termios.tcflow(slave, termios.TCOOFF)
            elif word == "@pty-input":
                os.write(master, bytes.fromhex(rest))
            elif word == "@expect-incoming":
                wait_migration(q, deadline, want_incoming=True)
                st = q.cmd("query-status")
                print("incoming migration completed; runstate %s" % st.get("status"))
            elif word == "@hmp-print":
                sys.stdout.write(q.hmp(rest))
            elif word == "@quit":
                break
            else:
                raise QMPError("unknown directive %r" % word)
    except TimeoutError as e:
        sys.stderr.write("qemu-driver: timeout: %s\n" % e)
        rc = 2
    except QMPError as e:
        sys.stderr.write("qemu-driver: %s\n" % e)
        rc = 1
    finally:
        if q is not None and proc.poll() is None:
            try:
                q.sock.sendall(b'{"execute": "quit"}\n')
            except OSError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        try:
            os.killpg(proc.pid, signal.SIGKILL)   # leftovers in QEMU's group only
        except OSError:
            pass
        errf.close()
        with open(errpath, "rb") as f:
            err = f.read().decode(errors="replace")
        if err.strip() and (rc != 0 or os.environ.get("QEMU_DRIVER_VERBOSE")):
            sys.stderr.write("---- qemu stderr ----\n" + err)
        if rc == 0 and proc.returncode not in (0, None):
            # quit normally gives 0; anything else is suspicious
            sys.stderr.write("qemu-driver: QEMU exit status %s\n---- qemu stderr ----\n%s"
                             % (proc.returncode, err))
            rc = 1
        for p in (qmp_path, errpath):
            try:
                os.unlink(p)
            except OSError:
                pass
        os.rmdir(tmpdir)
        for fd in (master, slave):
            if fd is not None:
                os.close(fd)
    return rc


if __name__ == "__main__":
    sys.exit(main())
