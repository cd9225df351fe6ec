//! JSON request bodies decoded into the wire types, as dockerd's `httputils.ReadJSON`.
//!
//! serde's derived `Deserialize` also reads a struct from a JSON array of its fields in
//! order, so `[]` would be an all-default request (an anonymous volume, a network named
//! "") and `["n"]` a network named `n`. dockerd's decoder refuses an array where an object
//! belongs; so does berthd.

use serde::de::DeserializeOwned;

use crate::response::ApiError;

/// `body` as a `T`, which must be a JSON object; 400 `invalid JSON: ...` otherwise.
pub fn decode_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        // A syntax error in the array is the better message when there is one.
        if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            return Err(ApiError::bad_request(format!("invalid JSON: {e}")));
        }
        return Err(ApiError::bad_request(
            "invalid JSON: cannot unmarshal array into an object",
        ));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use berth_api::network::NetworkCreateRequest;
    use berth_api::volume::VolumeCreateRequest;

    use super::*;

    #[test]
    fn arrays_are_not_structs() {
        // Without the check serde takes both: a default volume, a network named "n".
        assert!(serde_json::from_slice::<VolumeCreateRequest>(b"[]").is_ok());
        assert!(serde_json::from_slice::<NetworkCreateRequest>(br#"["n"]"#).is_ok());
        for body in [&b"[]"[..], b" \n[\"n\"]", b"[1,2]"] {
            let err = decode_object::<NetworkCreateRequest>(body).expect_err("refused");
            assert_eq!(
                err.message,
                "invalid JSON: cannot unmarshal array into an object"
            );
        }
        let err = decode_object::<VolumeCreateRequest>(b"[1,").expect_err("refused");
        assert!(err.message.starts_with("invalid JSON: "), "{}", err.message);
        let err = decode_object::<VolumeCreateRequest>(b"{\"Name\":").expect_err("refused");
        assert!(
            err.message.starts_with("invalid JSON: EOF"),
            "{}",
            err.message
        );
        let ok: NetworkCreateRequest = decode_object(br#" {"Name":"n"}"#).expect("object");
        assert_eq!(ok.name, "n");
    }
}
