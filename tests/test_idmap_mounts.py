"""Idmapped bind mounts (mounts[].uidMappings/gidMappings, runc's idmap/ridmap options),
and joining another container's user namespace by path."""

import os
import time

from conftest import sh

BASE = 200000  # host ids of a container's root; nothing on this host owns them


def _src(ctx, uid, gid):
    d = ctx.path("idsrc")
    os.makedirs(d)
    f = os.path.join(d, "f")
    open(f, "w").close()
    os.chown(f, uid, gid)
    return d


def _mount(src, uids=None, gids=None, options=("bind",)):
    m = {"destination": "/mnt", "type": "bind", "source": src, "options": list(options)}
    if uids is not None:
        m["uidMappings"], m["gidMappings"] = uids, gids
    return m


def _userns(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]
    c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": BASE, "size": 65536}]


def _owner(r):
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_idmapped_mount_without_userns(run_in, ctx):
    """Host file 1000:1001 seen as 5:7 in a container that shares the host's user ns."""
    d = _src(ctx, 1000, 1001)
    one = lambda c, h: [{"containerID": c, "hostID": h, "size": 1}]
    r = run_in(*sh("stat -c '%u %g' /mnt/f"),
               edit=lambda c: c["mounts"].append(_mount(d, one(1000, 5), one(1001, 7))))
    assert _owner(r) == ["5", "7"]
    st = os.stat(os.path.join(d, "f"))
    assert (st.st_uid, st.st_gid) == (1000, 1001)  # the host file is untouched


def test_idmapped_mount_with_userns_own_mapping(run_in, ctx):
    """runc's idmap.bats case: host root's file appears as the container's root, through
    the container's own user namespace (mappings equal)."""
    d = _src(ctx, 0, 0)
    maps = [{"containerID": 0, "hostID": BASE, "size": 65536}]

    def edit(c):
        _userns(c)
        c["mounts"].append(_mount(d, maps, maps))
    assert _owner(run_in(*sh("stat -c '%u %g' /mnt/f"), edit=edit)) == ["0", "0"]


def test_idmapped_mount_with_userns_other_mapping(run_in, ctx):
    """A mapping unlike the container's: a throwaway user namespace carries it. Host
    1000 -> host BASE+42, which is 42 in the container."""
    d = _src(ctx, 1000, 1000)
    maps = [{"containerID": 1000, "hostID": BASE + 42, "size": 1}]

    def edit(c):
        _userns(c)
        c["mounts"].append(_mount(d, maps, maps))
    assert _owner(run_in(*sh("stat -c '%u %g' /mnt/f"), edit=edit)) == ["42", "42"]


def test_idmap_option_uses_container_mapping(run_in, ctx):
    """`idmap` with no mappings: the container's user namespace mapping."""
    d = _src(ctx, 3, 4)

    def edit(c):
        _userns(c)
        c["mounts"].append(_mount(d, options=("rbind", "idmap")))
    assert _owner(run_in(*sh("stat -c '%u %g' /mnt/f"), edit=edit)) == ["3", "4"]


def test_idmapped_mount_readonly_and_writes_mapped(run_in, ctx):
    """Files created through an idmapped mount are stored with the mapped-back ids; 'ro'
    still applies."""
    d = _src(ctx, 0, 0)
    os.chmod(d, 0o777)
    maps = [{"containerID": 0, "hostID": BASE, "size": 65536}]

    def edit(c):
        _userns(c)
        c["mounts"].append(_mount(d, maps, maps))
        c["mounts"].append(dict(_mount(d, maps, maps, options=("bind", "ro")), destination="/root"))
    r = run_in(*sh("touch /mnt/new && (touch /root/x 2>/dev/null && echo rw || echo ro)"), edit=edit)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ro"]
    st = os.stat(os.path.join(d, "new"))
    assert (st.st_uid, st.st_gid) == (0, 0)  # container root -> BASE -> on disk 0


def test_idmap_errors(run_in, ctx):
    d = _src(ctx, 0, 0)
    one = [{"containerID": 0, "hostID": 1, "size": 1}]
    # No user namespace to take the mapping from.
    r = run_in("true", edit=lambda c: c["mounts"].append(_mount(d, options=("bind", "idmap"))))
    assert r.returncode != 0 and "user namespace" in r.stderr
    # Only bind mounts.
    r = run_in("true", edit=lambda c: c["mounts"].append(
        {"destination": "/t", "type": "tmpfs", "source": "tmpfs", "uidMappings": one, "gidMappings": one}))
    assert r.returncode != 0 and "bind" in r.stderr


def test_idmap_cost(runh, ctx, make_bundle):
    """Figures for the report: run with a throwaway-namespace idmapped mount vs plain bind."""
    d = _src(ctx, 1000, 1000)
    maps = [{"containerID": 1000, "hostID": 5, "size": 1}]
    plain = make_bundle(args=["true"], edit=lambda c: c["mounts"].append(_mount(d)))
    mapped = make_bundle(args=["true"], edit=lambda c: c["mounts"].append(_mount(d, maps, maps)))
    out = {}
    for name, b in (("bind", plain), ("idmap", mapped)):
        times = []
        for _ in range(5):
            cid = ctx.new_id()
            t = time.perf_counter()
            r = runh("run", "--bundle", b, cid)
            times.append(time.perf_counter() - t)
            assert r.returncode == 0, r.stderr
        out[name] = sorted(times)[2] * 1000
    print(f"\nrunh run median: plain bind {out['bind']:.1f} ms, idmapped (throwaway userns) {out['idmap']:.1f} ms")


def test_join_user_namespace_of_other_container(runh, ctx, make_bundle):
    """linux.namespaces[{type: user, path}] joins it first (runc's order), writes no maps;
    the new namespaces are owned by it, so the container's root can mount there."""
    a = make_bundle(args=["sleep", "100"], edit=_userns)
    ida = ctx.new_id()
    pf = ctx.path("a.pid")
    r = runh("create", "--bundle", a, "--pid-file", pf, ida)
    assert r.returncode == 0, r.stderr
    try:
        pid = int(open(pf).read())

        def edit(c):
            # Its network namespace too: owned by that user namespace, joined after it.
            c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
            c["linux"]["namespaces"] += [{"type": "user", "path": f"/proc/{pid}/ns/user"},
                                         {"type": "network", "path": f"/proc/{pid}/ns/net"}]
            c["linux"].pop("uidMappings", None)
            c["linux"].pop("gidMappings", None)
        b = make_bundle(args=sh("readlink /proc/self/ns/user; cat /proc/self/uid_map; id -u; "
                                "grep CapEff /proc/self/status; readlink /proc/self/ns/net; "
                                "readlink /proc/self/ns/pid; echo $$"), edit=edit)
        idb = ctx.new_id()
        r = runh("run", "--bundle", b, idb)
        runh("delete", "--force", idb)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.split("\n")
        assert lines[0] == os.readlink(f"/proc/{pid}/ns/user")
        assert lines[1].split() == ["0", str(BASE), "65536"]
        assert lines[2] == "0"
        assert int(lines[3].split()[1], 16) != 0
        assert lines[4] == os.readlink(f"/proc/{pid}/ns/net")
        # A new pid namespace of its own (unshared by init after the setns), as pid 1.
        assert lines[5] not in (os.readlink(f"/proc/{pid}/ns/pid"), os.readlink("/proc/self/ns/pid"))
        assert lines[6] == "1"
    finally:
        runh("delete", "--force", ida)


def test_features_say_idmap(runh):
    import json
    r = runh("features")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["linux"]["mountExtensions"]["idmap"]["enabled"] is True
    assert {"idmap", "ridmap"} <= set(f["mountOptions"])


def test_ridmap_maps_submounts(runh, ctx, make_bundle):
    """ridmap idmaps every mount of an rbind tree; idmap only its top. The submount (a
    tmpfs) is made in a private mount namespace that runh runs in, so nothing reaches
    the host."""
    import subprocess
    d = _src(ctx, 1000, 1000)
    os.makedirs(os.path.join(d, "sub"))
    maps = [{"containerID": 1000, "hostID": 5, "size": 1}]
    out = {}
    for opt in ("idmap", "ridmap"):
        b = make_bundle(args=sh("stat -c %u /mnt/f /mnt/sub/g"), edit=lambda c, o=opt: c["mounts"].append(
            _mount(d, maps, maps, options=("rbind", o))))
        cid = ctx.new_id()
        script = (f"mount -t tmpfs none {d}/sub && touch {d}/sub/g && chown 1000:1000 {d}/sub/g && "
                  f"exec {' '.join(runh.argv('run', '--bundle', b, cid))}")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                           capture_output=True, text=True, timeout=60)
        if os.path.exists(os.path.join(ctx.root, cid)):
            runh("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        out[opt] = r.stdout.split()
    assert out["idmap"] == ["5", "1000"]
    assert out["ridmap"] == ["5", "5"]


def test_unknown_capability_warning_in_json_log(runh, ctx, make_bundle):
    """The warning goes to --log as a logrus JSON line with level "warning", as runc's."""
    import json

    def edit(c):
        c["process"]["capabilities"]["effective"] += ["CAP_ZZZ", "CAP_AAA", "CAP_ZZZ"]
    b = make_bundle(args=["true"], edit=edit)
    log = ctx.path("log.json")
    cid = ctx.new_id()
    r = runh("--log", log, "--log-format", "json", "run", "--bundle", b, cid)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(l) for l in open(log)]
    warn = [l for l in lines if l["level"] == "warning"]
    assert [w["msg"] for w in warn] == ["ignoring unknown or unavailable capabilities: [CAP_AAA CAP_ZZZ]"]
