//! The few IPv4 sysctls a bridge network needs, written through `/proc/sys`.
//!
//! Each writer reads first and writes only on a change, and says whether it changed
//! something, so that the caller can record it and undo exactly that (netavark#362: writing
//! an unchanged value also fails where `/proc/sys` is read-only).

use std::fs;
use std::path::{Path, PathBuf};

use crate::link::{valid_ifname, LinkError};

/// Sets `path` to `value` if it is not already; returns the old value when it changed.
pub fn set(path: &Path, value: &str) -> Result<Option<String>, LinkError> {
    let err = |source| LinkError::Sysctl {
        path: path.to_path_buf(),
        source,
    };
    let old = fs::read_to_string(path).map_err(err)?;
    let old = old.trim();
    if old == value {
        return Ok(None);
    }
    fs::write(path, value).map_err(err)?;
    Ok(Some(old.to_string()))
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// Turns on IPv4 forwarding, which routing between the bridge and the outside needs.
/// Returns `true` if it was off, so the caller can remember to turn it back off.
pub fn enable_ip_forward() -> Result<bool, LinkError> {
    Ok(set(Path::new(IP_FORWARD), "1")?.is_some())
}

/// Turns IPv4 forwarding back off; only for a caller that saw [`enable_ip_forward`] return
/// `true`, since other software on the host may rely on it.
pub fn disable_ip_forward() -> Result<(), LinkError> {
    set(Path::new(IP_FORWARD), "0").map(drop)
}

fn conf_path(ifname: &str, key: &str) -> Result<PathBuf, LinkError> {
    if !valid_ifname(ifname) {
        return Err(LinkError::BadName(ifname.to_string()));
    }
    Ok(PathBuf::from(format!(
        "/proc/sys/net/ipv4/conf/{ifname}/{key}"
    )))
}

/// Per-bridge settings for published ports:
/// - `route_localnet=1`: a connection to `127.0.0.1:<port>` is DNATed in OUTPUT and then
///   leaves through the bridge with source 127.0.0.1; without this the kernel drops it as a
///   martian (Docker's `setupLoopbackAddressesRouting`, netavark's bridge.rs). The source is
///   masqueraded afterwards, and berth drops packets *arriving* on the bridge for 127/8.
/// - `rp_filter=2` (loose): strict reverse-path filtering breaks DNAT to containers.
pub fn prepare_bridge(bridge: &str) -> Result<(), LinkError> {
    set(&conf_path(bridge, "route_localnet")?, "1")?;
    set(&conf_path(bridge, "rp_filter")?, "2")?;
    Ok(())
}
