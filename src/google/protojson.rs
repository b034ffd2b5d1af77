//! proto3's JSON forms of Google's well-known types, as every REST API here reads and
//! writes them: durations as `"10s"`, timestamps in RFC 3339.

use std::time::{Duration, SystemTime};

use super::errors::ApiError;

/// `"10s"`, `"1.5s"`: proto3 JSON's duration.
pub(crate) fn duration_in(field: &str, text: &str) -> Result<prost_types::Duration, ApiError> {
    let bad = || {
        ApiError::InvalidArgument(format!(
            "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), Field '{field}', Illegal duration format; duration must end with 's': `{}`",
            text.chars().take(64).collect::<String>()
        ))
    };
    let seconds: f64 = text
        .strip_suffix('s')
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if !seconds.is_finite() || !(0.0..=315_576_000_000.0).contains(&seconds) {
        return Err(bad());
    }
    let d = Duration::from_secs_f64(seconds);
    Ok(prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

pub(crate) fn duration_out(d: prost_types::Duration) -> String {
    if d.nanos == 0 {
        format!("{}s", d.seconds)
    } else {
        let text = format!("{}.{:09}", d.seconds, d.nanos);
        format!("{}s", text.trim_end_matches('0'))
    }
}

/// RFC 3339 with the fraction Google gives (`2026-12-06T17:03:45.123456789Z`).
pub(crate) fn timestamp_out(t: prost_types::Timestamp) -> String {
    // RFC 3339 ends at 9999, as Google's timestamps do.
    let time = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(t.seconds.clamp(0, 253_402_300_799)).unwrap_or(0),
            u32::try_from(t.nanos.clamp(0, 999_999_999)).unwrap_or(0),
        );
    humantime::format_rfc3339_nanos(time).to_string()
}

/// A timestamp in RFC 3339 (`2026-12-06T17:03:45Z`, a fraction allowed), in UTC as Google
/// writes it.
pub(crate) fn timestamp_in(field: &str, text: &str) -> Result<prost_types::Timestamp, ApiError> {
    let time = humantime::parse_rfc3339(text).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "Invalid value at '{field}' (type.googleapis.com/google.protobuf.Timestamp), Field '{field}', Invalid time format: {e}: `{}` (RFC 3339 in UTC, such as 2026-12-06T17:03:45Z)",
            text.chars().take(64).collect::<String>()
        ))
    })?;
    let d = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}
