//! API versions (`"1.44"`) and the range check the daemon applies to `/vX.Y/` prefixes.

use std::fmt;
use std::str::FromStr;

use thiserror::Error;

/// An Engine API version such as `1.44`. Ordered numerically, so `1.9 < 1.10`, which
/// string comparison gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    pub major: u32,
    pub minor: u32,
}

/// The newest API berth speaks: dockerd 25.0's level, which every CLI from 24 to 28
/// negotiates down to and which the v29 CLI still accepts as its minimum.
pub const MAX_API_VERSION: ApiVersion = ApiVersion::new(1, 44);

/// The oldest API berth accepts: dockerd's default minimum from 25.0 to 28.x, and the
/// floor docker-py refuses to go below anyway (`MINIMUM_DOCKER_API_VERSION = '1.24'`).
pub const MIN_API_VERSION: ApiVersion = ApiVersion::new(1, 24);

impl ApiVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        Self { major, minor }
    }

    /// The version both sides speak: the lower of the two. This is what the Go client does
    /// with the daemon's `Api-Version` header (`negotiateAPIVersionPing`).
    pub fn negotiate(self, other: ApiVersion) -> ApiVersion {
        self.min(other)
    }

    /// Whether the daemon serves requests at this version, with Docker's own wording for
    /// the refusal (moby `daemon/server/middleware/version.go`), since users search for it.
    pub fn check_supported(self) -> Result<ApiVersion, UnsupportedVersion> {
        if self < MIN_API_VERSION {
            Err(UnsupportedVersion::TooOld {
                requested: self,
                min: MIN_API_VERSION,
            })
        } else if self > MAX_API_VERSION {
            Err(UnsupportedVersion::TooNew {
                requested: self,
                max: MAX_API_VERSION,
            })
        } else {
            Ok(self)
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A string that is not `MAJOR.MINOR` (or a bare `MAJOR`, which moby's `[0-9.]+` route
/// pattern also admits) in decimal digits.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid API version {0:?}: expected MAJOR.MINOR, e.g. \"1.44\"")]
pub struct ParseVersionError(pub String);

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseVersionError(s.to_owned());
        let number = |part: &str| -> Result<u32, ParseVersionError> {
            // `u32::from_str` takes a leading `+`; a version does not.
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse().map_err(|_| bad())
        };
        match s.split_once('.') {
            Some((major, minor)) => Ok(Self::new(number(major)?, number(minor)?)),
            None => Ok(Self::new(number(s)?, 0)),
        }
    }
}

/// A well-formed version outside `MIN_API_VERSION..=MAX_API_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UnsupportedVersion {
    #[error(
        "client version {requested} is too old. Minimum supported API version is {min}, \
         please upgrade your client to a newer version"
    )]
    TooOld {
        requested: ApiVersion,
        min: ApiVersion,
    },
    #[error("client version {requested} is too new. Maximum supported API version is {max}")]
    TooNew {
        requested: ApiVersion,
        max: ApiVersion,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> ApiVersion {
        s.parse().expect("valid version")
    }

    #[test]
    fn orders_numerically_not_lexically() {
        assert!(v("1.9") < v("1.10"));
        assert!(v("1.44") < v("1.100"));
        assert!(v("1.44") < v("2.0"));
        assert_eq!(v("1.44"), ApiVersion::new(1, 44));
        assert_eq!(v("2"), ApiVersion::new(2, 0));
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "1.",
            ".1",
            "1.44.1",
            "a.b",
            "1.+4",
            "-1.2",
            "1.44x",
            "99999999999.1",
        ] {
            assert!(s.parse::<ApiVersion>().is_err(), "{s:?} parsed");
        }
    }

    #[test]
    fn display_round_trips() {
        assert_eq!(v("1.44").to_string(), "1.44");
        assert_eq!(MIN_API_VERSION.to_string(), "1.24");
    }

    #[test]
    fn range_check_uses_dockers_words() {
        assert_eq!(v("1.44").check_supported(), Ok(v("1.44")));
        assert_eq!(v("1.24").check_supported(), Ok(v("1.24")));
        assert_eq!(
            v("1.99").check_supported().unwrap_err().to_string(),
            "client version 1.99 is too new. Maximum supported API version is 1.44"
        );
        assert!(v("1.12")
            .check_supported()
            .unwrap_err()
            .to_string()
            .starts_with("client version 1.12 is too old. Minimum supported API version is 1.24"));
    }

    #[test]
    fn negotiation_takes_the_lower() {
        assert_eq!(v("1.50").negotiate(MAX_API_VERSION), v("1.44"));
        assert_eq!(v("1.30").negotiate(MAX_API_VERSION), v("1.30"));
    }
}
