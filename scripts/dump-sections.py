#!/usr/bin/env python3
"""dump-sections.py - list the sections of a QEMU migration stream (debugging aid).

Usage:
    dump-sections.py STREAM [--desc-from OTHER_STREAM] [--hex IDSTR ...] [--json]

For every item of the stream it prints the byte offset, the item type and the
header fields (section id, idstr, instance id, version), the payload length of
FULL sections, RAM records summary for START/PART/END, the footer, the EOF
byte and the trailing vmdesc.

FULL section payloads carry no length on the wire, so the payload length is
computed from the trailing vmdesc JSON (the sum of the field sizes, `size` x
`array_len` for compressed arrays, plus the subsection headers and bodies
listed in `subsections`).  Streams without a vmdesc (machine types <= 2.2) can
borrow one from another stream of the same configuration with --desc-from;
otherwise a heuristic looks for the next plausible section header.

--hex IDSTR prints the whole section (header, payload, footer) as hex for each
section whose idstr equals IDSTR.  --json prints a machine-readable list.
--facts IDSTR,... prints a Markdown block (as used in tests/golden/qemu72/
FACTS.md): the section table, full hex of the sections of the named devices
with the subsection names found in them, their vmdesc objects copied
verbatim from the stream, and the EOF/vmdesc framing bytes.

Only the Python standard library is needed.  This is our own code; it does
not depend on QEMU's scripts.
"""

import argparse
import json
import struct
import sys

EOF, START, PART, END, FULL, SUBSECTION, VMDESC, CONFIG, COMMAND, FOOTER = (
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x7E)
TYPE_NAMES = {START: "START", PART: "PART", END: "END", FULL: "FULL"}

RAM_ZERO, RAM_MEM_SIZE, RAM_PAGE, RAM_EOS, RAM_CONTINUE = 0x02, 0x04, 0x08, 0x10, 0x20


class Reader:
    def __init__(self, data, pos=0):
        self.d = data
        self.pos = pos

    def need(self, n):
        if self.pos + n > len(self.d):
            raise ValueError("truncated stream at offset %d (need %d bytes)" % (self.pos, n))

    def u8(self):
        self.need(1)
        v = self.d[self.pos]
        self.pos += 1
        return v

    def unpack(self, fmt):
        """One value of the struct format `fmt` (big-endian) at the position; moves past it."""
        n = struct.calcsize(fmt)
        self.need(n)
        v = struct.unpack_from(fmt, self.d, self.pos)[0]
        self.pos += n
        return v

    def be16(self):
        return self.unpack(">H")

    def be32(self):
        return self.unpack(">I")

    def be64(self):
        return self.unpack(">Q")

    def raw(self, n):
        self.need(n)
        v = self.d[self.pos:self.pos + n]
        self.pos += n
        return v

    def cstr(self):
        return self.raw(self.u8()).decode("latin-1")

    def peek(self, off=0):
        return self.d[self.pos + off] if self.pos + off < len(self.d) else None


def find_vmdesc(data):
    """Return (offset_of_0x06, json_obj) or (None, None).

    Walks nothing: it only uses the fact that the vmdesc is the tail
    `06 be32 N <N bytes JSON>` of the stream."""
    # Try every 0x06 byte whose length field makes the JSON end exactly at EOF.
    for i in range(len(data) - 5, max(-1, len(data) - 16 * 1024 * 1024), -1):
        if data[i] != VMDESC:
            continue
        n = struct.unpack_from(">I", data, i + 1)[0]
        if i + 5 + n == len(data) and data[i + 5:i + 6] == b"{":
            try:
                return i, json.loads(data[i + 5:].decode())
            except ValueError:
                continue
    return None, None


def desc_size(desc):
    """Bytes of a vmsd description (fields + subsections)."""
    total = 0
    for f in desc.get("fields", []):
        total += f["size"] * f.get("array_len", 1)
    for sub in desc.get("subsections", []):
        total += 1 + 1 + len(sub["vmsd_name"]) + 4 + desc_size(sub)
    return total


def parse_ram(r, page_size, out):
    """Parse one RAM chunk up to and including EOS; summarise into out."""
    counts = {"zero": 0, "page": 0}
    blocks = []
    while True:
        addr = r.be64()
        flags = addr & (page_size - 1)
        addr &= ~(page_size - 1)
        if flags & RAM_MEM_SIZE:
            total = addr
            while total > 0:
                name = r.cstr()
                length = r.be64()
                blocks.append((name, length))
                total -= length
        if flags & (RAM_ZERO | RAM_PAGE):
            if not flags & RAM_CONTINUE:
                r.cstr()
            if flags & RAM_ZERO:
                r.u8()
                counts["zero"] += 1
            else:
                r.raw(page_size)
                counts["page"] += 1
        unknown = flags & ~(RAM_ZERO | RAM_MEM_SIZE | RAM_PAGE | RAM_EOS | RAM_CONTINUE)
        if unknown:
            raise ValueError("unsupported RAM flags 0x%x at offset %d" % (unknown, r.pos - 8))
        if flags & RAM_EOS:
            break
    if blocks:
        out["ram_blocks"] = [{"name": n, "length": l} for n, l in blocks]
    out["ram_zero_pages"] = counts["zero"]
    out["ram_normal_pages"] = counts["page"]


def looks_like_header(data, p, next_ids):
    """Heuristic used when no vmdesc is available."""
    if p >= len(data):
        return False
    if data[p] == EOF and p == len(data) - 1:
        return True
    if data[p] not in (FULL, START) or p + 6 > len(data):
        return False
    sid = struct.unpack_from(">I", data, p + 1)[0]
    if sid not in next_ids:
        return False
    n = data[p + 5]
    name = data[p + 6:p + 6 + n]
    return n > 0 and len(name) == n and all(32 <= c < 127 for c in name)


def parse(data, desc=None, with_footers=None):
    items = []
    r = Reader(data)
    magic = r.be32()
    version = r.be32()
    items.append({"offset": 0, "kind": "HEADER", "magic": "0x%08x" % magic, "version": version,
                  "bytes": 8})
    if magic != 0x5145564D or version != 3:
        raise ValueError("not a QEMU v3 migration stream")
    vm_off, vmdesc = find_vmdesc(data)
    if desc is None:
        desc = vmdesc
    page_size = desc.get("page_size", 4096) if desc else 4096
    devices = {}
    if desc:
        for d in desc.get("devices", []):
            devices[(d["name"], d["instance_id"])] = d

    if r.peek() == CONFIG:
        off = r.pos
        r.u8()
        n = r.be32()
        name = r.raw(n).decode()
        item = {"offset": off, "kind": "CONFIG", "machine": name}
        subs = []
        while r.peek() == SUBSECTION:
            p = r.pos
            r.u8()
            sname = r.cstr()
            if not sname.startswith("configuration/"):
                r.pos = p
                break
            sver = r.be32()
            if sname == "configuration/target-page-bits":
                r.be32()
            elif sname == "configuration/capabilities":
                for _ in range(r.be32()):
                    r.cstr()
            elif sname == "configuration/uuid":
                r.raw(16)
            else:
                raise ValueError("unknown config subsection %s" % sname)
            subs.append({"name": sname, "version": sver})
        if subs:
            item["subsections"] = subs
        item["bytes"] = r.pos - off
        items.append(item)

    # Footers are present iff the config section is (machine types >= 2.4).
    if with_footers is None:
        with_footers = any(i["kind"] == "CONFIG" for i in items)

    ram_ids = set()
    last_id = 0
    while True:
        off = r.pos
        t = r.u8()
        if t == EOF:
            items.append({"offset": off, "kind": "EOF", "bytes": 1})
            break
        if t == COMMAND:
            cmd = r.be16()
            n = r.be16()
            r.raw(n)
            items.append({"offset": off, "kind": "COMMAND", "cmd": cmd, "len": n, "bytes": 5 + n})
            continue
        if t not in TYPE_NAMES:
            raise ValueError("unknown section type 0x%02x at offset %d" % (t, off))
        item = {"offset": off, "kind": TYPE_NAMES[t], "type_byte": "0x%02x" % t}
        sid = r.be32()
        item["section_id"] = sid
        last_id = sid
        if t in (START, FULL):
            item["idstr"] = r.cstr()
            item["instance_id"] = r.be32()
            item["version"] = r.be32()
        payload_off = r.pos
        item["payload_offset"] = payload_off
        is_ram = (t in (START, FULL) and item.get("idstr") == "ram") or (
            t in (PART, END) and sid in ram_ids)
        if is_ram:
            if t == START:
                ram_ids.add(sid)
            parse_ram(r, page_size, item)
        elif t == FULL:
            dev = devices.get((item["idstr"], item["instance_id"]))
            if dev is not None:
                r.pos += desc_size(dev)
            else:
                # heuristic: scan for the next plausible header
                nxt = {sid + 1, sid + 2, sid + 3}
                p = payload_off
                while p < len(data):
                    q = p + 5 if with_footers else p
                    if (not with_footers or (data[p] == FOOTER and
                            struct.unpack_from(">I", data, p + 1)[0] == sid)) and \
                            looks_like_header(data, q, set(range(sid + 1, sid + 64))):
                        break
                    p += 1
                r.pos = p
                item["length_guessed"] = True
        else:
            raise ValueError("non-RAM iterative section %d at %d not supported" % (sid, off))
        item["payload_len"] = r.pos - payload_off
        if with_footers:
            fo = r.pos
            if r.u8() != FOOTER:
                raise ValueError("missing footer for section %d (%s) at offset %d"
                                 % (sid, item.get("idstr"), fo))
            fid = r.be32()
            if fid != sid:
                raise ValueError("footer id %d != section id %d at offset %d" % (fid, sid, fo))
            item["footer_offset"] = fo
        item["bytes"] = r.pos - off
        items.append(item)
        # remember idstr for PART/END of RAM
    if r.pos < len(data):
        if data[r.pos] == VMDESC:
            n = struct.unpack_from(">I", data, r.pos + 1)[0]
            items.append({"offset": r.pos, "kind": "VMDESC", "json_len": n,
                          "bytes": 5 + n, "ends_at_eof": r.pos + 5 + n == len(data)})
        else:
            items.append({"offset": r.pos, "kind": "TRAILING", "bytes": len(data) - r.pos})
    return items


def vmdesc_raw_devices(data):
    """Yield (name, instance_id, raw_text) for every vmdesc device, with the
    exact bytes QEMU wrote (key order and spacing preserved)."""
    off, desc = find_vmdesc(data)
    if off is None:
        return
    text = data[off + 5:].decode()
    key = '"devices": ['
    i = text.index(key) + len(key)
    dec = json.JSONDecoder()
    while text[i] != "]":
        obj, end = dec.raw_decode(text, i)
        yield obj["name"], obj["instance_id"], text[i:end]
        i = end
        if text.startswith(", ", i):
            i += 2


def subsection_names(desc, prefix=""):
    """Names of all subsections in a vmdesc object, depth first, in order."""
    out = []
    for f in desc.get("fields", []):
        if "struct" in f:
            out += subsection_names(f["struct"])
    for sub in desc.get("subsections", []):
        out.append(sub["vmsd_name"])
        out += subsection_names(sub)
    return out


def facts(path, data, items, devnames, desc):
    import os
    name = os.path.basename(path)
    o = []
    cfg = [i for i in items if i["kind"] == "CONFIG"]
    o.append("### %s\n" % name)
    o.append("- size: %d bytes; machine in config section: %s" % (
        len(data), cfg[0]["machine"] if cfg else "(no configuration section)"))
    footers = any("footer_offset" in i for i in items)
    o.append("- section footers: %s" % ("yes" if footers else "no"))
    vm = [i for i in items if i["kind"] == "VMDESC"]
    eof = [i for i in items if i["kind"] == "EOF"][0]
    if vm:
        v = vm[0]
        o.append("- EOF byte at %d, then `%s` (0x06 + be32 %d), JSON %d..%d (last byte of file), "
                 "JSON ends with `%s`" % (
                     eof["offset"], data[v["offset"]:v["offset"] + 5].hex(" "), v["json_len"],
                     v["offset"] + 5, len(data) - 1, data[-4:].decode()))
    else:
        o.append("- EOF byte at %d is the last byte of the file (no vmdesc)" % eof["offset"])
    o.append("")
    o.append("| offset | type | id | idstr | inst | ver | payload | notes |")
    o.append("|---|---|---|---|---|---|---|---|")
    for it in items:
        k = it["kind"]
        if k in ("FULL", "START", "PART", "END"):
            notes = []
            if "ram_zero_pages" in it:
                notes.append("RAM: %d zero + %d normal pages" % (it["ram_zero_pages"],
                                                              it["ram_normal_pages"]))
            if "ram_blocks" in it:
                notes.append("MEM_SIZE blocks: " + ", ".join(
                    "%s 0x%x" % (b["name"], b["length"]) for b in it["ram_blocks"]))
            if it.get("length_guessed"):
                notes.append("length found by header scan (vmdesc of another stream)")
            o.append("| %d | %s `%s` | %d | %s | %s | %s | %d | %s |" % (
                it["offset"], k, it["type_byte"][2:], it["section_id"],
                "`%s`" % it["idstr"] if "idstr" in it else "",
                it.get("instance_id", ""), it.get("version", ""), it["payload_len"],
                "; ".join(notes)))
        elif k == "CONFIG":
            o.append("| %d | CONFIG `07` | | `%s` | | | | %d bytes incl. type byte |" % (
                it["offset"], it["machine"], it["bytes"]))
        elif k == "HEADER":
            o.append("| 0 | magic+version | | | | | | `%s` |" % data[:8].hex(" "))
        elif k == "EOF":
            o.append("| %d | EOF `00` | | | | | | |" % it["offset"])
        elif k == "VMDESC":
            o.append("| %d | VMDESC `06` | | | | | %d | JSON |" % (it["offset"], it["json_len"]))
    o.append("")
    raw = {(n, i): t for n, i, t in vmdesc_raw_devices(data)}
    devs = {}
    if desc:
        for d in desc.get("devices", []):
            devs[(d["name"], d["instance_id"])] = d
    for it in items:
        if it.get("idstr") not in devnames:
            continue
        key = (it["idstr"], it["instance_id"])
        sec = data[it["offset"]:it["offset"] + it["bytes"]]
        subs = subsection_names(devs[key]) if key in devs else []
        o.append("**%s instance %d** at offset %d, %d bytes (payload %d); subsections: %s\n" % (
            it["idstr"], it["instance_id"], it["offset"], len(sec), it["payload_len"],
            ", ".join("`%s`" % x for x in subs) or "none"))
        o.append("```")
        for j in range(0, len(sec), 16):
            o.append("%08x: %s" % (it["offset"] + j, sec[j:j + 16].hex(" ")))
        o.append("```")
        if key in raw:
            o.append("vmdesc object (verbatim):\n")
            o.append("```json")
            o.append(raw[key])
            o.append("```")
        o.append("")
    return "\n".join(o)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stream")
    ap.add_argument("--desc-from", help="take the vmdesc from this other stream")
    ap.add_argument("--hex", action="append", default=[], metavar="IDSTR")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--facts", metavar="IDSTR,...")
    a = ap.parse_args()
    data = open(a.stream, "rb").read()
    desc = None
    if a.desc_from:
        desc = find_vmdesc(open(a.desc_from, "rb").read())[1]
    items = parse(data, desc)
    if a.facts:
        print(facts(a.stream, data, items, a.facts.split(","),
                    desc or find_vmdesc(data)[1]))
        return
    if a.json:
        json.dump(items, sys.stdout, indent=1)
        print()
        return
    print("# %s: %d bytes" % (a.stream, len(data)))
    for it in items:
        k = it["kind"]
        if k in ("FULL", "START"):
            line = "%8d  %-5s %s id=%-3d %-28s inst=%d ver=%d" % (
                it["offset"], k, it["type_byte"], it["section_id"], it["idstr"],
                it["instance_id"], it["version"])
        elif k in ("PART", "END"):
            line = "%8d  %-5s %s id=%-3d" % (it["offset"], k, it["type_byte"], it["section_id"])
        elif k == "CONFIG":
            line = "%8d  CONFIG 0x07 machine=%s%s" % (it["offset"], it["machine"],
                   "" if "subsections" not in it else " subsections=%s" % it["subsections"])
        elif k == "VMDESC":
            line = "%8d  VMDESC 0x06 len=%d ends_at_eof=%s" % (it["offset"], it["json_len"],
                                                              it["ends_at_eof"])
        else:
            line = "%8d  %s %s" % (it["offset"], k,
                                   {kk: v for kk, v in it.items() if kk not in ("offset", "kind")})
        if "payload_len" in it:
            line += " payload=%d%s" % (it["payload_len"], "?" if it.get("length_guessed") else "")
        if "ram_zero_pages" in it:
            line += " ram(zero=%d page=%d)" % (it["ram_zero_pages"], it["ram_normal_pages"])
        if "footer_offset" in it:
            line += " footer@%d" % it["footer_offset"]
        print(line)
        if "ram_blocks" in it:
            for b in it["ram_blocks"]:
                print("%10s block %s 0x%x" % ("", b["name"], b["length"]))
        if it.get("idstr") in a.hex:
            raw = data[it["offset"]:it["offset"] + it["bytes"]]
            for i in range(0, len(raw), 16):
                print("%10s %08x: %s" % ("", it["offset"] + i, raw[i:i + 16].hex(" ")))


if __name__ == "__main__":
    main()
