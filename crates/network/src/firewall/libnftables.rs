//! libnftables in-process: the nftables driver's batches go to the kernel without starting
//! `nft`, whose process start was most of a published port's setup time (issue 6: ~9 ms of
//! a container's network setup against a 5 ms target).
//!
//! Why this way, and not the alternatives:
//! - A pure-Rust netlink crate: `rustables` is GPL-3.0-or-later (berth is Apache-2.0), and
//!   `nftnl` links libnftnl at build time and has no parser, so every rule would be
//!   re-encoded by hand as expressions (fib, ct, meta, payload, nat, masq, the comment as
//!   udata) and the listing decoded back: a second compiler for our rules whose output can
//!   drift from what `nft` writes, where the tests and crash recovery expect exactly that.
//! - The crates that wrap libnftables (`libnftables-sys`, GPL-2.0, and a few unpublished
//!   ones) link it at build time with bindgen, which needs the -dev package and libclang on
//!   every build machine.
//! - So: the same library `nft` is a thin wrapper over, opened with `dlopen` (Debian's
//!   `libnftables1` comes with the `nftables` package), fed the very ruleset text we gave
//!   `nft -f -`. The rules and the JSON listing are byte for byte what `nft` produces. The
//!   FFI is eight functions of a stable, versioned C API (`libnftables.h`, unchanged since
//!   nftables 0.9.1), declared here by hand; `dlopen` through `libc` rather than
//!   `libloading`, which would be one more dependency (and a newer MSRV) for three calls.
//!
//! Removal stays list-then-delete (by handle), now both in-process (~0.6 ms with a small
//! table, against ~18 ms for the two `nft` runs), so that crash recovery and a normal stop
//! still read the same kernel state. When the library cannot be loaded, the driver spawns
//! `nft` as before.
//!
//! The process's instance ([`LibNftables::shared`]) is unloaded after [`IDLE_UNLOAD`]
//! without a call: the library and its dependencies (gmp, libnftnl, jansson, libxtables)
//! and the context's ruleset cache hold ~1.5 MB of berthd's resident memory, which an idle
//! daemon (issue 7: under 15 MB) should not keep for rule changes that come in bursts. The
//! next call loads it again (~1 ms).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::FirewallError;

/// The soname of the library, as Debian and Fedora ship it. Version 1 is the API declared
/// below: `nft_run_cmd_from_buffer` lost its length argument in nftables 0.9.1, which
/// bumped the soname from 0 (Debian 10's `libnftables0`, never loaded here).
pub const DEFAULT_LIBRARY: &str = "libnftables.so.1";

/// `NFT_CTX_OUTPUT_JSON` from `libnftables.h`: listings in the format of `nft -j`.
const OUTPUT_JSON: c_uint = 1 << 4;

type CtxNew = unsafe extern "C" fn(flags: u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(ctx: *mut c_void);
type CtxBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> c_int;
type CtxGetBuffer = unsafe extern "C" fn(ctx: *mut c_void) -> *const c_char;
type CtxSetFlags = unsafe extern "C" fn(ctx: *mut c_void, flags: c_uint);
type RunCmd = unsafe extern "C" fn(ctx: *mut c_void, buf: *const c_char) -> c_int;

/// The functions of `libnftables.h` that berth uses.
struct Api {
    ctx_new: CtxNew,
    ctx_free: CtxFree,
    buffer_output: CtxBuffer,
    buffer_error: CtxBuffer,
    get_output_buffer: CtxGetBuffer,
    get_error_buffer: CtxGetBuffer,
    output_set_flags: CtxSetFlags,
    run_cmd_from_buffer: RunCmd,
}

/// Every call into the library, on any context, holds this. `nft_ctx_new` sets up the
/// library's globals (gmp, xtables) behind an unguarded `static bool`, and contexts are not
/// meant to be shared between threads; firewall changes are rare enough that one at a time
/// costs nothing.
static CALLS: Mutex<()> = Mutex::new(());

fn calls() -> MutexGuard<'static, ()> {
    CALLS.lock().unwrap_or_else(|p| p.into_inner())
}

/// An `nft_ctx` with buffered output and error, and the network namespace its netlink
/// socket lives in.
struct Ctx {
    ptr: NonNull<c_void>,
    netns: Option<(u64, u64)>,
}

// SAFETY: a context has no thread affinity (its socket is bound to a namespace, not a
// thread, and `run` checks the namespace); it is only touched with `CALLS` held.
unsafe impl Send for Ctx {}

/// libnftables, loaded, with one context reused across calls: making a context reads
/// `/etc/iproute2` tables and opens a netlink socket, and its cache of the ruleset is
/// refreshed by the library whenever the kernel's generation id moved (someone else
/// changed the ruleset), so reuse is safe.
pub struct LibNftables {
    api: Api,
    name: String,
    ctx: Mutex<Option<Ctx>>,
    /// The `dlopen` handle, closed on drop (after the context is freed).
    handle: NonNull<c_void>,
}

// SAFETY: the handle is only passed to dlclose, once, on drop; the library's functions are
// only called with `CALLS` held.
unsafe impl Send for LibNftables {}
// SAFETY: as above; `&self` methods reach the library only through `CALLS` and `ctx`.
unsafe impl Sync for LibNftables {}

/// How long the process's instance stays loaded without a call.
pub const IDLE_UNLOAD: Duration = Duration::from_secs(10);

/// The process's instance, and when it was last handed out.
enum Shared {
    NotLoaded,
    Loaded {
        lib: Arc<LibNftables>,
        used: Instant,
    },
    /// Tried once and failed: callers spawn `nft`.
    Unavailable,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared::NotLoaded);

fn shared_state() -> MutexGuard<'static, Shared> {
    SHARED.lock().unwrap_or_else(|p| p.into_inner())
}

impl std::fmt::Debug for LibNftables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibNftables")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The library's own message of the last `dlopen`/`dlsym` failure.
fn dlerror() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call;
    // it is copied at once.
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown error".to_string()
    } else {
        // SAFETY: non-NULL, NUL-terminated (above).
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// The descriptors open in this process.
fn open_fds() -> Vec<c_int> {
    std::fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn is_netfilter_socket(fd: c_int) -> bool {
    let int_opt = |opt: c_int| {
        let mut v: c_int = -1;
        let mut len = std::mem::size_of::<c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `v`; a descriptor that is not
        // a socket (or no longer open) just fails.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    int_opt(libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
        && int_opt(libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
}

/// The identity of the calling thread's network namespace.
fn current_netns() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net")
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

impl LibNftables {
    /// Opens `name` (a soname or a path) and resolves the functions; the error says why not.
    pub fn load(name: &str) -> Result<Self, String> {
        let cname = CString::new(name).map_err(|_| format!("{name:?}: NUL in the name"))?;
        let _g = calls();
        // SAFETY: dlopen with a valid C string; the library's constructors are libc's and
        // its dependencies' (libnftnl, libmnl, jansson, gmp, libxtables), none of which
        // touch our state. The handle is closed when this value drops, and the functions
        // below are only reached through it.
        let handle = unsafe { libc::dlopen(cname.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        let Some(handle) = NonNull::new(handle) else {
            return Err(dlerror());
        };
        let close = || {
            // SAFETY: the handle just opened, not used after.
            unsafe { libc::dlclose(handle.as_ptr()) };
        };
        let handle_ptr = handle.as_ptr();
        let sym = |s: &CStr| -> Result<*mut c_void, String> {
            // SAFETY: a live handle and a NUL-terminated name.
            let p = unsafe { libc::dlsym(handle_ptr, s.as_ptr()) };
            if p.is_null() {
                Err(format!("{}: {}", s.to_string_lossy(), dlerror()))
            } else {
                Ok(p)
            }
        };
        // SAFETY (each transmute): the symbol is the function of that name in
        // libnftables.h, whose signature the type alias spells out.
        let api = (|| -> Result<Api, String> {
            Ok(unsafe {
                Api {
                    ctx_new: std::mem::transmute::<*mut c_void, CtxNew>(sym(c"nft_ctx_new")?),
                    ctx_free: std::mem::transmute::<*mut c_void, CtxFree>(sym(c"nft_ctx_free")?),
                    buffer_output: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                        c"nft_ctx_buffer_output",
                    )?),
                    buffer_error: std::mem::transmute::<*mut c_void, CtxBuffer>(sym(
                        c"nft_ctx_buffer_error",
                    )?),
                    get_output_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(sym(
                        c"nft_ctx_get_output_buffer",
                    )?),
                    get_error_buffer: std::mem::transmute::<*mut c_void, CtxGetBuffer>(sym(
                        c"nft_ctx_get_error_buffer",
                    )?),
                    output_set_flags: std::mem::transmute::<*mut c_void, CtxSetFlags>(sym(
                        c"nft_ctx_output_set_flags",
                    )?),
                    run_cmd_from_buffer: std::mem::transmute::<*mut c_void, RunCmd>(sym(
                        c"nft_run_cmd_from_buffer",
                    )?),
                }
            })
        })();
        let api = api.inspect_err(|_| close())?;
        Ok(Self {
            api,
            name: name.to_string(),
            ctx: Mutex::new(None),
            handle,
        })
    }

    /// The process's library ([`DEFAULT_LIBRARY`]), loaded on first use and again after it
    /// was unloaded for idleness; `None` (said once, at debug) when it cannot be, and
    /// callers spawn `nft` instead. Callers hold the `Arc` for one call, not longer: a held
    /// one keeps the library loaded.
    pub fn shared() -> Option<Arc<Self>> {
        let mut state = shared_state();
        match &mut *state {
            Shared::Loaded { lib, used } => {
                *used = Instant::now();
                return Some(lib.clone());
            }
            Shared::Unavailable => return None,
            Shared::NotLoaded => {}
        }
        match Self::load(DEFAULT_LIBRARY) {
            Ok(lib) => {
                let lib = Arc::new(lib);
                *state = Shared::Loaded {
                    lib: lib.clone(),
                    used: Instant::now(),
                };
                if let Err(e) = std::thread::Builder::new()
                    .name("nft-unload".into())
                    .spawn(unload_when_idle)
                {
                    // Stays loaded: only memory is lost.
                    tracing::debug!("no thread to unload libnftables when idle: {e}");
                }
                Some(lib)
            }
            Err(e) => {
                tracing::debug!("libnftables not loaded ({e}); running nft instead");
                *state = Shared::Unavailable;
                None
            }
        }
    }

    fn new_ctx(&self) -> Result<Ctx, FirewallError> {
        let fail = |detail: &str| FirewallError::Library {
            library: self.name.clone(),
            detail: detail.to_string(),
        };
        // nft_ctx_new opens its netlink socket and, when that fails, prints a message and
        // calls exit(): the daemon would be gone. Opening one ourselves first turns the
        // likely causes (no nfnetlink, out of descriptors) into an error here.
        // SAFETY: socket(2) with constant arguments; the descriptor is closed right after.
        let probe = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            )
        };
        if probe < 0 {
            let e = std::io::Error::last_os_error();
            return Err(fail(&format!(
                "cannot open a netfilter netlink socket: {e}"
            )));
        }
        // SAFETY: the descriptor just opened, ours alone.
        unsafe { libc::close(probe) };
        // SAFETY: NFT_CTX_DEFAULT (0) is the only flag value nft_ctx_new knows.
        let ptr = NonNull::new(unsafe { (self.api.ctx_new)(0) })
            .ok_or_else(|| fail("nft_ctx_new failed"))?;
        // libmnl opens the socket without SOCK_CLOEXEC, and the library offers no way to
        // reach it: every shim and container the daemon starts would inherit a handle on
        // the host's firewall. Everything else of ours is opened close-on-exec already, so
        // marking every netfilter netlink socket of the process catches just this one.
        for fd in open_fds() {
            if is_netfilter_socket(fd) {
                // SAFETY: F_SETFD on a descriptor number changes only its flags.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
        // SAFETY: a fresh, live context.
        let buffered = unsafe {
            (self.api.buffer_output)(ptr.as_ptr()) == 0
                && (self.api.buffer_error)(ptr.as_ptr()) == 0
        };
        if !buffered {
            // SAFETY: ours, not used after.
            unsafe { (self.api.ctx_free)(ptr.as_ptr()) };
            return Err(fail("cannot buffer the output of a context"));
        }
        Ok(Ctx {
            ptr,
            netns: current_netns(),
        })
    }

    /// Runs `cmds` (the text `nft -f -` takes; one atomic batch) and returns the output,
    /// in JSON when `json`, as `nft -j` would. A failure carries nft's own message, as the
    /// stderr of `nft` would: callers match on it.
    pub fn run(&self, cmds: &str, json: bool) -> Result<String, FirewallError> {
        let text = CString::new(cmds).map_err(|_| FirewallError::Library {
            library: self.name.clone(),
            detail: "NUL in the ruleset text".to_string(),
        })?;
        let _g = calls();
        let mut slot = self.ctx.lock().unwrap_or_else(|p| p.into_inner());
        let here = current_netns();
        // The context's netlink socket talks to the namespace it was made in; a caller in
        // another one (a thread that did setns) gets a context of its own for this call,
        // as a spawned `nft` would have run in the caller's namespace.
        let stray = match slot.as_ref() {
            Some(c) if c.netns == here => None,
            Some(_) => Some(self.new_ctx()?),
            None => {
                *slot = Some(self.new_ctx()?);
                None
            }
        };
        let ctx = match (&stray, slot.as_ref()) {
            (Some(c), _) | (None, Some(c)) => c.ptr,
            (None, None) => {
                return Err(FirewallError::Library {
                    library: self.name.clone(),
                    detail: "no context".to_string(),
                })
            }
        };
        let result = self.run_in(ctx, &text, json);
        if let Some(c) = stray {
            // SAFETY: the context made for this call, not used after.
            unsafe { (self.api.ctx_free)(c.ptr.as_ptr()) };
        }
        result
    }

    fn run_in(
        &self,
        ctx: NonNull<c_void>,
        text: &CStr,
        json: bool,
    ) -> Result<String, FirewallError> {
        let ctx = ctx.as_ptr();
        // SAFETY: a live context (CALLS held), a NUL-terminated command text; the buffers
        // are NUL-terminated strings owned by the context, copied before the next call.
        unsafe {
            (self.api.output_set_flags)(ctx, if json { OUTPUT_JSON } else { 0 });
            let rc = (self.api.run_cmd_from_buffer)(ctx, text.as_ptr());
            let out = buffer_text((self.api.get_output_buffer)(ctx));
            let err = buffer_text((self.api.get_error_buffer)(ctx));
            if rc != 0 {
                return Err(FirewallError::Command {
                    cmd: format!("{} (in-process nft)", self.name),
                    status: format!("returned {rc}"),
                    stderr: err.trim().to_string(),
                });
            }
            Ok(out)
        }
    }
}

/// Copies one of a context's buffers.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that stays valid for the call.
unsafe fn buffer_text(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: the caller's promise.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

impl Drop for LibNftables {
    fn drop(&mut self) {
        let _g = calls();
        let slot = self.ctx.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.take() {
            // SAFETY: our context, not used after.
            unsafe { (self.api.ctx_free)(c.ptr.as_ptr()) };
        }
        // SAFETY: our handle; nothing of the library is reachable after this value.
        unsafe { libc::dlclose(self.handle.as_ptr()) };
    }
}

/// The body of the thread [`LibNftables::shared`] starts with each load: waits until the
/// instance has gone [`IDLE_UNLOAD`] without being handed out (and no caller holds it),
/// then drops it, which frees the context and closes the library, and gives the freed heap
/// back to the system. A later `shared` loads it again, with a new thread.
fn unload_when_idle() {
    loop {
        let wait = {
            let mut state = shared_state();
            let Shared::Loaded { lib, used } = &*state else {
                return;
            };
            let idle = used.elapsed();
            if idle >= IDLE_UNLOAD && Arc::strong_count(lib) == 1 {
                let Shared::Loaded { lib, .. } = std::mem::replace(&mut *state, Shared::NotLoaded)
                else {
                    return;
                };
                drop(state);
                drop(lib);
                trim_heap();
                tracing::debug!("libnftables unloaded after {idle:?} idle");
                return;
            }
            IDLE_UNLOAD
                .saturating_sub(idle)
                .max(Duration::from_millis(100))
        };
        std::thread::sleep(wait);
    }
}

/// Returns free heap at the top of glibc's arenas to the system (what the library's
/// context and caches used).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether the process's instance is loaded now (tests of the idle unload).
#[doc(hidden)]
pub fn shared_is_loaded() -> bool {
    matches!(&*shared_state(), Shared::Loaded { .. })
}
