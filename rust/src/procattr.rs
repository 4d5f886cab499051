//! Process attributes that survive execve and so are set by init on itself just before
//! it execs the container's process: linux.personality (personality(2)),
//! process.scheduler (sched_setattr), process.ioPriority (ioprio_set) and
//! process.execCPUAffinity (sched_setaffinity: `initial` as soon as init runs, `final`
//! right before execve) and linux.memoryPolicy (set_mempolicy, before `Ready`, for init
//! and for every exec'd process, as runc).
//!
//! Parsed once during setup, so a bad value fails `create`, not `start`.
use crate::error::{Error, Result};
use crate::spec::Spec;
use serde_json::Value;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

#[derive(Clone)]
pub struct Attrs {
    pub personality: Option<libc::c_ulong>,
    pub sched: Option<SchedAttr>,
    /// ioprio_set's value: class << 13 | level.
    pub ioprio: Option<i32>,
    pub initial_cpus: Option<libc::cpu_set_t>,
    pub final_cpus: Option<libc::cpu_set_t>,
    pub mempolicy: Option<MemPolicy>,
}

/// linux.memoryPolicy as set_mempolicy(2)'s three arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct MemPolicy {
    /// MPOL_* mode | MPOL_F_* flags.
    pub mode: libc::c_int,
    /// The node mask (empty: NULL).
    pub nodes: Vec<libc::c_ulong>,
}

const MPOL_MODES: &[(&str, libc::c_int)] = &[
    ("MPOL_DEFAULT", 0),
    ("MPOL_PREFERRED", 1),
    ("MPOL_BIND", 2),
    ("MPOL_INTERLEAVE", 3),
    ("MPOL_LOCAL", 4),
    ("MPOL_PREFERRED_MANY", 5),
    ("MPOL_WEIGHTED_INTERLEAVE", 6),
];
const MPOL_F_NUMA_BALANCING: libc::c_int = 1 << 13;
const MPOL_F_RELATIVE_NODES: libc::c_int = 1 << 14;
const MPOL_F_STATIC_NODES: libc::c_int = 1 << 15;
const MPOL_FLAGS: &[(&str, libc::c_int)] = &[
    ("MPOL_F_NUMA_BALANCING", MPOL_F_NUMA_BALANCING),
    ("MPOL_F_RELATIVE_NODES", MPOL_F_RELATIVE_NODES),
    ("MPOL_F_STATIC_NODES", MPOL_F_STATIC_NODES),
];
/// Linux's largest MAX_NUMNODES (NODES_SHIFT 10).
const MAX_NODES: usize = 1024;

/// The mode and flag names runh takes (for `runh features`).
pub fn mempolicy_names() -> (Vec<&'static str>, Vec<&'static str>) {
    (MPOL_MODES.iter().map(|m| m.0).collect(), MPOL_FLAGS.iter().map(|f| f.0).collect())
}

/// Parse and check linux.memoryPolicy: a known mode, known flags, a node list that the
/// mode allows (none for MPOL_DEFAULT and MPOL_LOCAL, at least one for MPOL_BIND,
/// MPOL_INTERLEAVE, MPOL_WEIGHTED_INTERLEAVE and MPOL_PREFERRED_MANY, as runc), and
/// flags the mode allows (set_mempolicy(2)). Whether the nodes exist and may be used is
/// the kernel's answer to the set_mempolicy that init makes before `Ready`: create fails.
fn mempolicy(v: &Value) -> Result<MemPolicy> {
    let field = |k: &str| format!("linux.memoryPolicy.{k}");
    let mode_v = v.get("mode").unwrap_or(&Value::Null);
    let (name, mode) = MPOL_MODES
        .iter()
        .find(|(n, _)| Some(*n) == mode_v.as_str())
        .copied()
        .ok_or_else(|| bad(&field("mode"), mode_v))?;
    let mut flags = 0;
    for f in v.get("flags").and_then(|f| f.as_array()).into_iter().flatten() {
        flags |= MPOL_FLAGS.iter().find(|(n, _)| Some(*n) == f.as_str()).map(|x| x.1).ok_or_else(|| bad(&field("flags"), f))?;
    }
    let list = match v.get("nodes") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(bad(&field("nodes"), other)),
    };
    let ids = id_list(&list, MAX_NODES, &field("nodes"), "node")?;
    let needs = match mode {
        0 | 4 => Some(false),
        2 | 3 | 5 | 6 => Some(true),
        _ => None, // MPOL_PREFERRED: none (local allocation) or some
    };
    match needs {
        Some(false) if !ids.is_empty() => return Err(Error::config(format!("{}: {name} takes no nodes, got {list:?}", field("nodes")))),
        Some(true) if ids.is_empty() => return Err(Error::config(format!("{}: {name} needs at least one node", field("nodes")))),
        _ => {}
    }
    if flags & MPOL_F_STATIC_NODES != 0 && flags & MPOL_F_RELATIVE_NODES != 0 {
        return Err(Error::config(format!("{}: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other", field("flags"))));
    }
    if flags != 0 && matches!(mode, 0 | 4) {
        return Err(Error::config(format!("{}: {name} takes no flags", field("flags"))));
    }
    if flags & MPOL_F_NUMA_BALANCING != 0 && mode != 2 {
        return Err(Error::config(format!("{}: MPOL_F_NUMA_BALANCING is for MPOL_BIND only", field("flags"))));
    }
    let bits = std::mem::size_of::<libc::c_ulong>() * 8;
    let mut nodes = vec![0 as libc::c_ulong; ids.iter().max().map_or(0, |m| m / bits + 1)];
    for n in ids {
        nodes[n / bits] |= 1 << (n % bits);
    }
    Ok(MemPolicy { mode: mode | flags, nodes })
}

impl MemPolicy {
    /// set_mempolicy for this thread (init and exec are single-threaded): inherited
    /// across fork and execve, so the container's process runs under it.
    pub fn apply(&self) -> Result<()> {
        let bits = std::mem::size_of::<libc::c_ulong>() * 8;
        let (mask, maxnode) = if self.nodes.is_empty() {
            (std::ptr::null(), 0)
        } else {
            // maxnode counts one past the last bit (the kernel reads maxnode - 1 bits).
            (self.nodes.as_ptr(), self.nodes.len() * bits + 1)
        };
        if unsafe { libc::syscall(libc::SYS_set_mempolicy, self.mode, mask, maxnode) } < 0 {
            return Err(Error::last_os("set linux.memoryPolicy (set_mempolicy)"));
        }
        Ok(())
    }
}

fn bad(what: &str, v: &Value) -> Error {
    Error::config(format!("{what}: unsupported value {v}"))
}

fn personality(v: &Value) -> Result<libc::c_ulong> {
    const PER_LINUX: libc::c_ulong = 0;
    const PER_LINUX32: libc::c_ulong = 0x0008;
    let domain = match v.get("domain").and_then(|d| d.as_str()) {
        Some("LINUX") => PER_LINUX,
        Some("LINUX32") => PER_LINUX32,
        _ => return Err(bad("linux.personality.domain", v.get("domain").unwrap_or(&Value::Null))),
    };
    // The spec lists no flag values yet: any flag is refused rather than ignored.
    if v.get("flags").and_then(|f| f.as_array()).is_some_and(|f| !f.is_empty()) {
        return Err(Error::config("linux.personality.flags are not supported"));
    }
    Ok(domain)
}

fn sched(v: &Value) -> Result<SchedAttr> {
    let policy = match v.get("policy").and_then(|p| p.as_str()).unwrap_or("") {
        "SCHED_OTHER" => 0,
        "SCHED_FIFO" => 1,
        "SCHED_RR" => 2,
        "SCHED_BATCH" => 3,
        "SCHED_ISO" => 4,
        "SCHED_IDLE" => 5,
        "SCHED_DEADLINE" => 6,
        _ => return Err(bad("process.scheduler.policy", v.get("policy").unwrap_or(&Value::Null))),
    };
    let mut flags = 0u64;
    for f in v.get("flags").and_then(|f| f.as_array()).into_iter().flatten() {
        flags |= match f.as_str().unwrap_or("") {
            "SCHED_FLAG_RESET_ON_FORK" => 0x01,
            "SCHED_FLAG_RECLAIM" => 0x02,
            "SCHED_FLAG_DL_OVERRUN" => 0x04,
            "SCHED_FLAG_KEEP_POLICY" => 0x08,
            "SCHED_FLAG_KEEP_PARAMS" => 0x10,
            "SCHED_FLAG_UTIL_CLAMP_MIN" => 0x20,
            "SCHED_FLAG_UTIL_CLAMP_MAX" => 0x40,
            _ => return Err(bad("process.scheduler.flags", f)),
        };
    }
    let int = |k: &str| v.get(k).and_then(|n| n.as_i64()).unwrap_or(0);
    let uint = |k: &str| v.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
    let nice = int("nice");
    if !(-20..=19).contains(&nice) {
        return Err(Error::config(format!("process.scheduler.nice {nice} is out of range (-20..19)")));
    }
    let a = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32, // SCHED_ATTR_SIZE_VER0 (48)
        policy,
        flags,
        nice: nice as i32,
        priority: int("priority") as u32,
        runtime: uint("runtime"),
        deadline: uint("deadline"),
        period: uint("period"),
    };
    check_sched(&a, int("priority"))?;
    Ok(a)
}

/// What sched_setattr(2) would refuse, refused at create (the scheduler is set at
/// start, too late for a clear error): a static priority only for the real-time
/// policies, and 1..99 there; runtime, deadline and period only for SCHED_DEADLINE
/// (runc's rules), and there what the kernel asks of them: a deadline, a runtime of at
/// least 1024 ns (its DL_SCALE), runtime <= deadline <= period (a period of 0 is the
/// deadline), none of them with bit 63 set, and the period within
/// kernel.sched_deadline_period_{min,max}_us where those can be read.
fn check_sched(a: &SchedAttr, priority: i64) -> Result<()> {
    let f = |k: &str| format!("process.scheduler.{k}");
    let realtime = a.policy == 1 || a.policy == 2;
    if realtime && !(1..=99).contains(&priority) {
        return Err(Error::config(format!("{} {priority} is out of range for SCHED_FIFO and SCHED_RR (1..99)", f("priority"))));
    }
    if !realtime && priority != 0 {
        return Err(Error::config(format!("{} can only be set for SCHED_FIFO and SCHED_RR", f("priority"))));
    }
    if a.policy != 6 {
        if a.runtime != 0 || a.deadline != 0 || a.period != 0 {
            return Err(Error::config(format!("{}, deadline and period can only be set for SCHED_DEADLINE", f("runtime"))));
        }
        return Ok(());
    }
    const TOP: u64 = 1 << 63;
    let period = if a.period == 0 { a.deadline } else { a.period };
    if a.deadline == 0 {
        return Err(Error::config(format!("{} is required for SCHED_DEADLINE", f("deadline"))));
    }
    if a.runtime < 1024 {
        return Err(Error::config(format!("{} {} is below the kernel's least, 1024 ns", f("runtime"), a.runtime)));
    }
    if a.deadline & TOP != 0 || a.period & TOP != 0 {
        return Err(Error::config(format!("{} and period must be below 2^63 ns", f("deadline"))));
    }
    if a.runtime > a.deadline || a.deadline > period {
        return Err(Error::config(format!(
            "{}: SCHED_DEADLINE needs runtime <= deadline <= period, got {} <= {} <= {}",
            f("runtime"), a.runtime, a.deadline, period
        )));
    }
    let sysctl_us = |name: &str| -> Option<u64> {
        std::fs::read_to_string(format!("/proc/sys/kernel/sched_deadline_period_{name}_us")).ok()?.trim().parse().ok()
    };
    if let Some(min) = sysctl_us("min").filter(|m| period < m * 1000) {
        return Err(Error::config(format!("{} {period} ns is below kernel.sched_deadline_period_min_us ({min} us)", f("period"))));
    }
    if let Some(max) = sysctl_us("max").filter(|m| period > m.saturating_mul(1000)) {
        return Err(Error::config(format!("{} {period} ns is above kernel.sched_deadline_period_max_us ({max} us)", f("period"))));
    }
    Ok(())
}

fn ioprio(v: &Value) -> Result<i32> {
    let class = match v.get("class").and_then(|c| c.as_str()).unwrap_or("") {
        "IOPRIO_CLASS_RT" => 1,
        "IOPRIO_CLASS_BE" => 2,
        "IOPRIO_CLASS_IDLE" => 3,
        _ => return Err(bad("process.ioPriority.class", v.get("class").unwrap_or(&Value::Null))),
    };
    let level = v.get("priority").and_then(|p| p.as_i64()).unwrap_or(0);
    if !(0..=7).contains(&level) {
        return Err(Error::config(format!("process.ioPriority.priority {level} is out of range (0..7)")));
    }
    Ok(class << 13 | level as i32)
}

/// "0-3,7" as the ids it names (each below `max`); `kind` names them in the error.
fn id_list(s: &str, max: usize, what: &str, kind: &str) -> Result<Vec<usize>> {
    let err = || Error::config(format!("{what}: invalid {kind} list {s:?}"));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().map_err(|_| err())?, b.trim().parse::<usize>().map_err(|_| err())?),
            None => {
                let n = part.parse::<usize>().map_err(|_| err())?;
                (n, n)
            }
        };
        if a > b || b >= max {
            return Err(err());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// "0-3,7" as a cpu_set_t.
pub fn cpu_list(s: &str, what: &str) -> Result<libc::cpu_set_t> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in id_list(s, libc::CPU_SETSIZE as usize, what, "CPU")? {
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

impl Attrs {
    pub fn from_spec(spec: &Spec) -> Result<Attrs> {
        let linux = spec.linux.as_ref();
        Self::from_parts(spec.process.as_ref(), linux.and_then(|l| l.personality.as_ref()), linux.and_then(|l| l.memory_policy.as_ref()))
    }

    /// The same from a process (create's, or exec's own process JSON) and the container's
    /// linux.personality and linux.memoryPolicy, which exec'd processes get too (as runc
    /// applies them).
    pub fn from_parts(p: Option<&crate::spec::Process>, pers: Option<&Value>, mpol: Option<&Value>) -> Result<Attrs> {
        let aff = p.and_then(|p| p.exec_cpu_affinity.as_ref());
        let cpus = |k: &str| -> Result<Option<libc::cpu_set_t>> {
            match aff.and_then(|a| a.get(k)).and_then(|v| v.as_str()).filter(|s| !s.trim().is_empty()) {
                Some(s) => cpu_list(s, &format!("process.execCPUAffinity.{k}")).map(Some),
                None => Ok(None),
            }
        };
        Ok(Attrs {
            personality: pers.map(personality).transpose()?,
            sched: p.and_then(|p| p.scheduler.as_ref()).map(sched).transpose()?,
            ioprio: p.and_then(|p| p.io_priority.as_ref()).map(ioprio).transpose()?,
            initial_cpus: cpus("initial")?,
            final_cpus: cpus("final")?,
            mempolicy: mpol.filter(|v| !v.is_null()).map(mempolicy).transpose()?,
        })
    }

    /// linux.memoryPolicy, before `Ready`: a policy the kernel refuses (a node that is
    /// not there, or not allowed by the cpuset) fails create or exec, not start.
    pub fn apply_mempolicy(&self) -> Result<()> {
        self.mempolicy.as_ref().map_or(Ok(()), MemPolicy::apply)
    }

    fn set_affinity(set: &libc::cpu_set_t, what: &str) -> Result<()> {
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } < 0 {
            return Err(Error::last_os(format!("set process.execCPUAffinity.{what}")));
        }
        Ok(())
    }

    /// execCPUAffinity.initial: as soon as init runs.
    pub fn apply_initial(&self) -> Result<()> {
        self.initial_cpus.as_ref().map_or(Ok(()), |s| Self::set_affinity(s, "initial"))
    }

    /// Scheduler and I/O priority need CAP_SYS_NICE / CAP_SYS_ADMIN for the real-time
    /// classes: called after start, before the user and capabilities change.
    pub fn apply_privileged(&self) -> Result<()> {
        if let Some(a) = &self.sched {
            if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, a as *const SchedAttr, 0) } < 0 {
                return Err(Error::last_os("set process.scheduler (sched_setattr)"));
            }
        }
        if let Some(v) = self.ioprio {
            const IOPRIO_WHO_PROCESS: libc::c_int = 1;
            if unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, v) } < 0 {
                return Err(Error::last_os("set process.ioPriority (ioprio_set)"));
            }
        }
        Ok(())
    }

    /// Personality and the final CPU affinity: the last things before execve.
    pub fn apply_final(&self) -> Result<()> {
        if let Some(s) = &self.final_cpus {
            Self::set_affinity(s, "final")?;
        }
        if let Some(p) = self.personality {
            if unsafe { libc::personality(p) } < 0 {
                return Err(Error::last_os("set linux.personality"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse() {
        let s: Spec = serde_json::from_str(
            r#"{"process":{"scheduler":{"policy":"SCHED_BATCH","nice":5,"flags":["SCHED_FLAG_RESET_ON_FORK"]},
                "ioPriority":{"class":"IOPRIO_CLASS_IDLE","priority":0},"execCPUAffinity":{"initial":"0","final":"0-1"}},
               "linux":{"personality":{"domain":"LINUX32"}}}"#,
        )
        .unwrap();
        let a = Attrs::from_spec(&s).unwrap();
        assert_eq!(a.personality, Some(8));
        assert_eq!(a.sched.unwrap().policy, 3);
        assert_eq!(a.sched.unwrap().size, 48);
        assert_eq!(a.ioprio, Some(3 << 13));
        assert!(unsafe { libc::CPU_ISSET(1, &a.final_cpus.unwrap()) });
        assert!(cpu_list("3-1", "x").is_err());
        assert!(cpu_list("a", "x").is_err());
    }

    fn sch(json: &str) -> Result<SchedAttr> {
        sched(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn scheduler_rules() {
        let a = sch(r#"{"policy":"SCHED_DEADLINE","runtime":1000000,"deadline":5000000,"period":10000000}"#).unwrap();
        assert_eq!((a.policy, a.runtime, a.deadline, a.period), (6, 1_000_000, 5_000_000, 10_000_000));
        // A period of 0 is the deadline.
        assert!(sch(r#"{"policy":"SCHED_DEADLINE","runtime":1000000,"deadline":1000000}"#).is_ok());
        assert_eq!(sch(r#"{"policy":"SCHED_FIFO","priority":10}"#).unwrap().priority, 10);
        for (bad, why) in [
            (r#"{"policy":"SCHED_DEADLINE","runtime":10000000,"deadline":5000000,"period":10000000}"#, "runtime <= deadline <= period"),
            (r#"{"policy":"SCHED_DEADLINE","runtime":1000000,"deadline":20000000,"period":10000000}"#, "runtime <= deadline <= period"),
            (r#"{"policy":"SCHED_DEADLINE","runtime":1000000}"#, "deadline is required"),
            (r#"{"policy":"SCHED_DEADLINE","runtime":100,"deadline":5000000}"#, "1024 ns"),
            (r#"{"policy":"SCHED_DEADLINE","runtime":1000000,"deadline":9223372036854775808}"#, "2^63"),
            (r#"{"policy":"SCHED_OTHER","runtime":1000000}"#, "only be set for SCHED_DEADLINE"),
            (r#"{"policy":"SCHED_BATCH","period":1000000}"#, "only be set for SCHED_DEADLINE"),
            (r#"{"policy":"SCHED_OTHER","priority":5}"#, "SCHED_FIFO and SCHED_RR"),
            (r#"{"policy":"SCHED_FIFO","priority":0}"#, "1..99"),
            (r#"{"policy":"SCHED_RR","priority":100}"#, "1..99"),
        ] {
            let e = sch(bad).unwrap_err().context;
            assert!(e.starts_with("process.scheduler.") && e.contains(why), "{bad}: {e}");
        }
    }

    fn mpol(json: &str) -> Result<MemPolicy> {
        mempolicy(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn memory_policy() {
        let p = mpol(r#"{"mode":"MPOL_INTERLEAVE","nodes":"0-2,65","flags":["MPOL_F_STATIC_NODES"]}"#).unwrap();
        assert_eq!(p.mode, 3 | MPOL_F_STATIC_NODES);
        assert_eq!(p.nodes, vec![0b111, 0b10]);
        assert_eq!(mpol(r#"{"mode":"MPOL_DEFAULT"}"#).unwrap(), MemPolicy { mode: 0, nodes: vec![] });
        assert_eq!(mpol(r#"{"mode":"MPOL_PREFERRED"}"#).unwrap().mode, 1);
        assert_eq!(mpol(r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_NUMA_BALANCING"]}"#).unwrap().mode, 2 | MPOL_F_NUMA_BALANCING);
        for (bad, why) in [
            (r#"{"mode":"MPOL_BOGUS"}"#, "mode"),
            (r#"{}"#, "mode"),
            (r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_BOGUS"]}"#, "flags"),
            (r#"{"mode":"MPOL_BIND"}"#, "at least one node"),
            (r#"{"mode":"MPOL_WEIGHTED_INTERLEAVE","nodes":""}"#, "at least one node"),
            (r#"{"mode":"MPOL_LOCAL","nodes":"0"}"#, "takes no nodes"),
            (r#"{"mode":"MPOL_DEFAULT","flags":["MPOL_F_STATIC_NODES"]}"#, "takes no flags"),
            (r#"{"mode":"MPOL_BIND","nodes":"0","flags":["MPOL_F_STATIC_NODES","MPOL_F_RELATIVE_NODES"]}"#, "exclude"),
            (r#"{"mode":"MPOL_INTERLEAVE","nodes":"0","flags":["MPOL_F_NUMA_BALANCING"]}"#, "MPOL_BIND only"),
            (r#"{"mode":"MPOL_BIND","nodes":"3-1"}"#, "node list"),
            (r#"{"mode":"MPOL_BIND","nodes":"x"}"#, "node list"),
            (r#"{"mode":"MPOL_BIND","nodes":"1024"}"#, "node list"),
            (r#"{"mode":"MPOL_BIND","nodes":7}"#, "nodes"),
        ] {
            let e = mpol(bad).unwrap_err().context;
            assert!(e.starts_with("linux.memoryPolicy.") && e.contains(why), "{bad}: {e}");
        }
    }
}
