"""Module images: create's and run's runh modules in one file, executed without importlib.

Why: each runh module that create imports costs ~0.1 ms of CPU here in importlib's own
Python code (finders, specs, locks, stats, the .pyc's read and checks), before its body
runs. Measured in fresh processes (300 interleaved rounds, wait4 CPU): the 15 modules of
create took +4.5 ms median over a bare `python3.11 -I -S` when imported, and +3.1 ms when
their code objects came from one marshal file and were executed in dependency order;
1.1-1.3 ms of what is left is marshal.loads itself. A meta_path finder serving the same
blob saved nothing: it still runs importlib's machinery per module.

The launcher's BOOT (rust/launcher/src/python.rs) reads `runh/__pycache__/<cmd>.<tag>.image`
for create and run, and executes its loader (LOADER below) with the image's entries. The
loader checks every source's mtime and size, as a .pyc is checked, and executes nothing
unless all match; a module already in sys.modules is skipped; a body that raises takes
every module it added out of sys.modules again and the normal imports run (and raise). So
an image can only ever make imports faster, never change what runs.

An image is written (`build`) after a call that found none, or a stale one, or imported a
runh module that its image lacks (runh.cli's _from_image: say a host's cgroup v1 driver,
where the image was written on a v2 one): the runh modules that call ended with (those of
the old image among them), each compiled from its source, in an order where every module
comes after the runh modules its body imports (read from its syntax tree). Writing it
makes that call ~20-40 ms longer. A directory we cannot write (a rootless user's install)
is left alone.
"""

import sys

# The loader, compiled into each image: E holds (name, path, is_package, mtime_ns, size,
# code) rows in execution order (code None: a file only checked, this one's source).
LOADER = """
import posix
S = sys.modules
for _, p, _, m, n, _ in E:
    s = posix.stat(p)
    if s.st_mtime_ns != m or s.st_size != n:
        raise ImportError("stale image")
MS = S["_frozen_importlib"].ModuleSpec
FL = S["_frozen_importlib_external"].SourceFileLoader
M = type(sys)
added = []
try:
    for name, p, pkg, _, _, code in E:
        if code is None or name in S:
            continue
        m = M(name)
        m.__file__ = p
        m.__loader__ = FL(name, p)
        m.__spec__ = spec = MS(name, m.__loader__, origin=p, is_package=pkg)
        spec.has_location = True
        spec.loader_state = "runh image"  # the mark runh.cli._from_image looks for
        if pkg:
            m.__path__ = spec.submodule_search_locations = [p.rpartition("/")[0]]
        m.__package__ = name if pkg else name.rpartition(".")[0]
        S[name] = m
        added.append(name)
        exec(code, m.__dict__)
    # A package has its submodules as attributes, as after their imports.
    for name in added:
        parent, _, child = name.rpartition(".")
        if parent in S:
            setattr(S[parent], child, S[name])
except BaseException:
    for name in added:
        S.pop(name, None)
    raise
"""


def path(package_dir, command):
    """Where the image of `command` for this interpreter lives."""
    return f"{package_dir}/runh/__pycache__/{command}.{sys.implementation.cache_tag}.image"


def build(image):
    """Write `image` from the runh modules this process has imported (best effort: an
    image is only ever a shortcut, so any failure leaves things as they were)."""
    import marshal
    import os

    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    cache = os.path.dirname(image)
    if not os.access(os.path.dirname(cache), os.W_OK):
        return
    mods = {}
    for name, m in list(sys.modules.items()):
        f = getattr(m, "__file__", None)
        if (name == "runh" or name.startswith("runh.")) and name != __name__ and f and f.endswith(".py"):
            if os.path.abspath(f).startswith(pkg_dir + os.sep):
                mods[name] = (os.path.abspath(f), hasattr(m, "__path__"))
    if _same(image, mods):
        return
    rows = []
    for name in _order(mods):
        p, is_pkg = mods[name]
        with open(p, "rb") as f:
            src = f.read()
        st = os.stat(p)
        code = compile(_without_docstrings(src, p), p, "exec", dont_inherit=True)
        rows.append((name, p, is_pkg, st.st_mtime_ns, st.st_size, code))
    me = os.path.abspath(__file__)
    st = os.stat(me)
    rows.append(("runh._image", me, False, st.st_mtime_ns, st.st_size, None))
    data = marshal.dumps((compile(LOADER, "<runh image loader>", "exec"), tuple(rows)))
    os.makedirs(cache, 0o755, exist_ok=True)
    tmp = f"{image}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(tmp, image)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _same(image, mods):
    """Is `image` fresh and made of exactly `mods` already? Then writing it again would
    change nothing: a module its order cannot place (one imported by a function that a
    body calls, say) goes through importlib on every call, and this bounds what that costs
    to a read of the image instead of a rewrite per call (tests/test_module_image.py
    holds create and run to no such module)."""
    import marshal
    import os

    try:
        with open(image, "rb") as f:
            _, rows = marshal.loads(f.read())
        for _, p, _, m, n, _ in rows:
            st = os.stat(p)
            if (st.st_mtime_ns, st.st_size) != (m, n):
                return False
    except Exception:
        return False
    return {r[0] for r in rows if r[5] is not None} == set(mods)


def _without_docstrings(src, path):
    """The module's syntax tree without its docstrings, as -OO compiles it but keeping
    asserts: nothing in runh reads a __doc__ (click's help comes from cli/_table.py).
    The image is 14% smaller: 224 -> 192 KB for create's, and marshal.loads of it
    0.31 -> 0.21 ms (in a warm process)."""
    import ast

    tree = ast.parse(src, path)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.copy_location(ast.Pass(), body[0])]
    return tree


def _order(mods):
    """`mods`' names, each after the modules of `mods` that its body imports (outside
    functions), as a normal import finishes them; cycles keep sys.modules' order."""
    import ast

    def deps(name):
        p, is_pkg = mods[name]
        with open(p, "rb") as f:
            tree = ast.parse(f.read(), p)
        base = name if is_pkg else name.rpartition(".")[0]
        out = []

        def visit(nodes):
            for n in nodes:
                if isinstance(n, ast.Import):
                    for a in n.names:
                        parts = a.name.split(".")
                        out.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                elif isinstance(n, ast.ImportFrom):
                    mod = n.module or ""
                    if n.level:
                        anchor = base.rsplit(".", n.level - 1)[0] if n.level > 1 else base
                        mod = f"{anchor}.{mod}" if mod else anchor
                    parts = mod.split(".")
                    out.extend(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                    out.extend(f"{mod}.{a.name}" for a in n.names)
                elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    continue
                else:
                    visit(ast.iter_child_nodes(n))

        visit(tree.body)
        # Not the package itself: the loader executes a submodule's code directly, which
        # needs its package only if the code imports from it.
        return out

    order, state = [], {}

    def walk(name):
        if state.get(name):
            return
        state[name] = 1
        for d in deps(name):
            if d in mods and d != name:
                walk(d)
        order.append(name)

    for name in mods:
        walk(name)
    return order
