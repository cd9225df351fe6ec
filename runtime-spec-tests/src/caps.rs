//! Capability names (as config.json spells them) and their bits (as /proc/PID/status shows
//! them), from linux/capability.h.

pub const NAMES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The bit of a capability name; None for a name this table does not know.
pub fn bit(name: &str) -> Option<u32> {
    NAMES.iter().position(|n| *n == name).map(|i| i as u32)
}

/// The mask of a list of names. Unknown names are ignored.
pub fn mask(names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| bit(n))
        .fold(0, |m, b| m | (1u64 << b))
}

/// The names set in a mask (bits beyond the table as `cap_N`).
pub fn names(mask: u64) -> Vec<String> {
    (0..64)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| {
            NAMES
                .get(b as usize)
                .map(|n| n.to_string())
                .unwrap_or_else(|| format!("cap_{b}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bits_round_trip() {
        assert_eq!(bit("CAP_CHOWN"), Some(0));
        assert_eq!(bit("CAP_SYS_RESOURCE"), Some(24));
        assert_eq!(bit("CAP_CHECKPOINT_RESTORE"), Some(40));
        let m = mask(&["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NOPE"]);
        assert_eq!(m, (1 << 5) | (1 << 10));
        assert_eq!(names(m), vec!["CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        assert_eq!(names(1 << 50), vec!["cap_50"]);
    }
}
