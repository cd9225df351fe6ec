//! Device rules on cgroup v1: writes to `devices.allow` / `devices.deny` that take the
//! cgroup from the state `devices.list` shows to the state the rules describe.
//!
//! A new cgroup (allow-all, inherited) gets `a` on `devices.deny` and then each allowance.
//! A running container that already has a whitelist gets the new allowances first and the
//! removals after, so it never passes through "nothing allowed" (runc's device emulator does
//! the same for the same reason: a container opening /dev/null mid-update must not fail).

use super::device_rules::{Access, DeviceState, Rule};
use super::resources::{read, Step, Write};
use crate::error::{Error, Result};
use std::path::Path;

const FIELD: &str = "linux.resources.devices";

/// The writes from the current state (read from `devices.list`) to what `rules` describe,
/// with their undo on the first step.
pub fn plan(dir: &Path, rules: &[Rule]) -> Result<Vec<Step>> {
    let current = read(&dir.join("devices.list"))
        .as_deref()
        .and_then(DeviceState::parse_list)
        .ok_or_else(|| {
            Error::Cgroup(format!(
                "{FIELD}: cannot read {}",
                dir.join("devices.list").display()
            ))
        })?;
    let target = DeviceState::from_rules(DeviceState::allow_all(), rules);
    let forward = transition(&current, &target);
    let mut undo: Vec<Write> = transition(&target, &current)
        .into_iter()
        .map(|(file, value)| write(dir, file, value))
        .collect();
    Ok(forward
        .into_iter()
        .map(|(file, value)| Step::Write {
            write: write(dir, file, value),
            // Reversing from any point part-way is safe: re-adding what is there and removing
            // what is absent are no-ops for the kernel.
            undo: std::mem::take(&mut undo),
        })
        .collect())
}

fn write(dir: &Path, file: &str, value: String) -> Write {
    Write {
        file: dir.join(file),
        value,
        field: FIELD.to_string(),
    }
}

/// (file, line) writes taking a cgroup from `from` to `to`.
pub fn transition(from: &DeviceState, to: &DeviceState) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !from.default_allow && !to.default_allow {
        // Whitelist to whitelist: grow, then shrink.
        for (key, access) in &to.exceptions {
            let have = exact(from, key);
            if !have.contains(*access) {
                out.push(("devices.allow", format!("{key} {access}")));
            }
        }
        for (key, access) in &from.exceptions {
            let extra = access.minus(exact(to, key));
            if !extra.is_empty() {
                out.push(("devices.deny", format!("{key} {extra}")));
            }
        }
        return out;
    }
    // A change of default resets the exceptions, whichever way it goes.
    if to.default_allow {
        out.push(("devices.allow", "a".to_string()));
        for (key, access) in &to.exceptions {
            out.push(("devices.deny", format!("{key} {access}")));
        }
    } else {
        out.push(("devices.deny", "a".to_string()));
        for (key, access) in &to.exceptions {
            out.push(("devices.allow", format!("{key} {access}")));
        }
    }
    out
}

fn exact(s: &DeviceState, key: &super::device_rules::Key) -> Access {
    s.exceptions
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, a)| *a)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::device_rules::{Key, Kind};
    use super::*;

    fn key(kind: Kind, major: Option<u32>, minor: Option<u32>) -> Key {
        Key { kind, major, minor }
    }

    #[test]
    fn fresh_cgroup_denies_all_then_allows() {
        let target = DeviceState {
            default_allow: false,
            exceptions: vec![
                (key(Kind::Char, None, None), Access::MKNOD),
                (key(Kind::Char, Some(1), Some(3)), Access::ALL),
            ],
        };
        assert_eq!(
            transition(&DeviceState::allow_all(), &target),
            [
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c *:* m".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
            ]
        );
        assert_eq!(
            transition(&target, &DeviceState::allow_all()),
            [("devices.allow", "a".to_string())]
        );
    }

    #[test]
    fn whitelist_update_grows_before_it_shrinks() {
        let from = DeviceState {
            default_allow: false,
            exceptions: vec![
                (key(Kind::Char, Some(1), Some(3)), Access::ALL),
                (key(Kind::Char, Some(1), Some(5)), Access::ALL),
            ],
        };
        let to = DeviceState {
            default_allow: false,
            exceptions: vec![
                (key(Kind::Char, Some(1), Some(3)), Access::ALL),
                (key(Kind::Char, Some(1), Some(5)), Access::READ),
                (key(Kind::Block, Some(8), None), Access(6)),
            ],
        };
        assert_eq!(
            transition(&from, &to),
            [
                ("devices.allow", "b 8:* rw".to_string()),
                ("devices.deny", "c 1:5 wm".to_string()),
            ]
        );
        // Replaying the writes with kernel semantics lands exactly on the target.
        let replay: Vec<Rule> = transition(&from, &to)
            .into_iter()
            .map(|(f, line)| {
                let mut p = line.split_whitespace();
                let kind = if p.next() == Some("b") {
                    Kind::Block
                } else {
                    Kind::Char
                };
                let (ma, mi) = p.next().unwrap().split_once(':').unwrap();
                let n = |s: &str| s.parse().ok();
                Rule::Device {
                    allow: f == "devices.allow",
                    key: key(kind, n(ma), n(mi)),
                    access: Access::parse(p.next().unwrap()).unwrap(),
                }
            })
            .collect();
        let mut got = DeviceState::from_rules(from, &replay);
        got.exceptions.sort_by_key(|(k, _)| k.to_string());
        let mut want = to;
        want.exceptions.sort_by_key(|(k, _)| k.to_string());
        assert_eq!(got, want);
    }
}
