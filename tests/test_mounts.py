"""A store on a network file system is named in a warning (SPEC.md 5: `flock` does not hold
there). The mount table is given as text, in the kernel's format: no network file system can be
mounted on a test machine."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flux._engine.stores import files as file_store
from flux._engine.stores.mounts import filesystem_of, network_filesystem

MOUNTINFO = "\n".join([
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
    "23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw",
    r"40 22 0:50 / /mnt/team\040share rw,relatime shared:5 - nfs4 srv:/export rw,vers=4.2",
    r"41 40 8:17 / /mnt/team\040share/scratch rw,relatime shared:6 - ext4 /dev/sdb1 rw",
    "42 22 0:52 / /home/ann/remote rw,nosuid,nodev,relatime shared:7 - fuse.sshfs ann@box:/srv rw",
    "43 22 0:53 / /data rw - cifs //nas/data rw",
    "44 43 0:54 / /data rw - ext4 /dev/sdc1 rw",  # mounted over the share: it hides it
])


@pytest.mark.parametrize(
    "path,fstype,network",
    [
        ("/srv/flux", "ext4", None),
        ("/mnt/team share/.flux", "nfs4", "nfs4"),
        ("/mnt/team share", "nfs4", "nfs4"),
        ("/mnt/team share/scratch/.flux", "ext4", None),
        ("/mnt/team shared/.flux", "ext4", None),  # a longer name is not inside the mount
        ("/home/ann/remote/app/.flux", "fuse.sshfs", "fuse.sshfs"),
        ("/data/.flux", "ext4", None),
    ],
)
def test_the_file_system_of_a_path_is_that_of_the_innermost_mount_holding_it(
    path: str, fstype: str, network: str | None
) -> None:
    assert filesystem_of(path, MOUNTINFO) == fstype
    assert network_filesystem(path, MOUNTINFO) == network


def test_this_machines_own_mount_table_is_read() -> None:
    # The test's own directory is on some file system of this machine (a local one here).
    found = filesystem_of(str(Path(__file__).parent))
    assert isinstance(found, str) and found and network_filesystem(str(Path(__file__).parent)) is None


def test_a_store_on_a_network_file_system_says_so_once_when_it_first_locks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from flux import task, workflow

    @task
    async def one() -> int:
        return 1

    @workflow
    async def twice(ctx) -> int:  # type: ignore[no-untyped-def]
        return await one() + await one()

    table = MOUNTINFO + f"\n45 22 0:55 / {tmp_path} rw - nfs4 srv:/home rw"
    monkeypatch.setattr(file_store, "network_filesystem", lambda path: network_filesystem(path, table))
    store = file_store.FileStore(str(tmp_path / ".flux"))
    with caplog.at_level(logging.WARNING, logger="flux"):
        assert twice.run(store=store).output == 2
        assert twice.run(store=store).output == 2
    said = [r.getMessage() for r in caplog.records if "network file system" in r.getMessage()]
    assert said == [
        f"{tmp_path / '.flux'}: the store is on a network file system (nfs4), where file locks may not hold: "
        "two processes could both take an execution; keep stores on a local disk"
    ]
