//! runh-init: the first program in every runh container.
//!
//! Exec'd by the runh process's clone child, read-only (a detached read-only bind of the
//! installed file, or a sealed memfd: runh-core's `initexe.rs`) as `runh-init <sync fd>`.
//! It reads its plan over the sync socket, does all container setup in order, reports "ready", parks on the notify socket until
//! `runh start` connects, then drops privileges and execs the container's process.
//! Every failure is reported: on the sync socket during setup, on the start connection
//! after it.
#![no_main]
use _core::error::{Error, Kind, Result};
use _core::spec::Spec;
use _core::sync::{self, Msg, Plan};
use _core::{caps, hooks, idmap, lsm, namespaces, network, procattr, process, rootfs, timing, tty, userns};
use std::os::fd::RawFd;

/// What survives the park: the parsed config and plan are dropped before it, so that the
/// parked init holds as little memory as possible (it is charged to the container).
struct Parked {
    notify_fd: RawFd,
    preserve_fds: i32,
    user: _core::spec::User,
    caps: caps::Sets,
    no_new_privileges: bool,
    seccomp: Option<Seccomp>,
    /// startContainer hooks and the state JSON they get.
    start_hooks: Option<(Vec<hooks::Hook>, Vec<u8>)>,
    attrs: procattr::Attrs,
    lsm: lsm::ExecAttrs,
    exec: process::Exec,
}

/// linux.seccomp as the parent compiled it, kept across the park.
struct Seccomp {
    program: Vec<u8>,
    flags: u32,
    /// The socket connected to listenerPath and the state JSON to send on it.
    listener: Option<(RawFd, String)>,
}

impl Seccomp {
    /// seccomp(2), then hand the SCMP_ACT_NOTIFY listener (if any) to the agent.
    fn load(&self) -> Result<()> {
        _core::seccomp::notify::load_and_hand_over(&self.program, self.flags, self.listener.as_ref())
    }
}

fn cloexec(fd: RawFd) {
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn setup(sync_fd: RawFd) -> Result<Parked> {
    let (plan, config) = sync::recv_plan(sync_fd)?;
    let program = sync::recv_seccomp(sync_fd, plan.seccomp_len)?;
    let Plan { notify_fd, console_fd, preserve_fds, .. } = plan;
    // Inherited without CLOEXEC across the exec into this program; restore it.
    cloexec(notify_fd);
    if let Some(fd) = console_fd {
        cloexec(fd);
    }
    if let Some(fd) = plan.seccomp_listener_fd {
        cloexec(fd);
    }
    let seccomp = (!program.is_empty()).then(|| Seccomp {
        program,
        flags: plan.seccomp_flags,
        listener: plan.seccomp_listener_fd.zip(plan.seccomp_state.clone()),
    });
    let mut spec: Spec = sync::parse_config(&config)?;
    drop(config);
    let ns = namespaces::Plan::from_spec(&spec)?;
    // The new namespaces init makes itself (a user namespace joined by path, or a new
    // one made here): after the user namespace, so that it owns them (namespaces.rs). A
    // new pid namespace with a new time namespace is unshared together with it below.
    let later = if userns::new_timens(&spec) { libc::CLONE_NEWPID } else { 0 };
    let unshare_new = || -> Result<()> {
        let flags = ns.unshare_flags() & !later;
        if flags != 0 && unsafe { libc::unshare(flags) } < 0 {
            return Err(Error::last_os("unshare the new namespaces in the container's user namespace"));
        }
        Ok(())
    };
    let mut joined_mount = None;
    if ns.late_userns() {
        // Join the paths while still host root, then make the user namespace and the
        // rest in it; the parent writes the maps (sync::Msg::UserNs), and then we
        // become the namespace's root.
        joined_mount = Some(ns.join_all()?);
        if unsafe { libc::unshare(libc::CLONE_NEWUSER) } < 0 {
            return Err(Error::last_os("unshare the user namespace"));
        }
        unshare_new()?;
        sync::send(sync_fd, &Msg::UserNs)?;
        match sync::recv(sync_fd)? {
            Some(Msg::IdsMapped) => {}
            Some(other) => return Err(other.into_error("ids mapped")),
            None => return Err(Error::sync("parent closed the sync socket before mapping the user namespace")),
        }
        userns::become_root()?;
    }
    idmap::recv(sync_fd, &mut spec)?;
    timing::init_stamp(1);

    // Its own mount namespace, or runh's (none listed, or runh's own joined by path):
    // then nothing may be mounted (rootfs::prepare_shared).
    let joined_mount = match joined_mount {
        Some(j) => j,
        None => ns.join_all()?,
    };
    let private_mount = joined_mount || ns.clone_flags & libc::CLONE_NEWNS as u64 != 0;
    if ns.joins_user() {
        // Joined by path: become its root, then make the new namespaces now.
        userns::become_root()?;
        unshare_new()?;
    }
    let attrs = procattr::Attrs::from_spec(&spec)?;
    attrs.apply_initial()?;
    let new_time = userns::new_timens(&spec);
    if new_time {
        // The parent cloned without CLONE_NEWTIME/CLONE_NEWPID: see userns.rs.
        let pidns = if ns.clone_flags & libc::CLONE_NEWPID as u64 != 0 { libc::CLONE_NEWPID } else { 0 };
        userns::unshare_time(userns::time_offsets(&spec)?.as_deref(), pidns)?;
    }
    if ns.init_forks(new_time) {
        namespaces::fork_into_pid_namespace(sync_fd, "the joined pid namespace")?;
    }
    if plan.unshare_cgroupns && unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } < 0 {
        return Err(Error::last_os("unshare the cgroup namespace"));
    }
    if ns.clone_flags & libc::CLONE_NEWNET as u64 != 0 {
        // A new network namespace: its loopback up, as runc and crun do.
        network::loopback_up()?;
    }
    // A session of its own: the container must not share runh's controlling terminal or
    // process group (and TIOCSCTTY below needs a session leader).
    if unsafe { libc::setsid() } < 0 {
        return Err(Error::last_os("setsid"));
    }
    if !plan.no_new_keyring {
        // A new anonymous session keyring, so containers do not share the host's keys;
        // labelled with the process's SELinux label, as runc does.
        let key_label = spec.process.as_ref().and_then(|p| lsm::ExecAttrs::of_process(p).selinux);
        if key_label.is_some() {
            lsm::set_keycreate(key_label.as_deref())?;
        }
        const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
        let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0usize) };
        if r < 0 {
            let e = Error::last_os("create a session keyring");
            // ENOSYS: keyrings compiled out; not a reason to fail.
            if e.errno != libc::ENOSYS {
                return Err(e);
            }
        }
        if key_label.is_some() {
            lsm::set_keycreate(None)?;
        }
    }

    timing::init_stamp(2);
    // Hooks point (runtime.md "Lifecycle"): namespaces exist, mounts are in place, no
    // pivot_root yet. The parent runs prestart/createRuntime, then createContainer runs
    // here (its path resolves in the runtime's mount view, which is still ours).
    let mut hook_state: Vec<u8> = Vec::new();
    let mut run_hooks = || -> Result<()> {
        if !plan.hooks_sync {
            return Ok(());
        }
        sync::send(sync_fd, &Msg::Hooks)?;
        hook_state = match sync::recv(sync_fd)? {
            Some(Msg::HooksDone(s)) => s,
            Some(other) => return Err(other.into_error("hooks done")),
            None => return Err(Error::sync("parent closed the sync socket during the hooks")),
        };
        hooks::run_all(&hooks::from_spec(&spec, "createContainer")?, &hook_state, "createContainer")
    };
    // A bind source init may not open (a user namespace): runh opens it (mounts.rs).
    let host_source = |i: u32| -> Result<std::os::fd::OwnedFd> {
        sync::send(sync_fd, &Msg::MountSource(i))?;
        match tty::recv_fd_opt(sync_fd)? {
            (Some(fd), _) => Ok(fd),
            (None, payload) => Err(Msg::decode(&payload)?.into_error("a mount source")),
        }
    };
    let ropts = rootfs::RootfsOptions {
        rootfs: &plan.rootfs,
        bundle: &plan.bundle,
        no_pivot: plan.no_pivot,
        cgroup2_bind: plan.cgroup2_bind.as_deref(),
        private_mount,
        host_source: Some(&host_source),
    };
    rootfs::prepare_with(&spec, &ropts, &mut run_hooks)?;
    timing::init_stamp(3);
    let start_hooks = hooks::from_spec(&spec, "startContainer")?;
    let start_hooks = (!start_hooks.is_empty()).then(|| (start_hooks, hooks::with_status(&hook_state, "created")));

    let p = spec.process.as_ref().ok_or_else(|| Error::config("process is required"))?;
    if p.terminal {
        let fd = console_fd.ok_or_else(|| Error::config("process.terminal is true but no console socket was given"))?;
        tty::setup_console(fd, p.console_size)?;
    }
    if let Some(fd) = console_fd {
        unsafe { libc::close(fd) };
    }
    if let Some(h) = spec.hostname.as_deref().filter(|h| !h.is_empty()) {
        if !ns.has(libc::CLONE_NEWUTS) {
            return Err(Error::config("unable to set hostname without a private UTS namespace"));
        }
        if unsafe { libc::sethostname(h.as_ptr().cast(), h.len()) } < 0 {
            return Err(Error::last_os(format!("sethostname {h:?}")));
        }
    }
    if let Some(d) = spec.domainname.as_deref().filter(|d| !d.is_empty()) {
        if !ns.has(libc::CLONE_NEWUTS) {
            return Err(Error::config("unable to set domainname without a private UTS namespace"));
        }
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } < 0 {
            return Err(Error::last_os(format!("setdomainname {d:?}")));
        }
    }
    _core::sysctl::apply(&spec)?;
    timing::init_stamp(4);
    if spec.root.as_ref().is_some_and(|r| r.readonly) {
        // Before / turns read-only, as runc creates it (enter_cwd below does it otherwise).
        process::make_cwd(&p.cwd)?;
    }
    if private_mount {
        rootfs::finalize(&spec)?;
    }
    timing::init_stamp(5);

    if let Some(v) = p.oom_score_adj {
        process::set_oom_score_adj(v)?;
    }
    process::set_rlimits(&p.rlimits)?;
    let mut exec = process::Exec::prepare(p)?;
    _core::exec::add_default_home(&mut exec, p.user.uid); // runc's HOME when env has none
    if plan.fix_listen_pid {
        // runc writes LISTEN_PID=1; the real pid (the same after execve, and after any
        // fork above) is right with or without a pid namespace of its own.
        _core::exec::set_listen_pid(&mut exec);
    }
    let caps = caps::Sets::of_process(p)?;
    process::enter_cwd(&p.cwd, true)?;
    attrs.apply_mempolicy()?;
    timing::init_stamp(6);

    Ok(Parked {
        notify_fd,
        preserve_fds,
        user: p.user.clone(),
        caps,
        no_new_privileges: p.no_new_privileges,
        seccomp,
        start_hooks,
        attrs,
        lsm: lsm::ExecAttrs::of_process(p),
        exec,
    })
}

/// Before parking: drop this process's mappings of runh-init's own read-only, never
/// written pages (text, rodata, eh_frame: the PT_LOAD segments without PF_W), so that the
/// parked init does not count the setup's code in its VmRSS. Fault-around maps every page
/// of the file that is in the page cache, so all 1.3 MB of the static-glibc init's text
/// was resident in every parked init (RssFile, or RssShmem from the memfd). MADV_DONTNEED
/// only drops page-table entries of these clean file pages: the page cache keeps them, and
/// start refaults the few it runs (minor faults, measured in docs/SECURITY.md's VmRSS
/// test figures). Writable segments and RELRO hold relocated data and are never touched.
///
/// Returns the page ranges; `park` drops them right before it blocks, with raw syscalls
/// only: every 64 KB window of code run after the drop is mapped again by fault-around
/// (measured: dropping them a few calls earlier left 512 KB of text resident).
fn setup_text() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    #[cfg(target_pointer_width = "64")]
    unsafe {
        let phdr = libc::getauxval(libc::AT_PHDR) as usize;
        let phnum = libc::getauxval(libc::AT_PHNUM) as usize;
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        if phdr == 0 || page == 0 {
            return out;
        }
        let phdrs = std::slice::from_raw_parts(phdr as *const libc::Elf64_Phdr, phnum);
        // The load bias: where PT_PHDR is mapped against its link address (0 for a
        // non-PIE). Without PT_PHDR the bias is unknown: leave everything mapped.
        let Some(bias) = phdrs.iter().find(|p| p.p_type == libc::PT_PHDR).map(|p| phdr.wrapping_sub(p.p_vaddr as usize)) else {
            return out;
        };
        let span = |p: &libc::Elf64_Phdr| {
            let start = bias + p.p_vaddr as usize;
            (start & !(page - 1), (start + p.p_memsz as usize + page - 1) & !(page - 1))
        };
        let keep: Vec<(usize, usize)> = phdrs
            .iter()
            .filter(|p| (p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W != 0) || p.p_type == libc::PT_GNU_RELRO)
            .map(span)
            .collect();
        for p in phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD && p.p_flags & libc::PF_W == 0) {
            let (mut s, mut e) = span(p);
            for &(ks, ke) in &keep {
                if ks <= s && s < ke {
                    s = ke;
                }
                if ks < e && e <= ke {
                    e = ks;
                }
                if s < ks && ke < e {
                    e = ks; // a writable range inside: keep everything from it on
                }
            }
            if s < e {
                out.push((s, e - s));
            }
        }
    }
    out
}

/// Wait for `runh start`: accept on notify.sock and read its one byte. `text` (from
/// `setup_text`) is dropped just before the first accept blocks.
fn park(notify_fd: RawFd, text: &[(usize, usize)]) -> Result<RawFd> {
    for &(addr, len) in text {
        unsafe { libc::syscall(libc::SYS_madvise, addr, len, libc::MADV_DONTNEED) };
    }
    loop {
        let null = std::ptr::null_mut::<libc::c_void>();
        let conn = unsafe { libc::syscall(libc::SYS_accept4, notify_fd, null, null, libc::SOCK_CLOEXEC) } as i32;
        if conn < 0 {
            let e = Error::last_os("accept on notify.sock");
            if e.errno == libc::EINTR || e.errno == libc::ECONNABORTED {
                continue;
            }
            return Err(e);
        }
        let mut b = [0u8; 1];
        let n = unsafe { libc::read(conn, b.as_mut_ptr().cast(), 1) };
        if n == 1 {
            // No second start can connect from here on.
            unsafe { libc::close(notify_fd) };
            return Ok(conn);
        }
        // A peer that connected and left without the byte is not `start`.
        unsafe { libc::close(conn) };
    }
}

/// After start: the startContainer hooks, then process::finish (user, capabilities,
/// umask, no_new_privs, seccomp, the fd sweep), execve.
fn finish(p: &Parked) -> Error {
    let r = (|| -> Result<()> {
        // In the container, before anything is dropped (runtime.md: after start, before
        // the program).
        if let Some((h, state)) = &p.start_hooks {
            hooks::run_all(h, state, "startContainer")?;
        }
        let f = process::Final {
            attrs: &p.attrs,
            caps: &p.caps,
            user: &p.user,
            no_new_privileges: p.no_new_privileges,
            preserve_fds: p.preserve_fds,
            lsm: &p.lsm,
        };
        process::finish(&f, || p.seccomp.as_ref().map_or(Ok(()), |s| s.load()))
    })();
    match r {
        Err(e) => e,
        Ok(()) => p.exec.exec(),
    }
}

/// A C `main`, not std's: runh-core's `rt` says why.
#[no_mangle]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    run()
}

fn run() -> ! {
    // Non-dumpable from the first instruction to the final execve (which makes the
    // container's program dumpable again): no process of the container may ptrace this
    // one or open its /proc/<pid>/{exe,root,cwd,fd,mem} while it holds host fds, a host
    // root (before pivot_root) or host privileges (issue 17 item 2, issue 10 item 1).
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    _core::rt::start(false);
    timing::init_stamp(0);
    process::reset_signals();
    let sync_fd: RawFd = match std::env::args().nth(1).and_then(|a| a.parse().ok()) {
        Some(fd) => fd,
        None => {
            eprintln!("runh-init: this program is run by runh, not by hand");
            std::process::exit(2);
        }
    };
    cloexec(sync_fd);
    if std::env::args().next().as_deref() == Some(_core::exec::EXEC_ARGV0) {
        _core::exec::init_main(sync_fd); // `runh exec`: join a running container, execve
    }
    let parked = match setup(sync_fd) {
        Ok(p) => p,
        Err(e) => {
            let _ = sync::send(sync_fd, &Msg::from_error(&e));
            std::process::exit(1);
        }
    };
    // Phase stamps for RUNH_TIMING (timing.rs): one message, just before Ready.
    let _ = sync::send(sync_fd, &Msg::Times(timing::init_times()));
    if sync::send(sync_fd, &Msg::Ready).is_err() {
        // The parent is gone: nobody can start this container.
        std::process::exit(1);
    }
    unsafe {
        libc::close(sync_fd);
        // Give the setup's heap back to the kernel before parking (musl's allocator
        // returns large frees by itself and has no malloc_trim).
        #[cfg(target_env = "gnu")]
        libc::malloc_trim(0);
    }
    let text = setup_text();
    let conn = match park(parked.notify_fd, &text) {
        Ok(c) => c,
        Err(_) => std::process::exit(1),
    };
    let e = finish(&parked);
    let _ = sync::send_raw(conn, &Msg::from_error(&e).encode());
    std::process::exit(if e.kind == Kind::Exec { 127 } else { 1 });
}
