"""User namespaces as root: the maps seen inside, ids of files written through a bind
mount, capabilities of the namespace's root, and config errors."""

import os

import pytest

from conftest import run_container, sh

BASE = 200000  # host ids of container root; nothing on this host owns them


def _userns(uid_maps=None, gid_maps=None, mount=None):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        c["linux"]["uidMappings"] = uid_maps or [{"containerID": 0, "hostID": BASE, "size": 65536}]
        c["linux"]["gidMappings"] = gid_maps or [{"containerID": 0, "hostID": BASE, "size": 65536}]
        if mount:
            # /mnt exists in the rootfs: the namespace's root (not host root) may not create
            # a mount point in a root-owned rootfs.
            c["mounts"].append({"destination": "/mnt", "type": "bind", "source": mount, "options": ["rbind"]})
    return edit


def _shared_dir(ctx):
    d = ctx.path("data")
    os.makedirs(d)
    os.chmod(d, 0o777)
    return d


def test_maps_inside(run_in):
    r = run_in(*sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g"), edit=_userns())
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    assert lines[0].split() == ["0", str(BASE), "65536"]
    assert lines[1].split() == ["0", str(BASE), "65536"]
    assert lines[2:4] == ["0", "0"]


def test_files_owned_by_mapped_ids(run_in, ctx):
    d = _shared_dir(ctx)
    edit = _userns(mount=d)

    def with_user(c):
        edit(c)
        c["process"]["user"] = {"uid": 1000, "gid": 1000}
    r = run_in(*sh("touch /mnt/as-user"), edit=with_user)
    assert r.returncode == 0, r.stderr
    r = run_in(*sh("touch /mnt/as-root && ls -ln /mnt"), edit=edit)
    assert r.returncode == 0, r.stderr
    st = os.stat(os.path.join(d, "as-root"))
    assert (st.st_uid, st.st_gid) == (BASE, BASE)
    st = os.stat(os.path.join(d, "as-user"))
    assert (st.st_uid, st.st_gid) == (BASE + 1000, BASE + 1000)


def test_split_maps(run_in, ctx):
    # Several ranges, root mapped apart from the rest.
    maps = [{"containerID": 0, "hostID": BASE, "size": 1},
            {"containerID": 1, "hostID": BASE + 100, "size": 1000}]
    r = run_in(*sh("cat /proc/self/uid_map"), edit=_userns(maps, maps))
    assert r.returncode == 0, r.stderr
    assert [l.split() for l in r.stdout.strip().split("\n")] == \
        [["0", str(BASE), "1"], ["1", str(BASE + 100), "1000"]]


def test_root_in_userns_keeps_its_capabilities(run_in):
    r = run_in(*sh("grep CapEff /proc/self/status"), edit=_userns())
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) != 0


def test_host_root_not_root_outside(run_in, ctx):
    # The container's root cannot write a host-root-owned file bind-mounted in.
    d = ctx.path("rootonly")
    os.makedirs(d)
    os.chmod(d, 0o755)
    r = run_in(*sh("touch /mnt/x 2>&1; echo rc=$?"), edit=_userns(mount=d))
    assert r.returncode == 0, r.stderr
    assert "rc=1" in r.stdout and not os.path.exists(os.path.join(d, "x"))


@pytest.mark.parametrize("maps,msg", [
    (None, "no uid or gid mappings"),
    ([{"containerID": 1, "hostID": BASE, "size": 10}], "no root user mapping"),
])
def test_config_errors(runh, ctx, make_bundle, maps, msg):
    def edit(c):
        c["linux"]["namespaces"].append({"type": "user"})
        if maps:
            c["linux"]["uidMappings"] = maps
            c["linux"]["gidMappings"] = maps
    b = make_bundle(args=["true"], edit=edit)
    r = run_container(runh, ctx, b)
    assert r.returncode != 0 and msg in r.stderr, r.stderr
    assert os.listdir(ctx.root) == []


def test_mappings_without_userns_rejected(runh, ctx, make_bundle):
    b = make_bundle(args=["true"], edit=lambda c: c["linux"].update(
        uidMappings=[{"containerID": 0, "hostID": BASE, "size": 1}],
        gidMappings=[{"containerID": 0, "hostID": BASE, "size": 1}]))
    r = run_container(runh, ctx, b)
    assert r.returncode != 0 and "user namespace" in r.stderr, r.stderr
