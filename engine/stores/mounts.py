"""Which file system a store's directory is on: `flock` does not hold on network file systems
(SPEC.md 5), so a store found on one is named in a warning. Linux only (`/proc/self/mountinfo`);
elsewhere nothing is known and nothing is said."""

from __future__ import annotations

import os

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_of", "network_filesystem"]

# File system types (as mountinfo names them) whose locks are not to be trusted between machines.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "ceph", "glusterfs", "lustre", "gpfs", "9p",
    "fuse.sshfs", "fuse.glusterfs", "fuse.cephfs", "fuse.s3fs", "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
})


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a path as octal escapes."""
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def filesystem_of(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the file system `path` is on (the mount with the longest mount point that
    holds it), from `mountinfo` (the text of /proc/self/mountinfo, read when not given); None
    when it cannot be known."""
    if mountinfo is None:
        try:
            with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
                mountinfo = f.read()
        except OSError:
            return None
    target = os.path.realpath(path)
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        point = _unescape(fields[4])
        fstype = fields[fields.index("-", 6) + 1]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= best[0]):
            best = (len(point), fstype)  # a later mount over the same point hides the earlier one
    return None if best is None else best[1]


def network_filesystem(path: str, mountinfo: str | None = None) -> str | None:
    """The network file system type `path` is on, or None."""
    fstype = filesystem_of(path, mountinfo)
    return fstype if fstype in NETWORK_FILESYSTEMS else None
