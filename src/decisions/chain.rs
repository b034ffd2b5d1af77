//! The chain of checks behind a front-door decision, in Cloud Run's order: route, ingress,
//! public?, the credential, the token's checks one by one, the principal, IAM, and then the
//! container. A decision lists the checks it made; the one that refused is last and marked
//! failed, and the checks after it were never reached (the dashboard greys them).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::tokens::TokenError;

/// One check of the chain. Never renamed: the decisions JSON and tests use the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Check {
    Route,
    Ingress,
    Public,
    Credential,
    Format,
    Alg,
    Kid,
    Signature,
    Issuer,
    Lifetime,
    Audience,
    Principal,
    Iam,
    Container,
}

/// Every check in the order the front door makes them, with the words a page shows.
pub(crate) const ORDER: [(Check, &str); 14] = [
    (Check::Route, "route"),
    (Check::Ingress, "ingress"),
    (Check::Public, "public?"),
    (Check::Credential, "credential picked"),
    (Check::Format, "token: format"),
    (Check::Alg, "token: alg"),
    (Check::Kid, "token: kid"),
    (Check::Signature, "token: signature"),
    (Check::Issuer, "token: iss"),
    (Check::Lifetime, "token: exp/iat"),
    (Check::Audience, "token: aud"),
    (Check::Principal, "principal"),
    (Check::Iam, "IAM"),
    (Check::Container, "container"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Outcome {
    Passed,
    Failed,
}

/// A check made, its outcome, and what it found (for the failed one, the reason). Most
/// details of a passed check are fixed words, kept without an allocation: every front-door
/// request makes a dozen steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub(crate) check: Check,
    pub(crate) outcome: Outcome,
    pub detail: Cow<'static, str>,
}

impl Step {
    pub(crate) fn passed(check: Check, detail: impl Into<Cow<'static, str>>) -> Step {
        Step {
            check,
            outcome: Outcome::Passed,
            detail: detail.into(),
        }
    }

    pub(crate) fn failed(check: Check, detail: impl Into<Cow<'static, str>>) -> Step {
        Step {
            check,
            outcome: Outcome::Failed,
            detail: detail.into(),
        }
    }

    pub(crate) fn is_failed(&self) -> bool {
        self.outcome == Outcome::Failed
    }
}

/// `ingress ✓ → public? no → … → IAM ✗`: the checks made, on one line. The question
/// `public?` gets its answer, not a mark: a ✓ beside it read as "it is public".
pub(crate) fn summary(steps: &[Step]) -> String {
    steps
        .iter()
        .map(|s| {
            let mark = match s.check {
                Check::Public if !s.is_failed() && s.detail.starts_with("yes") => "yes",
                Check::Public if !s.is_failed() => "no",
                _ if s.is_failed() => "✗",
                _ => "✓",
            };
            format!("{} {mark}", s.check.title())
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

impl Check {
    /// The words a person reads for it (`ORDER`'s).
    pub(crate) fn title(self) -> &'static str {
        ORDER
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("?", |(_, t)| t)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Check::Route => "route",
            Check::Ingress => "ingress",
            Check::Public => "public",
            Check::Credential => "credential",
            Check::Format => "format",
            Check::Alg => "alg",
            Check::Kid => "kid",
            Check::Signature => "signature",
            Check::Issuer => "issuer",
            Check::Lifetime => "lifetime",
            Check::Audience => "audience",
            Check::Principal => "principal",
            Check::Iam => "iam",
            Check::Container => "container",
        }
    }

    /// Which of the token's checks refused it, in the verifier's order (`tokens::jws`):
    /// size and shape, then the algorithm, the key, the signature, the issuer, the times,
    /// and last the claims the front door reads (`aud`, `sub`, `email`).
    pub(crate) fn of_token(e: &TokenError) -> Check {
        match e {
            TokenError::TooLarge(_)
            | TokenError::AccessToken
            | TokenError::NotThreeSegments(_)
            | TokenError::NotJsonObject(_) => Check::Format,
            TokenError::NotBase64(part) if *part == "signature" => Check::Signature,
            TokenError::NotBase64(_) => Check::Format,
            TokenError::Algorithm(_) | TokenError::CriticalExtensions(_) => Check::Alg,
            TokenError::MissingKid | TokenError::UnknownKid(_) => Check::Kid,
            TokenError::BadSignature(_) | TokenError::NoKeyVerifies(_) => Check::Signature,
            TokenError::WrongIssuer { .. } => Check::Issuer,
            TokenError::Expired { .. }
            | TokenError::IssuedInFuture { .. }
            | TokenError::NotYetValid { .. }
            | TokenError::TooLongLived { .. } => Check::Lifetime,
            TokenError::WrongAudience { .. } => Check::Audience,
            TokenError::MissingClaim(claim) | TokenError::ClaimType(claim, _) => match *claim {
                "exp" | "iat" | "nbf" => Check::Lifetime,
                "aud" => Check::Audience,
                _ => Check::Principal,
            },
        }
    }

    /// The token's checks that come before `self`, which a token refused at `self` passed.
    pub(crate) fn token_checks_before(self) -> impl Iterator<Item = Check> {
        const TOKEN: [Check; 7] = [
            Check::Format,
            Check::Alg,
            Check::Kid,
            Check::Signature,
            Check::Issuer,
            Check::Lifetime,
            Check::Audience,
        ];
        TOKEN.into_iter().take_while(move |c| *c != self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_names_every_check_once() {
        for (i, (check, title)) in ORDER.iter().enumerate() {
            assert!(!title.is_empty());
            assert!(ORDER[i + 1..].iter().all(|(other, _)| other != check));
            let json = serde_json::to_string(check).unwrap();
            assert_eq!(json, format!("\"{}\"", check.as_str()));
        }
    }

    #[test]
    fn the_summary_marks_the_failed_check() {
        let steps = [
            Step::passed(Check::Ingress, ""),
            Step::failed(Check::Iam, "no binding"),
        ];
        assert_eq!(summary(&steps), "ingress ✓ → IAM ✗");
    }

    #[test]
    fn a_token_refused_at_a_check_passed_the_ones_before_it() {
        assert_eq!(Check::Format.token_checks_before().count(), 0);
        assert_eq!(
            Check::Signature.token_checks_before().collect::<Vec<_>>(),
            [Check::Format, Check::Alg, Check::Kid]
        );
        assert_eq!(
            Check::of_token(&TokenError::MissingClaim("exp")),
            Check::Lifetime
        );
        assert_eq!(
            Check::of_token(&TokenError::NotBase64("signature")),
            Check::Signature
        );
    }
}
