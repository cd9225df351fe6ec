//! oci-probe: the helper the conformance suite runs inside a container. It reports what the
//! process sees (ids, capabilities, limits, namespaces, mounts, devices, ...) as one line of
//! JSON on stdout, so the runner can compare it with the config it wrote.
//!
//! It is built statically and copied to `/oci-probe` in a rootfs that holds nothing else:
//! only std and libc, no reliance on anything in the container's filesystem except what a
//! request names. Usage: `oci-probe REQUEST [ARGS...]`; `oci-probe help` lists requests.
//! Exit status: 0 when the report was printed (whatever it says), 2 on a bad request.

use serde_json::{json, Map, Value};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const USAGE: &str = "\
usage: oci-probe REQUEST [ARGS...]

requests (each prints one JSON object on stdout):
  ids                  uid, gid, euid, egid, supplementary groups, umask, no_new_privs, pid
  caps                 capability sets from /proc/self/status (as numbers)
  rlimits              soft and hard limit of every RLIMIT_*
  hostname             uname nodename and domainname
  ns                   /proc/self/ns/* links, pid, network interfaces, id maps, hostname,
                       /proc/self/cgroup
  mounts               /proc/self/mountinfo, parsed
  stat PATH...         lstat of each path: type, mode, owner, device numbers, link target
  open PATH r|w|rw     open(2) the path; reports errno
  write PATH           create PATH and write a byte; reports errno
  read PATH            the file's first 4 KiB; reports errno
  ls PATH              directory entries; reports errno
  mkdir PATH MODE      mkdirat(AT_FDCWD, PATH, MODE octal) as a raw syscall; reports errno
  sysctl KEY...        values under /proc/sys
  cwd | env | args     getcwd, the environment, argv
  tty                  isatty of 0-2, window size, /dev/console, controlling terminal
  cgroup               /proc/self/cgroup lines
  status               /proc/self/status as a map
  oom                  /proc/self/oom_score_adj
  clock                CLOCK_MONOTONIC and CLOCK_BOOTTIME seconds
  marker PATH          write our pid to PATH, then exit
  sleep SECONDS        sleep, then exit
  signals              print {\"ready\":true}, wait for HUP/INT/TERM/USR1/USR2, report it
  exit CODE            exit with CODE
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let request = args.get(1).map(String::as_str).unwrap_or("help");
    let rest = if args.len() > 2 { &args[2..] } else { &[] };
    let report = match request {
        "ids" => ids(),
        "caps" => caps(),
        "rlimits" => rlimits(),
        "hostname" => hostname(),
        "ns" => namespaces(),
        "mounts" => mounts(),
        "stat" => json!({ "paths": rest.iter().map(|p| stat(p)).collect::<Vec<_>>() }),
        "open" if rest.len() == 2 => open(&rest[0], &rest[1]),
        "write" if rest.len() == 1 => write(&rest[0]),
        "read" if rest.len() == 1 => read(&rest[0]),
        "ls" if rest.len() == 1 => list(&rest[0]),
        "mkdir" if rest.len() == 2 => mkdir(&rest[0], &rest[1]),
        "sysctl" => sysctl(rest),
        "cwd" => json!({ "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()) }),
        "env" => json!({ "env": std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect::<Vec<_>>() }),
        "args" => json!({ "args": args }),
        "tty" => tty(),
        "cgroup" => json!({ "lines": read_lines("/proc/self/cgroup") }),
        "status" => status(),
        "oom" => json!({ "oom_score_adj": std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok().and_then(|s| s.trim().parse::<i64>().ok()) }),
        "clock" => clock(),
        "marker" if rest.len() == 1 => marker(&rest[0]),
        "sleep" if rest.len() == 1 => {
            let secs: u64 = rest[0].parse().unwrap_or(1);
            std::thread::sleep(std::time::Duration::from_secs(secs));
            json!({ "slept": secs })
        }
        "signals" => signals(),
        "exit" if rest.len() == 1 => {
            let _ = std::io::stdout().flush();
            std::process::exit(rest[0].parse().unwrap_or(1));
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return;
        }
        _ => {
            eprint!("oci-probe: bad request {:?}\n{USAGE}", &args[1..]);
            std::process::exit(2);
        }
    };
    println!("{report}");
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn io_errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn cstr(path: &str) -> CString {
    CString::new(path).unwrap_or_else(|_| CString::new("/nonexistent").expect("no NUL"))
}

fn read_lines(path: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

fn ids() -> Value {
    // SAFETY: these calls have no preconditions; getgroups gets a buffer of the size it said.
    unsafe {
        let n = libc::getgroups(0, std::ptr::null_mut());
        let mut groups = vec![0 as libc::gid_t; n.max(0) as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        groups.truncate(n.max(0) as usize);
        // umask can only be read by setting it; put it back at once.
        let mask = libc::umask(0);
        libc::umask(mask);
        json!({
            "uid": libc::getuid(),
            "gid": libc::getgid(),
            "euid": libc::geteuid(),
            "egid": libc::getegid(),
            "groups": groups,
            "umask": mask,
            "no_new_privs": libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            "pid": libc::getpid(),
        })
    }
}

fn status_map() -> Map<String, Value> {
    read_lines("/proc/self/status")
        .into_iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), Value::String(v.trim().to_string())))
        })
        .collect()
}

fn status() -> Value {
    Value::Object(status_map())
}

fn caps() -> Value {
    let st = status_map();
    let mask = |key: &str| {
        st.get(key)
            .and_then(Value::as_str)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
    };
    json!({
        "bounding": mask("CapBnd"),
        "effective": mask("CapEff"),
        "permitted": mask("CapPrm"),
        "inheritable": mask("CapInh"),
        "ambient": mask("CapAmb"),
    })
}

const RLIMITS: &[(&str, libc::__rlimit_resource_t)] = &[
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
];

fn rlimits() -> Value {
    let mut out = Map::new();
    for (name, res) in RLIMITS {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into a valid struct.
        if unsafe { libc::getrlimit(*res, &mut lim) } == 0 {
            out.insert(name.to_string(), json!([lim.rlim_cur, lim.rlim_max]));
        }
    }
    Value::Object(out)
}

fn field(chars: &[libc::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hostname() -> Value {
    // SAFETY: uname fills a zeroed struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return json!({ "errno": errno() });
    }
    json!({ "hostname": field(&u.nodename), "domainname": field(&u.domainname) })
}

fn namespaces() -> Value {
    let mut ns = Map::new();
    for t in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(link) = std::fs::read_link(format!("/proc/self/ns/{t}")) {
            ns.insert(t.to_string(), json!(link.display().to_string()));
        }
    }
    // /proc/net/dev follows the reader's network namespace: "  lo: 0 0 ..." after 2 headers.
    let interfaces: Vec<String> = read_lines("/proc/self/net/dev")
        .iter()
        .skip(2)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_string()))
        .collect();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    json!({
        "ns": ns,
        "pid": pid,
        "interfaces": interfaces,
        "uid_map": read_lines("/proc/self/uid_map"),
        "gid_map": read_lines("/proc/self/gid_map"),
        "hostname": hostname()["hostname"],
        "cgroup": read_lines("/proc/self/cgroup"),
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push(
                b[i + 1..i + 4]
                    .iter()
                    .fold(0u32, |v, d| v * 8 + u32::from(d - b'0')) as u8,
            );
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn mounts() -> Value {
    let list: Vec<Value> = read_lines("/proc/self/mountinfo")
        .iter()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(json!({
                "id": l.first()?.parse::<u64>().ok()?,
                "parent": l.get(1)?.parse::<u64>().ok()?,
                "root": unescape(l.get(3)?),
                "mount_point": unescape(l.get(4)?),
                "options": l.get(5)?.split(',').collect::<Vec<_>>(),
                "optional": l.get(6..).unwrap_or(&[]).to_vec(),
                "fstype": r.first()?,
                "source": unescape(r.get(1).unwrap_or(&"")),
                "super_options": r.get(2).unwrap_or(&"").split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    json!({ "mounts": list })
}

fn stat(path: &str) -> Value {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => return json!({ "path": path, "exists": false, "errno": io_errno(&e) }),
    };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        "symlink"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else {
        "file"
    };
    let rdev = meta.rdev();
    json!({
        "path": path,
        "exists": true,
        "kind": kind,
        "mode": meta.mode() & 0o7777,
        "uid": meta.uid(),
        "gid": meta.gid(),
        "size": meta.size(),
        "major": libc::major(rdev),
        "minor": libc::minor(rdev),
        "link": std::fs::read_link(path).ok().map(|p| p.display().to_string()),
    })
}

fn open(path: &str, mode: &str) -> Value {
    let flags = match mode {
        "r" => libc::O_RDONLY,
        "w" => libc::O_WRONLY,
        _ => libc::O_RDWR,
    };
    let p = cstr(path);
    // SAFETY: open with a NUL-terminated path; the fd is closed right away.
    let fd = unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC | libc::O_NOCTTY) };
    if fd < 0 {
        return json!({ "path": path, "ok": false, "errno": errno() });
    }
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    json!({ "path": path, "ok": true, "errno": 0 })
}

fn write(path: &str) -> Value {
    let r = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"x"));
    match r {
        Ok(()) => json!({ "path": path, "ok": true, "errno": 0 }),
        Err(e) => json!({ "path": path, "ok": false, "errno": io_errno(&e) }),
    }
}

fn read(path: &str) -> Value {
    use std::io::Read;
    let mut buf = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(4096).read_to_end(&mut buf)) {
        Ok(_) => json!({ "path": path, "ok": true, "errno": 0,
                          "content": String::from_utf8_lossy(&buf) }),
        Err(e) => json!({ "path": path, "ok": false, "errno": io_errno(&e) }),
    }
}

fn list(path: &str) -> Value {
    match std::fs::read_dir(path) {
        Ok(dir) => {
            let mut names: Vec<String> = dir
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            json!({ "path": path, "ok": true, "errno": 0, "entries": names })
        }
        Err(e) => json!({ "path": path, "ok": false, "errno": io_errno(&e) }),
    }
}

fn mkdir(path: &str, mode: &str) -> Value {
    let mode = u32::from_str_radix(mode, 8).unwrap_or(0o755);
    let p = cstr(path);
    // A raw mkdirat, so a seccomp rule on mkdirat (and its mode argument) sees exactly this
    // call whatever the libc would have used.
    // SAFETY: mkdirat with a NUL-terminated path.
    let r = unsafe { libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, p.as_ptr(), mode) };
    if r < 0 {
        json!({ "path": path, "ok": false, "errno": errno() })
    } else {
        json!({ "path": path, "ok": true, "errno": 0 })
    }
}

fn sysctl(keys: &[String]) -> Value {
    let mut out = Map::new();
    for k in keys {
        let path = format!("/proc/sys/{}", k.replace('.', "/"));
        let v = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.trim().to_string());
        out.insert(k.clone(), json!(v));
    }
    Value::Object(out)
}

fn tty() -> Value {
    // SAFETY: isatty/ioctl/fstat on the standard descriptors with valid out-pointers.
    unsafe {
        let isatty: Vec<bool> = (0..3).map(|fd| libc::isatty(fd) == 1).collect();
        let mut ws: libc::winsize = std::mem::zeroed();
        let winsize = if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            json!({ "rows": ws.ws_row, "cols": ws.ws_col })
        } else {
            Value::Null
        };
        let mut st: libc::stat = std::mem::zeroed();
        let stdin_rdev = if libc::fstat(0, &mut st) == 0 {
            json!([libc::major(st.st_rdev), libc::minor(st.st_rdev)])
        } else {
            Value::Null
        };
        let console = stat("/dev/console");
        let dev_tty = cstr("/dev/tty");
        let fd = libc::open(dev_tty.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        let ctty = fd >= 0;
        let ctty_errno = if ctty { 0 } else { errno() };
        if fd >= 0 {
            libc::close(fd);
        }
        json!({
            "isatty": isatty,
            "winsize": winsize,
            "stdin_rdev": stdin_rdev,
            "console": console,
            "ctty": ctty,
            "ctty_errno": ctty_errno,
            "sid": libc::getsid(0),
            "pid": libc::getpid(),
            "tcpgrp": libc::tcgetpgrp(0),
        })
    }
}

fn clock() -> Value {
    let read = |id: libc::clockid_t| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a valid struct.
        unsafe { libc::clock_gettime(id, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    json!({ "monotonic": read(libc::CLOCK_MONOTONIC), "boottime": read(libc::CLOCK_BOOTTIME) })
}

fn marker(path: &str) -> Value {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    match std::fs::write(path, pid.to_string()) {
        Ok(()) => json!({ "marker": path, "ok": true }),
        Err(e) => json!({ "marker": path, "ok": false, "errno": io_errno(&e) }),
    }
}

extern "C" fn note_signal(_: libc::c_int) {}

/// As PID 1 of a pid namespace a signal without a handler is dropped, so every signal we
/// wait for gets one (and is blocked, so sigwaitinfo collects it) before we say "ready".
fn signals() -> Value {
    let wanted = [
        libc::SIGHUP,
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];
    // SAFETY: plain signal-mask and sigaction calls with initialized structs; the handler
    // does nothing.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in wanted {
            libc::sigaddset(&mut set, s);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(s, &sa, std::ptr::null_mut());
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        println!("{}", json!({ "ready": true }));
        let _ = std::io::stdout().flush();
        loop {
            let sig = libc::sigwaitinfo(&set, std::ptr::null_mut());
            if sig > 0 {
                return json!({ "signal": sig });
            }
        }
    }
}
