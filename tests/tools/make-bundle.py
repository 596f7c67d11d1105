#!/usr/bin/env python3
# make-bundle.py: build a p2v capture bundle (docs/bundle.md) from raw
# disk images, for the tests, independently of p2v: qemu-img makes the
# qcow2s, and the p2v-sha256-nz64k digest is computed here in Python from
# the raw images, so `p2v verify` checks the C digest against this one.
#
#   make-bundle.py digest RAW                 print the digest of RAW
#   make-bundle.py make DIR RAW... [--hostname H] [--mac M]... [--cpus N]
#                  [--memory BYTES] [--firmware bios|uefi] [--tar FILE]
#
# `make` writes DIR/diskN.qcow2 and DIR/manifest.json (DIR must not
# exist); --tar also writes FILE, a pax tar with manifest.json last.
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile

BLOCK = 64 * 1024
ZERO = bytes(BLOCK)


def digest(path):
    """SHA-256 over (offset as 8 bytes little-endian, block) for every
    64 KiB block that is not all zeros, in offset order.  Holes are
    skipped with SEEK_DATA so a sparse 3 GiB image costs only its data."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break                       # ENXIO: only a hole is left
            pos = data - data % BLOCK
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            end = min(size, -(-hole // BLOCK) * BLOCK)
            while pos < end:
                buf = os.pread(fd, BLOCK, pos)
                buf += bytes(BLOCK - len(buf))
                if buf != ZERO:
                    h.update(pos.to_bytes(8, "little"))
                    h.update(buf)
                pos += BLOCK
            off = max(pos, off + 1)
    finally:
        os.close(fd)
    return h.hexdigest()


def make(args):
    os.mkdir(args.dir)
    disks = []
    for i, raw in enumerate(args.raw):
        name = "disk%d.qcow2" % i
        subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2",
                        raw, os.path.join(args.dir, name)], check=True)
        size = os.stat(raw).st_size
        disks.append({
            "name": "sd" + chr(ord("a") + i), "path": "/dev/sd" + chr(ord("a") + i),
            "file": name, "model": "TEST DISK", "serial": "T%04d" % i,
            "transport": "sata", "size": size, "sector_size": 512,
            "partition_table": "msdos", "partitions": [],
            "bytes_read": size,
            "digest": {"algorithm": "p2v-sha256-nz64k", "value": digest(raw)},
        })
    nics = [{"name": "eno%d" % (i + 1), "mac": mac, "driver": "e1000e",
             "link": True, "addresses": []} for i, mac in enumerate(args.mac)]
    manifest = {
        "format": "p2v-bundle", "version": 1, "tool": "make-bundle.py",
        "captured_at": "2026-11-26T13:00:00Z", "complete": True,
        "hostname": args.hostname, "firmware": args.firmware,
        "cpu": {"count": args.cpus, "model": "Test CPU"},
        "memory_bytes": args.memory, "nics": nics, "disks": disks,
        "unknown_future_key": {"ignored": True},
    }
    with open(os.path.join(args.dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    if args.tar:
        with tarfile.open(args.tar, "w", format=tarfile.PAX_FORMAT) as t:
            for d in disks:
                t.add(os.path.join(args.dir, d["file"]), arcname=d["file"])
            t.add(os.path.join(args.dir, "manifest.json"), arcname="manifest.json")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("digest")
    d.add_argument("raw")
    m = sub.add_parser("make")
    m.add_argument("dir")
    m.add_argument("raw", nargs="+")
    m.add_argument("--hostname", default="web01")
    m.add_argument("--mac", action="append", default=[])
    m.add_argument("--cpus", type=int, default=2)
    m.add_argument("--memory", type=int, default=1 << 30)
    m.add_argument("--firmware", default="bios")
    m.add_argument("--tar")
    a = p.parse_args()
    if a.cmd == "digest":
        print(digest(a.raw))
    else:
        make(a)


if __name__ == "__main__":
    sys.exit(main())
