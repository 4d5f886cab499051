"""Shared body of pause and resume."""

from runh import state as st
from runh.errors import ContainerNotFound, ContainerNotRunning, InvalidState, NotSupported


def set_frozen(container_id, root, frozen):
    from runh.container import Container

    c = Container.load(container_id, root)
    with st.Lock(c.dir) as lk:
        if lk is None:
            raise ContainerNotFound(container_id)
        c._state = st.read_state(root, container_id)
        status = c.status()
        want = st.RUNNING if frozen else st.PAUSED
        if status != want:
            if status in (st.STOPPED, st.CREATING):
                raise ContainerNotRunning(container_id)
            raise InvalidState(f"container not {want}: {status}" if frozen or status != st.RUNNING
                               else "container not paused")
        cg = c.cgroup()
        if cg is None:
            raise NotSupported("this container was created without a cgroup; cannot pause it")
        cg.freeze() if frozen else cg.thaw()
