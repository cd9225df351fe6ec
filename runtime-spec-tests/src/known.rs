//! Expected failures, in one place.
//!
//! - `Todo`: berth-runtime does not have the feature yet. TAP marks the check
//!   `# TODO not built yet: ...`, so it does not fail the run; once the feature lands the check
//!   passes and the report says to remove the entry.
//! - `Bug`: berth-runtime has the feature but gets a detail wrong, and the fix belongs to
//!   crates/runtime. Also a TAP TODO (`# TODO bug: ...`) so `make test` stays usable, but
//!   counted and listed apart from the features not built yet. Delete the entry to make
//!   the check gate again.
//! - `RuncDeviation` / `Host`: why Debian's runc 1.1.5 fails a check. They only annotate
//!   (`# runc: ...`) and still count as failures: that run is a comparison, not a gate. A
//!   `Host` entry is about this machine (cgroup v1 hybrid, no CAP_SYS_RESOURCE in the bounding
//!   set, no AppArmor/SELinux), a `RuncDeviation` about runc itself.
//!
//! A check that fails on every runtime, with no reason here, is a bug in the check.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Todo,
    Bug,
    RuncDeviation,
    Host,
}

#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// A check id (see `checks::all`).
    pub check: &'static str,
    /// The runtime's name as `harness::RuntimeInfo` detects it.
    pub runtime: &'static str,
    /// The start of its `--version` line the entry is about ("" for any version).
    pub version: &'static str,
    pub class: Class,
    pub reason: &'static str,
}

// Unused while every feature the checks cover is built; kept for the next one.
#[allow(dead_code)]
const fn todo(check: &'static str, reason: &'static str) -> Known {
    Known {
        check,
        runtime: "berth-runtime",
        version: "",
        class: Class::Todo,
        reason,
    }
}

// Unused while no known bug is open; kept for the next one (and the report's tests).
#[allow(dead_code)]
pub(crate) const fn bug(check: &'static str, reason: &'static str) -> Known {
    Known {
        check,
        runtime: "berth-runtime",
        version: "",
        class: Class::Bug,
        reason,
    }
}

const fn runc(check: &'static str, class: Class, reason: &'static str) -> Known {
    Known {
        check,
        runtime: "runc",
        version: "runc version 1.1.",
        class,
        reason,
    }
}

pub const KNOWN: &[Known] = &[
    // berth-runtime: features not built yet go here, e.g.
    //   todo("seccomp-errno-ret", "seccomp"),
    // (seccomp, cgroup limits and device rules landed in 0b354b5 and 3e9ee87: their checks pass.)
    // runc 1.1.x (Debian 12 has 1.1.5), which implements runtime-spec 1.0.2.
    runc(
        "hooks-order",
        Class::RuncDeviation,
        "runc 1.1 runs poststart hooks during create, before start (runc #1710; moved to start in runc #5186)",
    ),
    runc(
        "hooks-stdin-poststart",
        Class::RuncDeviation,
        "runc 1.1 runs poststart hooks during create, so their state says \"created\" (runc #1710)",
    ),
    runc(
        "hooks-poststart-fail",
        Class::RuncDeviation,
        "runc 1.1 runs poststart hooks during create, so a failing one fails create (runc #1710)",
    ),
    runc(
        "hooks-poststop-fail",
        Class::RuncDeviation,
        "runc 1.1 stops at the first failing poststop hook instead of warning and running the rest (runc #1765)",
    ),
    runc(
        "domainname",
        Class::RuncDeviation,
        "runc 1.1 ignores domainname (added in runtime-spec 1.1.0, #1156)",
    ),
    runc(
        "ns-new-time",
        Class::RuncDeviation,
        "runc 1.1 has no time namespace (added in runtime-spec 1.1.0, #1151): \"namespace time does not exist\"",
    ),
    runc(
        "ns-time-offsets",
        Class::RuncDeviation,
        "runc 1.1 has no time namespace (added in runtime-spec 1.1.0, #1151)",
    ),
    runc(
        "rootfs-propagation-shared",
        Class::RuncDeviation,
        "runc before 1.2.x leaves the root private: it bind-mounts the rootfs under a parent it made private (runc #1755, fixed by #4724)",
    ),
    runc(
        "process-caps-unavailable",
        Class::Host,
        "this host's bounding set lacks CAP_SYS_RESOURCE, and runc 1.1 (runtime-spec 1.0: \"MUST cause an error\") fails create; runtime-spec 1.1 (#1094) says warn and go on",
    ),
];

/// The entry for `check` when testing `runtime` at `version` (its `--version` line), if any.
pub fn lookup(check: &str, runtime: &str, version: &str) -> Option<&'static Known> {
    lookup_in(KNOWN, check, runtime, version)
}

/// `lookup` over any list (the report's tests use their own entries).
pub fn lookup_in(
    list: &'static [Known],
    check: &str,
    runtime: &str,
    version: &str,
) -> Option<&'static Known> {
    list.iter()
        .find(|k| k.check == check && k.runtime == runtime && version.starts_with(k.version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_entry_names_a_check() {
        let ids: Vec<&str> = crate::checks::all().iter().map(|c| c.id).collect();
        for k in KNOWN {
            assert!(
                ids.contains(&k.check),
                "known.rs names no check {:?}",
                k.check
            );
        }
    }

    #[test]
    fn check_ids_are_unique() {
        let mut ids: Vec<&str> = crate::checks::all().iter().map(|c| c.id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate check ids");
    }
}
