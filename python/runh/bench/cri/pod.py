"""A pod as kubelet drives it: a sandbox on a handler, containers in it, their logs, and
removal (sandbox, then the pod's cgroup parent, which kubelet owns and removes itself)."""

import os
import secrets

from .containerd import remove_cgroup_tree


class Pod:
    """RunPodSandbox on `handler` with cgroup parent `cgroup_parent` (e.g. /<token>-pod1)
    and logs under `log_dir`; keyword arguments go to Cri.pod_config."""

    def __init__(self, cd, cri, handler, name, cgroup_parent, log_dir, **kw):
        self.cd, self.cri, self.handler = cd, cri, handler
        self.name, self.cgroup_parent, self.log_dir = name, cgroup_parent, log_dir
        os.makedirs(log_dir, exist_ok=True)
        # Registered first: whatever happens next, stop() removes the parent.
        cd.cgroup_parents.add(cgroup_parent)
        # Containers share the pod's PID namespace when the pod asks for it, as kubelet sets.
        self.pid_mode = "POD" if kw.get("pid") == "POD" else "CONTAINER"
        self.config = cri.pod_config(name=name, uid=secrets.token_hex(8), cgroup_parent=cgroup_parent,
                                     log_directory=log_dir, **kw)
        self.id = cri.run_pod(self.config, handler)
        self.containers = {}

    def create(self, name, args, start=True, **kw):
        """CreateContainer (and StartContainer); returns the container id."""
        kw.setdefault("pid", self.pid_mode)
        cfg = self.cri.container_config(name, args, **kw)
        cid = self.cri.create_container(self.id, cfg, self.config)
        self.containers[name] = cid
        if start:
            self.cri.start_container(cid)
        return cid

    def log(self, name):
        """The container's output from its CRI log file (`<time> <stream> <P|F> <text>`
        lines): the text, lines joined as the process wrote them."""
        path = os.path.join(self.log_dir, f"{name}.log")
        out = []
        with open(path, errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 3)
                if len(parts) == 4:
                    out.append(parts[3] + ("\n" if parts[2] == "F" else ""))
        return "".join(out)

    def remove(self):
        """StopPodSandbox + RemovePodSandbox, then the pod's cgroup parent. Returns the
        cgroup directories that could not be removed."""
        self.cri.stop_pod(self.id)
        self.cri.remove_pod(self.id)
        left = remove_cgroup_tree(self.cgroup_parent)
        if not left:
            self.cd.cgroup_parents.discard(self.cgroup_parent)
        return left
