//! The API's request bodies, deserialized as berthd does (`serde_json::from_slice` into
//! the wire types of crates/api). The first byte picks the type; the rest is the body.
//! A body that decodes must encode, and the encoding must decode to the same value:
//! berth's CLI sends what berthd reads through these same types.

#![no_main]

use berth_api::container::{ContainerCreateRequest, HostConfig, NetworkingConfig};
use berth_api::exec::{ExecConfig, ExecStartConfig};
use berth_api::network::NetworkCreateRequest;
use berth_api::volume::VolumeCreateRequest;
use libfuzzer_sys::fuzz_target;
use serde::de::DeserializeOwned;
use serde::Serialize;

fn round_trip<T>(body: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(body) else {
        return;
    };
    let encoded = serde_json::to_vec(&value).expect("a decoded body encodes");
    let again: T = match serde_json::from_slice(&encoded) {
        Ok(v) => v,
        Err(e) => panic!(
            "{} re-encoded as {} does not decode: {e}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&encoded)
        ),
    };
    assert_eq!(
        again,
        value,
        "encoded as {}",
        String::from_utf8_lossy(&encoded)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 7 {
        0 => round_trip::<ContainerCreateRequest>(body),
        1 => round_trip::<HostConfig>(body),
        2 => round_trip::<NetworkingConfig>(body),
        3 => round_trip::<ExecConfig>(body),
        4 => round_trip::<ExecStartConfig>(body),
        5 => round_trip::<NetworkCreateRequest>(body),
        _ => round_trip::<VolumeCreateRequest>(body),
    }
});
