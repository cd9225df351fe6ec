//! Turning a config.json mount's `options` into mount(2) flags, propagation flags and the
//! filesystem data string. Pure, so every option is unit-tested.

use nix::mount::MsFlags;

#[derive(Debug, PartialEq, Eq)]
pub struct ParsedOptions {
    /// Flags for the mount itself (and for the remount of a bind mount).
    pub flags: MsFlags,
    /// Flags cleared by an explicit opposite (`rw`, `suid`, ...): only matter on remount.
    pub cleared: MsFlags,
    /// MS_SHARED/MS_PRIVATE/... applied with a separate mount call, as the kernel requires.
    pub propagation: Vec<MsFlags>,
    /// Options the kernel flags do not cover, passed as the filesystem's data string.
    pub data: Vec<String>,
    pub bind: bool,
    pub recursive: bool,
}

impl Default for ParsedOptions {
    fn default() -> Self {
        ParsedOptions {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            data: Vec::new(),
            bind: false,
            recursive: false,
        }
    }
}

impl ParsedOptions {
    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Every option `parse` knows (the rest are passed to the filesystem as data).
pub const KNOWN: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "private",
    "rbind",
    "relatime",
    "remount",
    "ro",
    "rprivate",
    "rshared",
    "rslave",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "sync",
    "unbindable",
];

pub fn parse(options: &[String]) -> ParsedOptions {
    let mut p = ParsedOptions::default();
    for opt in options {
        let set = |f: MsFlags, p: &mut ParsedOptions| {
            p.flags.insert(f);
            p.cleared.remove(f);
        };
        let clear = |f: MsFlags, p: &mut ParsedOptions| {
            p.flags.remove(f);
            p.cleared.insert(f);
        };
        match opt.as_str() {
            "defaults" => {}
            "ro" => set(MsFlags::MS_RDONLY, &mut p),
            "rw" => clear(MsFlags::MS_RDONLY, &mut p),
            "nosuid" => set(MsFlags::MS_NOSUID, &mut p),
            "suid" => clear(MsFlags::MS_NOSUID, &mut p),
            "nodev" => set(MsFlags::MS_NODEV, &mut p),
            "dev" => clear(MsFlags::MS_NODEV, &mut p),
            "noexec" => set(MsFlags::MS_NOEXEC, &mut p),
            "exec" => clear(MsFlags::MS_NOEXEC, &mut p),
            "sync" => set(MsFlags::MS_SYNCHRONOUS, &mut p),
            "async" => clear(MsFlags::MS_SYNCHRONOUS, &mut p),
            "dirsync" => set(MsFlags::MS_DIRSYNC, &mut p),
            "remount" => set(MsFlags::MS_REMOUNT, &mut p),
            "mand" => set(MsFlags::MS_MANDLOCK, &mut p),
            "nomand" => clear(MsFlags::MS_MANDLOCK, &mut p),
            "atime" => clear(MsFlags::MS_NOATIME, &mut p),
            "noatime" => set(MsFlags::MS_NOATIME, &mut p),
            "diratime" => clear(MsFlags::MS_NODIRATIME, &mut p),
            "nodiratime" => set(MsFlags::MS_NODIRATIME, &mut p),
            "relatime" => set(MsFlags::MS_RELATIME, &mut p),
            "norelatime" => clear(MsFlags::MS_RELATIME, &mut p),
            "strictatime" => set(MsFlags::MS_STRICTATIME, &mut p),
            "nostrictatime" => clear(MsFlags::MS_STRICTATIME, &mut p),
            "silent" => set(MsFlags::MS_SILENT, &mut p),
            "loud" => clear(MsFlags::MS_SILENT, &mut p),
            "bind" => p.bind = true,
            "rbind" => {
                p.bind = true;
                p.recursive = true;
            }
            "private" => p.propagation.push(MsFlags::MS_PRIVATE),
            "rprivate" => p.propagation.push(MsFlags::MS_PRIVATE | MsFlags::MS_REC),
            "shared" => p.propagation.push(MsFlags::MS_SHARED),
            "rshared" => p.propagation.push(MsFlags::MS_SHARED | MsFlags::MS_REC),
            "slave" => p.propagation.push(MsFlags::MS_SLAVE),
            "rslave" => p.propagation.push(MsFlags::MS_SLAVE | MsFlags::MS_REC),
            "unbindable" => p.propagation.push(MsFlags::MS_UNBINDABLE),
            "runbindable" => p.propagation.push(MsFlags::MS_UNBINDABLE | MsFlags::MS_REC),
            other => p.data.push(other.to_string()),
        }
    }
    p
}

/// `rootfsPropagation` as a flag for the whole tree.
pub fn root_propagation(value: &str) -> Option<MsFlags> {
    let f = match value {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    };
    Some(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(o: &[&str]) -> ParsedOptions {
        parse(&o.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let p = opts(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"]);
        assert_eq!(p.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(p.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(p.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!p.bind);
    }

    #[test]
    fn later_options_win() {
        let p = opts(&["ro", "rw", "noexec", "exec"]);
        assert!(!p.flags.contains(MsFlags::MS_RDONLY));
        assert!(!p.flags.contains(MsFlags::MS_NOEXEC));
        assert!(p.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn bind_and_rbind() {
        let p = opts(&["rbind", "ro"]);
        assert!(p.bind && p.recursive);
        let p = opts(&["bind"]);
        assert!(p.bind && !p.recursive);
    }

    #[test]
    fn root_propagation_values() {
        assert_eq!(
            root_propagation("rshared"),
            Some(MsFlags::MS_SHARED | MsFlags::MS_REC)
        );
        assert_eq!(root_propagation("bogus"), None);
    }
}
