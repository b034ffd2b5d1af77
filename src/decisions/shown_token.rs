//! The token a front-door decision was about, as the dashboard and the decisions JSON show
//! it: its decoded header and claims, never its signature and never the whole token.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::tokens::{self, MAX_TOKEN_BYTES};

/// Kept as the token's first two segments, as sent (shared with the verified-token cache
/// when the token verified; decoding waits until someone reads the decision), or as read
/// back from the decisions JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum ShownToken {
    Segments(std::sync::Arc<str>),
    Decoded { header: Value, claims: Value },
}

// serde_json's values hold no NaN, so equality is an equivalence.
impl Eq for ShownToken {}

/// What the JSON says: each part decoded, or null where it is not base64url JSON.
#[derive(Serialize, Deserialize)]
struct Decoded {
    header: Value,
    claims: Value,
}

impl ShownToken {
    /// `header.payload` of `token`, if it has at least two segments and no more bytes than
    /// any token the verifier reads.
    pub(crate) fn of(token: &str) -> Option<ShownToken> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let mut parts = token.splitn(3, '.');
        let header = parts.next()?;
        let payload = parts.next()?;
        Some(ShownToken::Segments(
            token[..header.len() + 1 + payload.len()].into(),
        ))
    }

    /// What a verified token shows: its `header.payload`, shared, not copied.
    pub(crate) fn verified(verified: &crate::tokens::Verified) -> ShownToken {
        ShownToken::Segments(verified.signed_part.clone())
    }

    pub(crate) fn bytes(&self) -> usize {
        match self {
            ShownToken::Segments(s) => s.len(),
            ShownToken::Decoded { header, claims } => {
                header.to_string().len() + claims.to_string().len()
            }
        }
    }

    /// The claims, decoded (null where they are not base64url JSON).
    pub(crate) fn claims(&self) -> Value {
        self.decoded().claims
    }

    fn decoded(&self) -> Decoded {
        match self {
            ShownToken::Segments(s) => Decoded {
                header: tokens::peek_header(s).map_or(Value::Null, Value::Object),
                claims: tokens::peek_claims(s).map_or(Value::Null, Value::Object),
            },
            ShownToken::Decoded { header, claims } => Decoded {
                header: header.clone(),
                claims: claims.clone(),
            },
        }
    }
}

impl Serialize for ShownToken {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.decoded().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for ShownToken {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Decoded { header, claims } = Decoded::deserialize(deserializer)?;
        Ok(ShownToken::Decoded { header, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_never_kept() {
        let shown = ShownToken::of("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.SIGNATURE").unwrap();
        assert_eq!(
            shown,
            ShownToken::Segments("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0".into())
        );
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"header": {"alg": "RS256"}, "claims": {"sub": "x"}})
        );
        let back: ShownToken = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        // Garbage is shown as null parts; one segment is no token to show.
        let garbage = serde_json::to_value(ShownToken::of("%%.@@").unwrap()).unwrap();
        assert_eq!(garbage, serde_json::json!({"header": null, "claims": null}));
        assert!(ShownToken::of("opaque").is_none());
        assert!(ShownToken::of(&"a.".repeat(MAX_TOKEN_BYTES)).is_none());
    }
}
