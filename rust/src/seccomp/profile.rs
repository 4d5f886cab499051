//! `linux.seccomp` parsed into typed rules, with errors that name the JSON path.
//!
//! Parsed by hand from a `serde_json::Value` rather than with derive: the errors must say
//! where in the document the bad value is (`linux.seccomp.syscalls[3].action: ...`), and
//! the Python front end does not run jsonschema on the hot path, so type errors land here.
use super::arch::Arch;
use crate::error::{Error, Result};
use serde_json::Value;

const PATH: &str = "linux.seccomp";

/// SECCOMP_RET_* values; ERRNO and TRACE carry their 16-bit data in the low bits.
pub mod ret {
    pub const KILL_PROCESS: u32 = 0x8000_0000;
    pub const KILL_THREAD: u32 = 0x0000_0000;
    pub const TRAP: u32 = 0x0003_0000;
    pub const ERRNO: u32 = 0x0005_0000;
    pub const USER_NOTIF: u32 = 0x7fc0_0000;
    pub const TRACE: u32 = 0x7ff0_0000;
    pub const LOG: u32 = 0x7ffc_0000;
    pub const ALLOW: u32 = 0x7fff_0000;
}

/// SECCOMP_FILTER_FLAG_* (linux/seccomp.h).
pub mod flag {
    pub const TSYNC: u32 = 1;
    pub const LOG: u32 = 2;
    pub const SPEC_ALLOW: u32 = 4;
    pub const NEW_LISTENER: u32 = 8;
    pub const TSYNC_ESRCH: u32 = 16;
    pub const WAIT_KILLABLE_RECV: u32 = 32;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    MaskedEq,
}

/// One argument comparison as libseccomp models it: `(arg & mask) OP datum`, where mask
/// is all ones except for SCMP_CMP_MASKED_EQ (runtime-spec: value = mask, valueTwo = datum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cmp {
    pub index: u8,
    pub op: Op,
    pub mask: u64,
    pub datum: u64,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: u32,
    /// Sorted by argument index, at most one per index.
    pub args: Vec<Cmp>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub default_action: u32,
    /// The arches to filter, native first, no duplicates.
    pub arches: Vec<Arch>,
    /// SECCOMP_FILTER_FLAG_* for seccomp(2), NEW_LISTENER included when NOTIFY is used.
    pub flags: u32,
    pub rules: Vec<Rule>,
    pub uses_notify: bool,
}

fn err(path: &str, msg: impl std::fmt::Display) -> Error {
    Error::config(format!("{path}: {msg}"))
}

fn get_str<'a>(v: &'a Value, path: &str) -> Result<&'a str> {
    v.as_str().ok_or_else(|| err(path, "must be a string"))
}

fn get_u64(v: &Value, path: &str) -> Result<u64> {
    v.as_u64().ok_or_else(|| err(path, "must be a non-negative integer"))
}

fn get_array<'a>(v: Option<&'a Value>, path: &str) -> Result<&'a [Value]> {
    match v {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(err(path, "must be an array")),
    }
}

fn errno_ret(v: Option<&Value>, path: &str) -> Result<Option<u32>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let n = get_u64(v, path)?;
            // SECCOMP_RET_DATA is 16 bits; a larger errno would silently change the action.
            if n > 0xffff {
                return Err(err(path, format_args!("{n} does not fit in SECCOMP_RET_DATA (16 bits)")));
            }
            Ok(Some(n as u32))
        }
    }
}

/// The SECCOMP_RET_* value of an action. ERRNO and TRACE take `errno` or EPERM, as runc does.
fn action(name: &str, errno: Option<u32>, path: &str) -> Result<u32> {
    let data = errno.unwrap_or(libc::EPERM as u32);
    Ok(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ret::KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS" => ret::KILL_PROCESS,
        "SCMP_ACT_TRAP" => ret::TRAP,
        "SCMP_ACT_ERRNO" => ret::ERRNO | data,
        "SCMP_ACT_TRACE" => ret::TRACE | data,
        "SCMP_ACT_ALLOW" => ret::ALLOW,
        "SCMP_ACT_LOG" => ret::LOG,
        "SCMP_ACT_NOTIFY" => ret::USER_NOTIF,
        _ => return Err(err(path, format_args!("unknown action {name:?}"))),
    })
}

fn op(name: &str, path: &str) -> Result<Op> {
    Ok(match name {
        "SCMP_CMP_NE" => Op::Ne,
        "SCMP_CMP_LT" => Op::Lt,
        "SCMP_CMP_LE" => Op::Le,
        "SCMP_CMP_EQ" => Op::Eq,
        "SCMP_CMP_GE" => Op::Ge,
        "SCMP_CMP_GT" => Op::Gt,
        "SCMP_CMP_MASKED_EQ" => Op::MaskedEq,
        _ => return Err(err(path, format_args!("unknown operator {name:?}"))),
    })
}

fn filter_flag(name: &str, path: &str) -> Result<u32> {
    Ok(match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => flag::TSYNC,
        "SECCOMP_FILTER_FLAG_LOG" => flag::LOG,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => flag::SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => flag::WAIT_KILLABLE_RECV,
        _ => return Err(err(path, format_args!("unknown flag {name:?}"))),
    })
}

impl Profile {
    pub fn parse(v: &Value, native: Arch) -> Result<Profile> {
        let obj = v.as_object().ok_or_else(|| err(PATH, "must be an object"))?;
        let p = |k: &str| format!("{PATH}.{k}");

        let default_errno = errno_ret(obj.get("defaultErrnoRet"), &p("defaultErrnoRet"))?;
        let default_name = get_str(
            obj.get("defaultAction").ok_or_else(|| err(&p("defaultAction"), "is required"))?,
            &p("defaultAction"),
        )?;
        let default_action = action(default_name, default_errno, &p("defaultAction"))?;
        if default_action == ret::USER_NOTIF {
            // The notifying process would be the only one able to answer its own calls.
            return Err(err(&p("defaultAction"), "SCMP_ACT_NOTIFY cannot be the default action"));
        }

        let mut arches = vec![native];
        for (i, a) in get_array(obj.get("architectures"), &p("architectures"))?.iter().enumerate() {
            let path = format!("{PATH}.architectures[{i}]");
            let name = get_str(a, &path)?;
            match Arch::from_spec(name) {
                Ok(Some(a)) if !arches.contains(&a) => arches.push(a),
                Ok(_) => {}
                Err(()) => return Err(err(&path, format_args!("unknown architecture {name:?}"))),
            }
        }

        let mut flags = 0;
        for (i, f) in get_array(obj.get("flags"), &p("flags"))?.iter().enumerate() {
            let path = format!("{PATH}.flags[{i}]");
            flags |= filter_flag(get_str(f, &path)?, &path)?;
        }

        let mut rules = Vec::new();
        let mut uses_notify = false;
        for (i, s) in get_array(obj.get("syscalls"), &p("syscalls"))?.iter().enumerate() {
            let sp = format!("{PATH}.syscalls[{i}]");
            let so = s.as_object().ok_or_else(|| err(&sp, "must be an object"))?;
            let mut names = Vec::new();
            for (j, n) in get_array(so.get("names"), &format!("{sp}.names"))?.iter().enumerate() {
                names.push(get_str(n, &format!("{sp}.names[{j}]"))?.to_owned());
            }
            let errno = errno_ret(so.get("errnoRet"), &format!("{sp}.errnoRet"))?;
            let ap = format!("{sp}.action");
            let act = action(get_str(so.get("action").ok_or_else(|| err(&ap, "is required"))?, &ap)?, errno, &ap)?;
            let mut args: Vec<Cmp> = Vec::new();
            for (j, a) in get_array(so.get("args"), &format!("{sp}.args"))?.iter().enumerate() {
                let ap = format!("{sp}.args[{j}]");
                let ao = a.as_object().ok_or_else(|| err(&ap, "must be an object"))?;
                let field = |k: &str| ao.get(k).ok_or_else(|| err(&format!("{ap}.{k}"), "is required"));
                let index = get_u64(field("index")?, &format!("{ap}.index"))?;
                if index > 5 {
                    return Err(err(&format!("{ap}.index"), format_args!("{index} is not a syscall argument (0..5)")));
                }
                let value = get_u64(field("value")?, &format!("{ap}.value"))?;
                let value_two = match ao.get("valueTwo") {
                    None | Some(Value::Null) => 0,
                    Some(v) => get_u64(v, &format!("{ap}.valueTwo"))?,
                };
                let o = op(get_str(field("op")?, &format!("{ap}.op"))?, &format!("{ap}.op"))?;
                let (mask, datum) = if o == Op::MaskedEq { (value, value_two) } else { (u64::MAX, value) };
                if args.iter().any(|c| c.index as u64 == index) {
                    // libseccomp refuses a rule with two comparisons on one argument
                    // (EINVAL), so runc fails such a config: fail it here too, by name.
                    return Err(err(&format!("{ap}.index"), format_args!("argument {index} is compared twice in one rule")));
                }
                args.push(Cmp { index: index as u8, op: o, mask, datum: datum & mask });
            }
            args.sort_by_key(|c| c.index);
            if act == default_action {
                // libseccomp rejects a rule whose action is the default (EACCES); runc and
                // crun leave such rules out, and so does runh: they cannot change anything.
                continue;
            }
            uses_notify |= act == ret::USER_NOTIF;
            rules.push(Rule { names, action: act, args });
        }
        if !uses_notify {
            // It changes how a notified call waits, and the kernel refuses it (EINVAL)
            // without NEW_LISTENER: meaningless without a NOTIFY rule, so dropped.
            flags &= !flag::WAIT_KILLABLE_RECV;
        }
        if uses_notify {
            flags |= flag::NEW_LISTENER;
            if flags & flag::TSYNC != 0 {
                // TSYNC and NEW_LISTENER both use the return value; the kernel takes the
                // pair only with TSYNC_ESRCH.
                flags |= flag::TSYNC_ESRCH;
            }
        }
        Ok(Profile { default_action, arches, flags, rules, uses_notify })
    }
}
