"""Load: many lifecycles at once, in random interleavings, with duplicate ids (issue 10,
must-show 4).

RUNH_LOAD_LIFECYCLES (default 100) lifecycles run concurrently, one thread each; about a
third share their id with another. The creators of one id race each other, and exactly
one of them may win (the others get runc's "container with id exists"). Then every
thread, winner or not, makes a random sequence of start, kill, delete, delete --force,
state, ps and list calls on its id, each through the native launcher or the Python CLI
at random, with random pauses; other ids are at every stage meanwhile, and two more
threads call `list` all along. Every call must
exit 0 or fail with one line (no traceback); every `list` must succeed and parse (it
once failed with "No such device" while a cgroup went away); every status reported must
be one of the spec's. At the end every id is force-deleted and nothing may be left:
processes, cgroups, mounts or state dirs. At most RUNH_LOAD_PROCS (default 16) runh
processes run at a time (2 cores here); the lifecycles themselves all overlap.

The draws come from random.Random(RUNH_LOAD_SEED) (default 1: the same interleaving
plan on every run, though the machine's timing varies it)."""

import json
import os
import random
import threading
import time

from conftest import _reap_containers, find_leftovers
from test_launcher import MODES, _env

N = int(os.environ.get("RUNH_LOAD_LIFECYCLES", "100"))
PROCS = int(os.environ.get("RUNH_LOAD_PROCS", "16"))
SEED = int(os.environ.get("RUNH_LOAD_SEED", "1"))
STATUSES = {"creating", "created", "running", "paused", "stopped"}
OPS = ["start", "start", "kill", "kill-all", "delete", "delete-force", "state", "state", "ps", "list", "list"]


def test_concurrent_lifecycles_one_winner_per_id_and_no_leaks(runh, ctx, make_bundle):
    b = make_bundle(args=["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"])
    rnd = random.Random(SEED)
    n_ids = max(1, (N * 2) // 3)
    ids = [ctx.new_id() for _ in range(n_ids)]
    plan = []  # (id, [ops], mode per op, pauses)
    for i in range(N):
        cid = ids[i] if i < n_ids else rnd.choice(ids)
        ops = [rnd.choice(OPS) for _ in range(rnd.randint(2, 7))]
        plan.append((cid, ops, [rnd.choice(MODES) for _ in ops], [rnd.random() * 0.03 for _ in range(len(ops) + 1)]))
    creators = {cid: sum(1 for p in plan if p[0] == cid) for cid in ids}
    created = {cid: threading.Event() for cid in ids}
    left = dict(creators)
    lock = threading.Lock()
    slots = threading.Semaphore(PROCS)
    wins = {cid: 0 for cid in ids}
    problems = []
    calls = [0]

    def call(*args, mode="python"):
        with slots:
            r = runh(*args, env=_env(mode), timeout=120)
        with lock:
            calls[0] += 1
        if "Traceback" in r.stderr or (r.returncode != 0 and (not r.stderr.startswith("runh: ")
                                                             or r.stderr.count("\n") != 1)):
            problems.append(f"{args} ({mode}): exit {r.returncode}: {r.stderr!r}")
        return r

    def lifecycle(cid, ops, modes, pauses):
        time.sleep(pauses[-1])
        r = call("create", "--bundle", b, cid)
        with lock:
            if r.returncode == 0:
                wins[cid] += 1
            elif r.stderr != f"runh: container with id exists: {cid}\n":
                problems.append(f"create {cid}: {r.stderr!r}")
            left[cid] -= 1
            if left[cid] == 0:
                created[cid].set()
        # No delete of an id until all its creators have tried: then "one winner" is
        # well defined (a create after a delete may rightly win again).
        created[cid].wait(120)
        for op, mode, pause in zip(ops, modes, pauses):
            time.sleep(pause)
            if op == "list":
                check_list()
            elif op == "state":
                r = call("state", cid, mode=mode)
                if r.returncode == 0 and json.loads(r.stdout)["status"] not in STATUSES:
                    problems.append(f"state {cid}: {r.stdout}")
            elif op == "ps":
                call("ps", "--format", "json", cid)
            elif op == "kill":
                call("kill", cid, "TERM", mode=mode)
            elif op == "kill-all":
                call("kill", "--all", cid, "KILL", mode=mode)
            elif op == "delete":
                call("delete", cid, mode=mode)
            elif op == "delete-force":
                call("delete", "--force", cid, mode=mode)
            else:
                call(op, cid, mode=mode)

    def check_list():
        r = call("list", "--format", "json")
        try:
            statuses = {s["status"] for s in json.loads(r.stdout)}
        except ValueError:
            problems.append(f"list printed no JSON: {r.stdout!r} {r.stderr!r}")
            return
        if r.returncode != 0 or not statuses <= STATUSES:
            problems.append(f"list: exit {r.returncode}, statuses {statuses}, {r.stderr!r}")

    done = threading.Event()

    def lister():
        # list all along, so that some list meets every moment of a delete (a cgroup
        # half gone made it fail with "No such device" once).
        while not done.is_set():
            check_list()

    threads = [threading.Thread(target=lifecycle, args=p) for p in plan]
    listers = [threading.Thread(target=lister) for _ in range(2)]
    t0 = time.time()
    for t in threads + listers:
        t.start()
    for t in threads:
        t.join(600)
    done.set()
    for t in listers:
        t.join(60)
    took = time.time() - t0
    for cid in ids:
        r = runh("delete", "--force", cid)
        assert r.returncode == 0 or r.stderr == f"runh: container {cid} does not exist\n", r.stderr
    deadline = time.time() + 5
    while True:
        _reap_containers()
        found = find_leftovers(ctx.token, ctx.root)
        if not found or time.time() > deadline:
            break
        time.sleep(0.1)
    shared = sum(1 for c in ids if creators[c] > 1)
    print(f"\n{N} lifecycles on {n_ids} ids ({shared} shared by 2 or more), {calls[0]} runh calls "
          f"in {took:.1f} s, at most {PROCS} at a time")
    assert not problems, "\n".join(problems[:20])
    assert {c: w for c, w in wins.items() if w != 1} == {}, "not exactly one winner per id"
    assert not found, f"left: {found}"
    assert [e for e in os.listdir(runh.root) if not e.startswith(".")] == []
