#!/usr/bin/env python3
"""Write a single-layer OCI image archive without a registry or a Docker engine.

No container registry is reachable from the machines that build and test
ringkv, so the local cluster's images (pause, CoreDNS, a busybox test image)
are assembled here from binaries built on the machine and imported with
`ctr -n k8s.io images import`. The archive is a plain OCI image layout
(https://github.com/opencontainers/image-spec/blob/main/image-layout.md) in a tar:

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      -> manifest, annotated with the image name
    blobs/sha256/<manifest digest>  -> config + one layer
    blobs/sha256/<config digest>    os/arch, entrypoint, user, rootfs diff_ids
    blobs/sha256/<layer digest>     an uncompressed tar of the image's files

Every timestamp is 0 and every owner root, so the same inputs give the same
digests. Usage:

  oci-image.py --name registry.k8s.io/pause:3.10.2 --out pause.tar \
      --file ./pause:/pause:0755 --entrypoint '["/pause"]' --user 65535
  --file SRC:DST[:MODE]   copy a file into the image
  --symlink DST:TARGET    add a symlink
  --dir DST[:MODE]        add an (empty) directory
"""
import argparse
import hashlib
import io
import json
import os
import tarfile


def add_dirs(tar, seen, path):
    parts = path.strip("/").split("/")[:-1]
    cur = ""
    for p in parts:
        cur = f"{cur}/{p}" if cur else p
        if cur in seen:
            continue
        seen.add(cur)
        ti = tarfile.TarInfo(cur + "/")
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
        tar.addfile(ti)


def layer_bytes(files, symlinks, dirs):
    buf = io.BytesIO()
    seen = set()
    entries = []
    for spec in dirs:
        dst, _, mode = spec.partition(":")
        entries.append((dst.strip("/"), "dir", None, int(mode or "755", 8)))
    for spec in files:
        src, dst, *rest = spec.split(":")
        entries.append((dst.strip("/"), "file", src, int(rest[0] if rest else "644", 8)))
    for spec in symlinks:
        dst, target = spec.split(":", 1)
        entries.append((dst.strip("/"), "link", target, 0o777))
    entries.sort(key=lambda e: e[0])
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, src, mode in entries:
            add_dirs(tar, seen, name)
            ti = tarfile.TarInfo(name)
            ti.mode = mode
            if kind == "dir":
                if name in seen:
                    continue
                seen.add(name)
                ti.name = name + "/"
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif kind == "link":
                ti.type = tarfile.SYMTYPE
                ti.linkname = src
                tar.addfile(ti)
            else:
                with open(src, "rb") as f:
                    data = f.read()
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def blob(data):
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--file", action="append", default=[])
    ap.add_argument("--symlink", action="append", default=[])
    ap.add_argument("--dir", action="append", default=[])
    ap.add_argument("--entrypoint", default=None, help="JSON list")
    ap.add_argument("--cmd", default=None, help="JSON list")
    ap.add_argument("--user", default=None)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--label", action="append", default=[])
    a = ap.parse_args()

    layer_digest, layer = blob(layer_bytes(a.file, a.symlink, a.dir))
    cfg = {"Env": a.env or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if a.entrypoint:
        cfg["Entrypoint"] = json.loads(a.entrypoint)
    if a.cmd:
        cfg["Cmd"] = json.loads(a.cmd)
    if a.user:
        cfg["User"] = a.user
    if a.workdir:
        cfg["WorkingDir"] = a.workdir
    if a.label:
        cfg["Labels"] = dict(l.split("=", 1) for l in a.label)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "tests/k8s/oci-image.py"}],
    }
    config_digest, config_raw = blob(json.dumps(config, sort_keys=True, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config_raw)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": len(layer)}],
    }
    manifest_digest, manifest_raw = blob(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest, "size": len(manifest_raw),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name,
                            "org.opencontainers.image.ref.name": tag},
        }],
    }
    members = [
        ("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode()),
        ("index.json", json.dumps(index, sort_keys=True).encode()),
    ]
    for d, raw in ((manifest_digest, manifest_raw), (config_digest, config_raw), (layer_digest, layer)):
        members.append(("blobs/sha256/" + d.split(":", 1)[1], raw))
    tmp = a.out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for dname in ("blobs/", "blobs/sha256/"):
            ti = tarfile.TarInfo(dname)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tar.addfile(ti)
        for name, raw in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(raw)
            ti.mode = 0o644
            tar.addfile(ti, io.BytesIO(raw))
    os.replace(tmp, a.out)
    print(f"{a.name} {manifest_digest} -> {a.out}")


if __name__ == "__main__":
    main()
