//! `linux.resources.devices`: the rules as the kernel understands them, runc's built-in
//! allowances, and the state a list of rules leaves a cgroup in.
//!
//! Both enforcement paths start here: cgroup v1 writes the state into `devices.allow` /
//! `devices.deny` (devices_v1.rs), cgroup v2 compiles it into an eBPF program
//! (devices_bpf.rs). Reducing the list to one state first, the way the v1 kernel code does,
//! makes the two paths agree on every quirk (a deny only removes an exactly matching
//! allowance, an `a` rule resets everything).

use crate::error::{Error, Result};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

/// Access bits, valued as in `BPF_DEVCG_ACC_*` so the BPF program can use them as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(pub u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);

    pub fn parse(s: &str) -> Option<Access> {
        let mut bits = 0;
        for c in s.chars() {
            bits |= match c {
                'r' => 2,
                'w' => 4,
                'm' => 1,
                _ => return None,
            };
        }
        (bits != 0).then_some(Access(bits))
    }

    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn minus(self, other: Access) -> Access {
        Access(self.0 & !other.0)
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (bit, c) in [(2, 'r'), (4, 'w'), (1, 'm')] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// Block or character device, valued as `BPF_DEVCG_DEV_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Block = 1,
    Char = 2,
}

impl Kind {
    pub fn letter(self) -> char {
        match self {
            Kind::Block => 'b',
            Kind::Char => 'c',
        }
    }
}

/// One device or a wildcard set of them: `None` is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{}",
            self.kind.letter(),
            num(self.major),
            num(self.minor)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Type `a`: every device and every access. The kernel treats any `a` rule as a reset
    /// of the default policy that also forgets all exceptions.
    All { allow: bool },
    Device {
        allow: bool,
        key: Key,
        access: Access,
    },
}

impl Rule {
    /// The text written to `devices.allow`/`devices.deny` (v1 syntax).
    pub fn v1_text(&self) -> String {
        match self {
            Rule::All { .. } => "a".to_string(),
            Rule::Device { key, access, .. } => format!("{key} {access}"),
        }
    }

    pub fn allow(&self) -> bool {
        match self {
            Rule::All { allow } | Rule::Device { allow, .. } => *allow,
        }
    }
}

/// Converts the config's rules, naming the first one that cannot mean what it says.
pub fn parse(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            parse_one(r)
                .map_err(|why| Error::Cgroup(format!("linux.resources.devices[{i}]: {why}")))
        })
        .collect()
}

fn parse_one(r: &LinuxDeviceCgroup) -> std::result::Result<Rule, String> {
    let access_text = r.access().as_deref().unwrap_or("");
    // runc refuses an empty access: it would be a rule about nothing.
    let access = Access::parse(access_text).ok_or_else(|| {
        format!("access {access_text:?} is not a non-empty combination of r, w, m")
    })?;
    let number = |what: &str, n: Option<i64>| -> std::result::Result<Option<u32>, String> {
        match n {
            None | Some(-1) => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| format!("{what} {n} is not a device number (or -1 for any)")),
        }
    };
    let major = number("major", r.major())?;
    let minor = number("minor", r.minor())?;
    let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => {
            // The kernel reads `a` as "everything, rwm" whatever follows it, so a narrower
            // `a` rule would silently become a much wider one.
            if major.is_some() || minor.is_some() || access != Access::ALL {
                return Err(format!(
                    "type \"a\" always covers every device with rwm access; major/minor/access \
                     cannot narrow it (got {}:{} {access_text})",
                    major.map_or("*".into(), |n| n.to_string()),
                    minor.map_or("*".into(), |n| n.to_string()),
                ));
            }
            return Ok(Rule::All { allow: r.allow() });
        }
        LinuxDeviceType::B => Kind::Block,
        LinuxDeviceType::C | LinuxDeviceType::U => Kind::Char,
        LinuxDeviceType::P => {
            return Err("type \"p\" (fifo) is not subject to the device cgroup".to_string())
        }
    };
    Ok(Rule::Device {
        allow: r.allow(),
        key: Key { kind, major, minor },
        access,
    })
}

/// A built-in allowance and, when it is one, the device node path it stands for.
struct Builtin {
    path: Option<&'static str>,
    key: Key,
    access: Access,
}

const fn dev(
    path: Option<&'static str>,
    kind: Kind,
    major: Option<u32>,
    minor: Option<u32>,
    access: Access,
) -> Builtin {
    Builtin {
        path,
        key: Key { kind, major, minor },
        access,
    }
}

/// runc's `AllowedDevices` (libcontainer/specconv), appended after the config's rules:
/// mknod of anything, the standard nodes every container gets, and ptys.
const DEFAULTS: &[Builtin] = &[
    dev(None, Kind::Char, None, None, Access::MKNOD),
    dev(None, Kind::Block, None, None, Access::MKNOD),
    dev(Some("/dev/null"), Kind::Char, Some(1), Some(3), Access::ALL),
    dev(
        Some("/dev/random"),
        Kind::Char,
        Some(1),
        Some(8),
        Access::ALL,
    ),
    dev(Some("/dev/full"), Kind::Char, Some(1), Some(7), Access::ALL),
    dev(Some("/dev/tty"), Kind::Char, Some(5), Some(0), Access::ALL),
    dev(Some("/dev/zero"), Kind::Char, Some(1), Some(5), Access::ALL),
    dev(
        Some("/dev/urandom"),
        Kind::Char,
        Some(1),
        Some(9),
        Access::ALL,
    ),
    dev(None, Kind::Char, Some(136), None, Access::ALL),
    dev(None, Kind::Char, Some(5), Some(2), Access::ALL),
];

/// The full list to enforce: a deny-all start (runc starts from a whitelist), the config's
/// rules, then the built-in allowances.
///
/// A built-in allowance is left out when `linux.devices` defines a node at its path (runc
/// does this: the config's node takes priority), and also when the config has a rule of its
/// own for exactly that device (`c 1:5`). runc appends the allowance regardless, so a rule
/// denying /dev/zero has no effect there; runc's own comment on `AllowedDevices` calls that
/// questionable, and honouring an explicit rule is what the spec's in-order evaluation says.
pub fn with_defaults(rules: &[Rule], nodes: &[LinuxDevice]) -> Vec<Rule> {
    let mut out = Vec::with_capacity(rules.len() + DEFAULTS.len() + 1);
    out.push(Rule::All { allow: false });
    out.extend_from_slice(rules);
    for d in DEFAULTS {
        let node_redefined = d
            .path
            .is_some_and(|p| nodes.iter().any(|n| n.path().as_os_str() == p));
        let rule_given = rules
            .iter()
            .any(|r| matches!(r, Rule::Device { key, .. } if *key == d.key));
        if !node_redefined && !rule_given {
            out.push(Rule::Device {
                allow: true,
                key: d.key,
                access: d.access,
            });
        }
    }
    out
}

/// What a v1 device cgroup holds: a default and the exceptions to it, each keyed exactly as
/// written (a wildcard is its own key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceState {
    pub default_allow: bool,
    pub exceptions: Vec<(Key, Access)>,
}

impl DeviceState {
    /// A cgroup nobody has restricted (and what `devices.list` shows as `a *:* rwm`).
    pub fn allow_all() -> DeviceState {
        DeviceState {
            default_allow: true,
            exceptions: Vec::new(),
        }
    }

    /// Applies rules in order with the kernel's semantics (security/device_cgroup.c,
    /// devcgroup_update_access): a rule of the default's own polarity only takes access away
    /// from an exception with exactly its key; the other polarity adds an exception.
    pub fn from_rules(start: DeviceState, rules: &[Rule]) -> DeviceState {
        let mut s = start;
        for rule in rules {
            match *rule {
                Rule::All { allow } => {
                    s.default_allow = allow;
                    s.exceptions.clear();
                }
                Rule::Device { allow, key, access } => {
                    let pos = s.exceptions.iter().position(|(k, _)| *k == key);
                    if allow == s.default_allow {
                        if let Some(i) = pos {
                            let left = s.exceptions[i].1.minus(access);
                            if left.is_empty() {
                                s.exceptions.remove(i);
                            } else {
                                s.exceptions[i].1 = left;
                            }
                        }
                    } else if let Some(i) = pos {
                        s.exceptions[i].1 = Access(s.exceptions[i].1 .0 | access.0);
                    } else {
                        s.exceptions.push((key, access));
                    }
                }
            }
        }
        s
    }

    /// Parses `devices.list`. The kernel prints only `a *:* rwm` for an allow-by-default
    /// cgroup, hiding its exceptions; we never make such cgroups with exceptions except when
    /// the config asks for an allow-all start, so the state read back is taken as exact.
    pub fn parse_list(text: &str) -> Option<DeviceState> {
        let mut s = DeviceState {
            default_allow: false,
            exceptions: Vec::new(),
        };
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut parts = line.split_whitespace();
            let (Some(kind), Some(nums), Some(access)) = (parts.next(), parts.next(), parts.next())
            else {
                return None;
            };
            let access = Access::parse(access)?;
            let (major, minor) = nums.split_once(':')?;
            let num = |n: &str| -> Option<Option<u32>> {
                if n == "*" {
                    Some(None)
                } else {
                    n.parse().ok().map(Some)
                }
            };
            let kind = match kind {
                "a" => return Some(DeviceState::allow_all()),
                "b" => Kind::Block,
                "c" => Kind::Char,
                _ => return None,
            };
            s.exceptions.push((
                Key {
                    kind,
                    major: num(major)?,
                    minor: num(minor)?,
                },
                access,
            ));
        }
        Some(s)
    }

    /// Whether a process in this cgroup may have `access` to device kind major:minor
    /// (security/device_cgroup.c, devcgroup_legacy_check_permission).
    pub fn permits(&self, kind: Kind, major: u32, minor: u32, access: Access) -> bool {
        let matches = |k: &Key| {
            k.kind == kind
                && !matches!(k.major, Some(m) if m != major)
                && !matches!(k.minor, Some(m) if m != minor)
        };
        if self.default_allow {
            // Exceptions are denials; any overlap with the request denies it.
            !self
                .exceptions
                .iter()
                .any(|(k, a)| matches(k) && a.0 & access.0 != 0)
        } else {
            // Exceptions are allowances; one of them must cover the whole request.
            self.exceptions
                .iter()
                .any(|(k, a)| matches(k) && a.contains(access))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cg(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn parses_runc_default_and_rejects_nonsense() {
        let rules = parse(&cg(r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rw"},
            {"allow": true, "type": "b", "major": -1, "access": "m"}]"#))
        .unwrap();
        assert_eq!(rules[0], Rule::All { allow: false });
        assert_eq!(rules[1].v1_text(), "c 1:5 rw");
        assert_eq!(rules[2].v1_text(), "b *:* m");

        let err = parse(&cg(
            r#"[{"allow": true, "type": "c", "major": 1, "access": ""}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("linux.resources.devices[0]: access"), "{err}");
        let err = parse(&cg(
            r#"[{"allow": true, "type": "a", "major": 1, "access": "rwm"}]"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("type \"a\""), "{err}");
        let err = parse(&cg(r#"[{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": -7, "access": "r"}]"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("devices[1]: major -7"), "{err}");
    }

    #[test]
    fn defaults_follow_the_rules_and_yield_to_explicit_ones() {
        let rules = parse(&cg(r#"[{"allow": false, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]"#))
        .unwrap();
        let all = with_defaults(&rules, &[]);
        assert_eq!(all[0], Rule::All { allow: false });
        let state = DeviceState::from_rules(DeviceState::allow_all(), &all);
        assert!(!state.default_allow);
        assert!(state.permits(Kind::Char, 1, 3, Access(6)));
        assert!(
            !state.permits(Kind::Char, 1, 5, Access::READ),
            "explicit deny wins"
        );
        assert!(
            state.permits(Kind::Char, 1, 5, Access::MKNOD),
            "c *:* m still applies"
        );
        assert!(state.permits(Kind::Char, 136, 4, Access(6)));
        assert!(!state.permits(Kind::Block, 8, 0, Access::READ));

        // runc's dedup: a node at a default's path drops that default.
        let node: LinuxDevice =
            serde_json::from_str(r#"{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5}"#)
                .unwrap();
        let all = with_defaults(&[Rule::All { allow: false }], &[node]);
        let state = DeviceState::from_rules(DeviceState::allow_all(), &all);
        assert!(!state.permits(Kind::Char, 1, 5, Access::READ));
        assert!(state.permits(Kind::Char, 1, 9, Access::READ));
    }

    #[test]
    fn kernel_semantics_of_rule_sequences() {
        let k = |kind, major, minor| Key { kind, major, minor };
        // A deny in deny-default mode only trims the exactly matching allowance.
        let s = DeviceState::from_rules(
            DeviceState::allow_all(),
            &[
                Rule::All { allow: false },
                Rule::Device {
                    allow: true,
                    key: k(Kind::Char, None, None),
                    access: Access(6),
                },
                Rule::Device {
                    allow: false,
                    key: k(Kind::Char, Some(1), Some(5)),
                    access: Access::ALL,
                },
                Rule::Device {
                    allow: true,
                    key: k(Kind::Char, Some(1), Some(3)),
                    access: Access::READ,
                },
                Rule::Device {
                    allow: true,
                    key: k(Kind::Char, Some(1), Some(3)),
                    access: Access::WRITE,
                },
                Rule::Device {
                    allow: false,
                    key: k(Kind::Char, Some(1), Some(3)),
                    access: Access::READ,
                },
            ],
        );
        assert_eq!(
            s.exceptions,
            vec![
                (k(Kind::Char, None, None), Access(6)),
                (k(Kind::Char, Some(1), Some(3)), Access::WRITE)
            ]
        );
        assert!(
            s.permits(Kind::Char, 1, 5, Access::READ),
            "c *:* still covers 1:5"
        );
        // Allow-default with a denial: overlap denies.
        let s = DeviceState::from_rules(
            DeviceState::allow_all(),
            &[Rule::Device {
                allow: false,
                key: k(Kind::Block, Some(8), None),
                access: Access::WRITE,
            }],
        );
        assert!(s.permits(Kind::Block, 8, 1, Access::READ));
        assert!(!s.permits(Kind::Block, 8, 1, Access(6)));
        assert!(s.permits(Kind::Char, 8, 1, Access::WRITE));
    }

    #[test]
    fn reads_devices_list() {
        assert_eq!(
            DeviceState::parse_list("a *:* rwm\n"),
            Some(DeviceState::allow_all())
        );
        let s = DeviceState::parse_list("c 1:3 rwm\nb *:* m\nc 136:* rw\n").unwrap();
        assert!(!s.default_allow);
        assert_eq!(s.exceptions.len(), 3);
        assert_eq!(s.exceptions[2].0.to_string(), "c 136:*");
        assert_eq!(
            DeviceState::parse_list(""),
            Some(DeviceState {
                default_allow: false,
                exceptions: vec![]
            })
        );
        assert_eq!(DeviceState::parse_list("x 1:2 r"), None);
    }
}
