//! The parts of the OCI runtime-spec config.json (v1.3.0) that the Rust core acts on.
//!
//! Python validates config.json against the project's JSON Schema before anything here
//! runs; these types only give the validated document a shape. Unknown properties are
//! ignored (config.md: "implementations MUST ignore unknown properties"), so no type here
//! uses `deny_unknown_fields`. Sections owned by later work (resources, seccomp) are kept
//! as raw JSON values until their module parses them.
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Spec {
    pub oci_version: String,
    pub process: Option<Process>,
    pub root: Option<Root>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<Mount>,
    pub hooks: Option<serde_json::Value>,
    pub annotations: BTreeMap<String, String>,
    pub linux: Option<Linux>,
}

impl Spec {
    /// Whether linux.namespaces lists a `kind` namespace for the container to make: one
    /// without a path (a path is joined, not made).
    pub fn new_namespace(&self, kind: &str) -> bool {
        self.linux.iter().flat_map(|l| l.namespaces.iter()).any(|n| n.kind == kind && n.path.as_deref().unwrap_or("").is_empty())
    }
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Process {
    pub terminal: bool,
    pub console_size: Option<ConsoleSize>,
    pub user: User,
    pub args: Vec<String>,
    pub command_line: Option<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub capabilities: Option<Capabilities>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub apparmor_profile: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub selinux_label: Option<String>,
    pub scheduler: Option<serde_json::Value>,
    pub io_priority: Option<serde_json::Value>,
    #[serde(rename = "execCPUAffinity")]
    pub exec_cpu_affinity: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(default)]
pub struct ConsoleSize {
    pub height: u16,
    pub width: u16,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub umask: Option<u32>,
    pub additional_gids: Vec<u32>,
    pub username: Option<String>,
}

/// The five capability sets, each a list of names such as "CAP_CHOWN".
#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct Capabilities {
    pub bounding: Vec<String>,
    pub effective: Vec<String>,
    pub inheritable: Vec<String>,
    pub permitted: Vec<String>,
    pub ambient: Vec<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub hard: u64,
    pub soft: u64,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    /// Not in config.json: in init, the detached idmapped mount the parent sent for this
    /// entry (idmap.rs).
    #[serde(skip)]
    pub idmapped_fd: Option<i32>,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase", default)]
pub struct IdMapping {
    #[serde(rename = "containerID")]
    pub container_id: u32,
    #[serde(rename = "hostID")]
    pub host_id: u32,
    pub size: u32,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub uid_mappings: Vec<IdMapping>,
    pub gid_mappings: Vec<IdMapping>,
    pub time_offsets: BTreeMap<String, serde_json::Value>,
    pub devices: Vec<Device>,
    pub cgroups_path: Option<String>,
    pub resources: Option<serde_json::Value>,
    pub rootfs_propagation: Option<String>,
    pub seccomp: Option<serde_json::Value>,
    pub sysctl: BTreeMap<String, String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub mount_label: Option<String>,
    pub personality: Option<serde_json::Value>,
    /// Checked and applied by procattr.rs.
    pub memory_policy: Option<serde_json::Value>,
    /// Host interfaces to move in (network.rs).
    pub net_devices: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(default)]
pub struct Namespace {
    /// pid, network, mount, ipc, uts, user, cgroup, time
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(rename_all = "camelCase", default)]
pub struct Device {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: String,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}
