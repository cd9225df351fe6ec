//! Seccomp for containers as dockerd does it: `HostConfig.SecurityOpt` parsed (moby
//! `daemon/daemon_unix.go` `parseSecurityOpt`), Docker's default profile embedded, and a
//! profile in Docker's format (`archMap`, `names`, `includes`/`excludes`) converted into the
//! OCI `linux.seccomp` object for one container (moby `profiles/seccomp/seccomp_linux.go`
//! `setupSeccomp`): the host's architecture picks `architectures` from the `archMap`, and a
//! syscall entry is kept only when its `excludes` do not apply and its `includes` hold for
//! the container's bounding capabilities, the host's architecture and the running kernel.
//! So `--cap-add SYS_ADMIN` also lets `mount` and `unshare` through the default profile.

use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

/// Docker's default profile in Docker's format; see `seccomp/README.md` for its origin
/// (moby, Apache-2.0).
const DOCKER_DEFAULT: &str = include_str!("../seccomp/default.json");

/// Why a `--security-opt` list is refused.
#[derive(Debug, thiserror::Error)]
pub enum SecurityOptError {
    /// A key Docker does not know, or a malformed value.
    #[error("invalid --security-opt: {0:?}")]
    Invalid(String),
    /// A key Docker knows that berth does not implement.
    #[error("--security-opt {0:?} is not supported by berth yet")]
    Unsupported(String),
    /// `seccomp=/path`: the file could not be read.
    #[error("opening seccomp profile ({path}) failed: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The profile is not one berth can load.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Why a seccomp profile is refused. Messages follow moby's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("decoding seccomp profile failed: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'")]
    ArchitecturesAndArchMap,
    #[error("both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'")]
    NameAndNames,
    #[error("invalid seccomp profile: minKernel {0:?} is not <major>.<minor>")]
    MinKernel(String),
    /// The converted profile does not compile (unknown action, operator, argument index...);
    /// the runtime's message names the field.
    #[error("invalid seccomp profile: {0}")]
    Rejected(String),
}

/// Which profile a container runs under (`--security-opt seccomp=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompChoice {
    /// Docker's default profile (no option, `seccomp=builtin` or `seccomp=`).
    Builtin,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// A profile in Docker's format, as JSON text. The docker CLI reads the file and sends
    /// its content; berthd also accepts an absolute path and reads it at create.
    Custom(String),
}

/// What `HostConfig.SecurityOpt` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityOptions {
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
}

/// Parses `--security-opt` values as dockerd does: `no-new-privileges[=bool]`,
/// `seccomp=...`, and `label=...`/`apparmor=...`/`disable` (accepted and ignored: berth
/// has no SELinux or AppArmor support, and a container without them runs unconfined by
/// those, as on a Docker host without them). `key:value` is Docker's deprecated spelling of
/// `key=value`. Anything else is refused, as dockerd refuses it.
pub fn parse_security_opts(opts: &[String]) -> Result<SecurityOptions, SecurityOptError> {
    let mut out = SecurityOptions {
        no_new_privileges: false,
        seccomp: SeccompChoice::Builtin,
    };
    for opt in opts {
        if opt == "no-new-privileges" {
            out.no_new_privileges = true;
            continue;
        }
        if opt == "disable" {
            continue;
        }
        let (key, value) = opt
            .split_once('=')
            .or_else(|| opt.split_once(':'))
            .ok_or_else(|| SecurityOptError::Invalid(opt.clone()))?;
        match key {
            "label" | "apparmor" => {}
            "seccomp" => {
                out.seccomp = match value {
                    "" | "builtin" => SeccompChoice::Builtin,
                    "unconfined" => SeccompChoice::Unconfined,
                    profile => SeccompChoice::Custom(profile.to_owned()),
                }
            }
            "no-new-privileges" => {
                out.no_new_privileges =
                    parse_bool(value).ok_or_else(|| SecurityOptError::Invalid(opt.clone()))?;
            }
            "writable-cgroups" => return Err(SecurityOptError::Unsupported(opt.clone())),
            _ => return Err(SecurityOptError::Invalid(opt.clone())),
        }
    }
    Ok(out)
}

/// Go's `strconv.ParseBool`, which dockerd uses for `no-new-privileges=`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Replaces `seccomp=/absolute/path` with `seccomp=<the file's JSON>`, which is what the
/// docker CLI sends: the profile is fixed when the container is created (a later edit of
/// the file does not change it), and `inspect` shows it as Docker's does.
pub fn inline_profile_paths(opts: &mut [String]) -> Result<(), SecurityOptError> {
    for opt in opts.iter_mut() {
        let Some(path) = opt
            .strip_prefix("seccomp=")
            .or_else(|| opt.strip_prefix("seccomp:"))
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        let text = std::fs::read_to_string(path).map_err(|source| SecurityOptError::Read {
            path: path.to_owned(),
            source,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(ProfileError::Decode)?;
        *opt = format!("seccomp={value}");
    }
    Ok(())
}

/// The host facts the conversion depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// libseccomp's name for the native architecture (`amd64`, `arm64`...), which is what
    /// `includes.arches`/`excludes.arches` list.
    pub arch: &'static str,
    /// `SCMP_ARCH_*` of the native architecture, the key into `archMap`.
    pub scmp_arch: &'static str,
    /// The running kernel's (major, minor), for `minKernel`.
    pub kernel: (u32, u32),
}

impl Host {
    /// This host, read once: neither changes while the daemon runs.
    pub fn current() -> &'static Host {
        static HOST: OnceLock<Host> = OnceLock::new();
        HOST.get_or_init(|| {
            let (arch, scmp_arch) = native_arch(std::env::consts::ARCH);
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default();
            Host {
                arch,
                scmp_arch,
                kernel: parse_kernel(&release).unwrap_or((0, 0)),
            }
        })
    }
}

/// Rust's target arch to (libseccomp's name, `SCMP_ARCH_*`), as moby's `nativeToSeccomp`.
fn native_arch(rust_arch: &str) -> (&'static str, &'static str) {
    match rust_arch {
        "x86" => ("x86", "SCMP_ARCH_X86"),
        "aarch64" => ("arm64", "SCMP_ARCH_AARCH64"),
        "arm" => ("arm", "SCMP_ARCH_ARM"),
        "riscv64" => ("riscv64", "SCMP_ARCH_RISCV64"),
        "s390x" => ("s390x", "SCMP_ARCH_S390X"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "SCMP_ARCH_PPC64LE"),
        "powerpc64" => ("ppc64", "SCMP_ARCH_PPC64"),
        "loongarch64" => ("loong64", "SCMP_ARCH_LOONGARCH64"),
        "mips64" => ("mips64", "SCMP_ARCH_MIPS64"),
        _ => ("amd64", "SCMP_ARCH_X86_64"),
    }
}

/// `6.1.0-18-amd64` -> (6, 1).
fn parse_kernel(s: &str) -> Option<(u32, u32)> {
    let mut parts = s.trim().split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Go's `encoding/json` reads `null` as the zero value; so do we, for the list fields.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A profile in Docker's format (moby `profiles/seccomp` `Seccomp`). Unknown fields are
/// ignored, as Go's decoder does (`comment` is common).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DockerProfile {
    #[serde(default)]
    default_action: String,
    default_errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    architectures: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arch_map: Vec<ArchMapEntry>,
    #[serde(default, deserialize_with = "null_as_default")]
    syscalls: Vec<DockerSyscall>,
    #[serde(default, deserialize_with = "null_as_default")]
    flags: Vec<String>,
    listener_path: Option<String>,
    listener_metadata: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMapEntry {
    architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    names: Vec<String>,
    action: String,
    errno_ret: Option<u32>,
    #[serde(default, deserialize_with = "null_as_default")]
    args: Vec<SyscallArg>,
    #[serde(default, deserialize_with = "null_as_default")]
    includes: Condition,
    #[serde(default, deserialize_with = "null_as_default")]
    excludes: Condition,
}

/// An argument comparison, carried to the OCI form unchanged.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct SyscallArg {
    index: u32,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// `includes`/`excludes`: every non-empty field must hold (includes) or any one that holds
/// drops the entry (excludes).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Condition {
    #[serde(default, deserialize_with = "null_as_default")]
    caps: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    arches: Vec<String>,
    min_kernel: Option<String>,
}

impl DockerProfile {
    /// Decodes a profile; the message is moby's `decoding seccomp profile failed: ...`.
    pub fn parse(text: &str) -> Result<DockerProfile, ProfileError> {
        Ok(serde_json::from_str(text)?)
    }

    /// Docker's default profile.
    pub fn builtin() -> Result<DockerProfile, ProfileError> {
        Self::parse(DOCKER_DEFAULT)
    }

    /// The OCI `linux.seccomp` for a container whose bounding set is `caps` on `host`, or
    /// None when the profile has neither a default action nor rules (moby: seccomp off).
    pub fn to_oci(&self, caps: &[String], host: &Host) -> Result<Option<Value>, ProfileError> {
        if self.default_action.is_empty() && self.syscalls.is_empty() {
            return Ok(None);
        }
        if !self.architectures.is_empty() && !self.arch_map.is_empty() {
            return Err(ProfileError::ArchitecturesAndArchMap);
        }
        let mut architectures = self.architectures.clone();
        for entry in self
            .arch_map
            .iter()
            .filter(|e| e.architecture == host.scmp_arch)
        {
            architectures.push(entry.architecture.clone());
            architectures.extend(entry.sub_architectures.iter().cloned());
        }
        let has_cap = |c: &String| caps.contains(c);
        let kernel_at_least = |v: &Option<String>| -> Result<Option<bool>, ProfileError> {
            v.as_deref()
                .map(|s| {
                    parse_kernel(s)
                        .map(|min| host.kernel >= min)
                        .ok_or_else(|| ProfileError::MinKernel(s.to_owned()))
                })
                .transpose()
        };
        let mut syscalls = Vec::new();
        for call in &self.syscalls {
            let names = match (call.name.is_empty(), call.names.is_empty()) {
                (false, false) => return Err(ProfileError::NameAndNames),
                (false, true) => vec![call.name.clone()],
                _ => call.names.clone(),
            };
            let exc = &call.excludes;
            if exc.arches.iter().any(|a| a == host.arch)
                || exc.caps.iter().any(has_cap)
                || kernel_at_least(&exc.min_kernel)? == Some(true)
            {
                continue;
            }
            let inc = &call.includes;
            if !inc.arches.is_empty() && !inc.arches.iter().any(|a| a == host.arch)
                || !inc.caps.iter().all(has_cap)
                || kernel_at_least(&inc.min_kernel)? == Some(false)
            {
                continue;
            }
            let mut rule = json!({"names": names, "action": call.action});
            if let Some(errno) = call.errno_ret {
                rule["errnoRet"] = json!(errno);
            }
            if !call.args.is_empty() {
                rule["args"] = json!(call.args);
            }
            syscalls.push(rule);
        }
        let mut out = json!({
            "defaultAction": self.default_action,
            "architectures": architectures,
            "syscalls": syscalls,
        });
        if let Some(errno) = self.default_errno_ret {
            out["defaultErrnoRet"] = json!(errno);
        }
        if !self.flags.is_empty() {
            out["flags"] = json!(self.flags);
        }
        if let Some(path) = &self.listener_path {
            out["listenerPath"] = json!(path);
        }
        if let Some(meta) = &self.listener_metadata {
            out["listenerMetadata"] = json!(meta);
        }
        check_compiles(&out)?;
        Ok(Some(out))
    }
}

/// Compiles the converted profile with the runtime's own compiler, so a profile the runtime
/// would refuse at start (an unknown action or operator, a bad argument index) is refused
/// at create instead, with the runtime's message naming the field.
fn check_compiles(oci: &Value) -> Result<(), ProfileError> {
    let typed: oci_spec::runtime::LinuxSeccomp =
        serde_json::from_value(oci.clone()).map_err(|e| ProfileError::Rejected(e.to_string()))?;
    berth_runtime::seccomp::compile(&typed).map_err(|e| ProfileError::Rejected(e.to_string()))?;
    Ok(())
}

/// The `linux.seccomp` for a container, or None: none with `--privileged` or
/// `seccomp=unconfined` (moby `daemon/seccomp_linux.go` `WithSeccomp`), else the custom or
/// default profile converted for `caps` (the bounding set, which moby filters by).
pub fn for_container(
    choice: &SeccompChoice,
    privileged: bool,
    caps: &[String],
    host: &Host,
) -> Result<Option<Value>, ProfileError> {
    if privileged {
        return Ok(None);
    }
    match choice {
        SeccompChoice::Unconfined => Ok(None),
        SeccompChoice::Builtin => DockerProfile::builtin()?.to_oci(caps, host),
        SeccompChoice::Custom(text) => DockerProfile::parse(text)?.to_oci(caps, host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_CAPS: &[&str] = crate::container_spec::DEFAULT_CAPS;

    fn amd64() -> Host {
        Host {
            arch: "amd64",
            scmp_arch: "SCMP_ARCH_X86_64",
            kernel: (6, 1),
        }
    }

    fn caps(extra: &[&str]) -> Vec<String> {
        DEFAULT_CAPS
            .iter()
            .chain(extra)
            .map(|c| (*c).to_owned())
            .collect()
    }

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["names"].as_array().into_iter().flatten())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    }

    /// Names allowed without argument conditions: what the profile lets through whatever
    /// the arguments.
    fn allowed_unconditionally(profile: &Value) -> Vec<String> {
        let calls = profile["syscalls"].as_array().cloned().unwrap_or_default();
        calls
            .iter()
            .filter(|s| s["action"] == "SCMP_ACT_ALLOW" && s["args"].is_null())
            .flat_map(|s| s["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn default_profile_converts_like_docker() {
        let p = for_container(&SeccompChoice::Builtin, false, &caps(&[]), &amd64())
            .expect("converts")
            .expect("a profile");
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["defaultErrnoRet"], 1);
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let n = names(&p);
        for kept in ["read", "chroot", "arch_prctl", "clone", "clone3", "ptrace"] {
            assert!(n.iter().any(|x| x == kept), "{kept} kept");
        }
        // Not allowed by default: they need CAP_SYS_ADMIN, which the default set lacks.
        for refused in ["mount", "unshare", "umount2", "setns", "reboot", "bpf"] {
            assert!(!n.iter().any(|x| x == refused), "{refused} refused");
        }
        // An arm-only entry does not reach an amd64 host.
        assert!(!n.iter().any(|x| x == "arm_fadvise64_64"));
        let oci: oci_spec::runtime::LinuxSeccomp =
            serde_json::from_value(p).expect("OCI linux.seccomp");
        assert!(!oci.syscalls().as_ref().is_some_and(Vec::is_empty));
    }

    #[test]
    fn sys_admin_allows_mount_and_unshare() {
        let p = for_container(
            &SeccompChoice::Builtin,
            false,
            &caps(&["CAP_SYS_ADMIN"]),
            &amd64(),
        )
        .expect("converts")
        .expect("a profile");
        let allowed = allowed_unconditionally(&p);
        for call in ["mount", "unshare", "umount2", "setns"] {
            assert!(allowed.iter().any(|x| x == call), "{call} with SYS_ADMIN");
        }
        // The clone rule that refuses namespace flags is excluded with CAP_SYS_ADMIN.
        let plain = for_container(&SeccompChoice::Builtin, false, &caps(&[]), &amd64())
            .expect("converts")
            .expect("a profile");
        assert!(!allowed_unconditionally(&plain).iter().any(|x| x == "clone"));
        assert!(allowed.iter().any(|x| x == "clone"));
    }

    #[test]
    fn arch_and_kernel_filtering() {
        let arm64 = Host {
            arch: "arm64",
            scmp_arch: "SCMP_ARCH_AARCH64",
            kernel: (6, 1),
        };
        let p = for_container(&SeccompChoice::Builtin, false, &caps(&[]), &arm64)
            .expect("converts")
            .expect("a profile");
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
        assert!(!names(&p).iter().any(|x| x == "arch_prctl"));
        // minKernel: an include with a newer kernel than the host's drops the entry.
        let text = r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64"],
            "syscalls":[{"names":["getpid"],"action":"SCMP_ACT_ALLOW",
                         "includes":{"minKernel":"9.9"}},
                        {"name":"read","action":"SCMP_ACT_ALLOW"}]}"#;
        let p = DockerProfile::parse(text)
            .expect("parses")
            .to_oci(&caps(&[]), &amd64())
            .expect("converts")
            .expect("a profile");
        assert_eq!(names(&p), vec!["read".to_owned()]);
    }

    #[test]
    fn unconfined_and_privileged_have_no_seccomp() {
        let c = caps(&[]);
        let none = for_container(&SeccompChoice::Unconfined, false, &c, &amd64()).expect("ok");
        assert!(none.is_none());
        let none = for_container(&SeccompChoice::Builtin, true, &c, &amd64()).expect("ok");
        assert!(none.is_none());
        let empty = for_container(&SeccompChoice::Custom("{}".into()), false, &c, &amd64());
        assert!(empty.expect("ok").is_none());
    }

    #[test]
    fn invalid_custom_profiles_are_refused_clearly() {
        let c = caps(&[]);
        let err = |text: &str| {
            for_container(&SeccompChoice::Custom(text.into()), false, &c, &amd64())
                .expect_err(text)
                .to_string()
        };
        assert!(err("not json").starts_with("decoding seccomp profile failed:"));
        assert!(err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
                       "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#
        )
        .contains("both 'architectures' and 'archMap'"));
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW",
                       "syscalls":[{"name":"read","names":["write"],"action":"SCMP_ACT_ERRNO"}]}"#)
        .contains("both 'name' and 'names'"));
        let bad_action = err(r#"{"defaultAction":"SCMP_ACT_NOPE"}"#);
        assert!(
            bad_action.starts_with("invalid seccomp profile:") && bad_action.contains("NOPE"),
            "{bad_action}"
        );
        assert!(err(r#"{"defaultAction":"SCMP_ACT_ALLOW",
                       "syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
                                    "includes":{"minKernel":"six"}}]}"#)
        .contains("minKernel"));
    }

    #[test]
    fn security_opts_parse_like_dockerd() {
        let p = |opts: &[&str]| {
            parse_security_opts(&opts.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        let o = p(&[]).expect("empty");
        assert_eq!(o.seccomp, SeccompChoice::Builtin);
        assert!(!o.no_new_privileges);
        let o = p(&["seccomp=unconfined", "no-new-privileges"]).expect("ok");
        assert_eq!(o.seccomp, SeccompChoice::Unconfined);
        assert!(o.no_new_privileges);
        let o = p(&[
            "seccomp:builtin",
            "no-new-privileges=false",
            "apparmor=unconfined",
        ]);
        let o = o.expect("ok");
        assert_eq!(o.seccomp, SeccompChoice::Builtin);
        assert!(!o.no_new_privileges);
        let o = p(&[r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#]).expect("ok");
        assert!(matches!(o.seccomp, SeccompChoice::Custom(_)));
        for bad in ["foo", "foo=bar", "no-new-privileges=maybe"] {
            let e = p(&[bad]).expect_err(bad).to_string();
            assert!(e.starts_with("invalid --security-opt:"), "{e}");
        }
    }

    #[test]
    fn profile_paths_are_inlined() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{\n  \"defaultAction\": \"SCMP_ACT_ALLOW\"\n}\n").expect("write");
        let mut opts = vec![
            format!("seccomp={}", path.display()),
            "label=disable".into(),
        ];
        inline_profile_paths(&mut opts).expect("inlined");
        assert_eq!(opts[0], r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW"}"#);
        let mut missing = vec!["seccomp=/no/such/profile.json".to_owned()];
        let e = inline_profile_paths(&mut missing).expect_err("missing");
        assert!(e
            .to_string()
            .starts_with("opening seccomp profile (/no/such/profile.json) failed"));
    }
}
