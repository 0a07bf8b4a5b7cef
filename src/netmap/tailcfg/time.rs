//! Go `time.Time` on the wire: RFC 3339 with optional fractional seconds, where Go's zero
//! time `"0001-01-01T00:00:00Z"` means "unset" (e.g. a key that never expires).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What Go writes for its zero `time.Time`.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// A non-pointer Go time: `GoTime(None)` is Go's zero time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoTime(pub Option<DateTime<Utc>>);

impl GoTime {
    /// The zero time ("unset").
    pub const ZERO: Self = Self(None);

    pub fn new(at: DateTime<Utc>) -> Self {
        Self(Some(at))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_none()
    }

    pub fn get(&self) -> Option<DateTime<Utc>> {
        self.0
    }

    /// True if set and strictly before `now` (a past `Expiry` means logout).
    pub fn is_before(&self, now: DateTime<Utc>) -> bool {
        self.0.is_some_and(|at| at < now)
    }
}

impl From<DateTime<Utc>> for GoTime {
    fn from(at: DateTime<Utc>) -> Self {
        Self::new(at)
    }
}

impl From<Option<DateTime<Utc>>> for GoTime {
    fn from(at: Option<DateTime<Utc>>) -> Self {
        Self(at)
    }
}

impl Serialize for GoTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(at) => serializer.serialize_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => serializer.serialize_str(GO_ZERO_TIME),
        }
    }
}

impl<'de> Deserialize<'de> for GoTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Go leaves a time.Time untouched on `null`, i.e. zero.
        let Some(text) = Option::<std::borrow::Cow<'de, str>>::deserialize(deserializer)? else {
            return Ok(Self::ZERO);
        };
        let at = DateTime::parse_from_rfc3339(&text).map_err(serde::de::Error::custom)?.with_timezone(&Utc);
        if at == go_zero() {
            return Ok(Self::ZERO);
        }
        Ok(Self::new(at))
    }
}

fn go_zero() -> DateTime<Utc> {
    // Cannot fail: the constant is a valid RFC 3339 time.
    DateTime::parse_from_rfc3339(GO_ZERO_TIME).map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}
