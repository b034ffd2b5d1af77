//! Google's naming rules, and the values we derive from names (unique ids, URL hashes,
//! region codes) so that they are stable across restarts.

use aws_lc_rs::digest::{SHA256, digest};

/// A 21-digit numeric id starting with 1, as Google's service-account and user ids look,
/// derived from `namespace` and `name` so that tokens stay stable across restarts.
fn numeric_id(namespace: &str, name: &str) -> String {
    let digest = digest(&SHA256, format!("{namespace}:{name}").as_bytes());
    let mut n = [0u8; 16];
    n.copy_from_slice(&digest.as_ref()[..16]);
    let n = u128::from_be_bytes(n) % 100_000_000_000_000_000_000u128;
    format!("1{n:020}")
}

/// The unique id of a service account the configuration gives none for.
pub fn unique_id_for(email: &str) -> String {
    numeric_id("service-account", email)
}

pub(crate) fn user_id_for(email: &str) -> String {
    numeric_id("user", email)
}

/// Ten lowercase alphanumerics derived from project and service, for the legacy
/// `SERVICE-HASH-REGIONCODE.a.run.app` form (our choice of derivation, SPEC §1).
pub(crate) fn legacy_hash(project_id: &str, service: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    digest(&SHA256, format!("{project_id}/{service}").as_bytes())
        .as_ref()
        .iter()
        .take(10)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// The short code Cloud Run puts in legacy URLs. Known regions use Google's codes; for any
/// other we take the first letters of the region's words (our choice).
pub fn region_code(region: &str) -> String {
    const KNOWN: &[(&str, &str)] = &[
        ("us-central1", "uc"),
        ("us-east1", "ue"),
        ("us-east4", "uk"),
        ("us-west1", "uw"),
        ("us-west2", "wl"),
        ("europe-west1", "ew"),
        ("europe-west2", "nw"),
        ("europe-west3", "ey"),
        ("europe-west4", "ez"),
        ("europe-west6", "oa"),
        ("europe-north1", "lz"),
        ("asia-east1", "de"),
        ("asia-northeast1", "an"),
        ("asia-south1", "el"),
        ("australia-southeast1", "ts"),
        ("northamerica-northeast1", "nn"),
        ("southamerica-east1", "rj"),
    ];
    if let Some((_, code)) = KNOWN.iter().find(|(r, _)| *r == region) {
        return (*code).to_owned();
    }
    region
        .split('-')
        .filter_map(|w| w.chars().next())
        .take(2)
        .collect()
}

/// Whether `name` (a host name or address, no port; any case, a trailing dot allowed)
/// names this machine's loopback: `localhost` and the names under it, the usual aliases of
/// `/etc/hosts`, and loopback addresses (IPv4-mapped ones too).
pub(crate) fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let name = name.trim_start_matches('[').trim_end_matches(']');
    matches!(
        name,
        "localhost" | "localhost.localdomain" | "ip6-localhost" | "ip6-loopback"
    ) || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn lower_alnum_hyphen(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A name the configuration gives that Google would refuse, and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadName {
    #[error(
        "project id `{0}` must be 6 to 30 lowercase letters, digits or hyphens, starting with a letter"
    )]
    ProjectId(String),
    #[error("region `{0}` does not look like a Google Cloud region such as us-central1")]
    Region(String),
    #[error(
        "service name `{0}` must be at most 49 lowercase letters, digits or hyphens, starting with a letter and not ending with a hyphen"
    )]
    ServiceName(String),
    #[error(
        "traffic tag `{0}` must be lowercase letters, digits or single hyphens, starting with a letter"
    )]
    Tag(String),
}

/// `Ok`, or the name refused as `bad`.
fn named(ok: bool, name: &str, bad: fn(String) -> BadName) -> Result<(), BadName> {
    if ok {
        Ok(())
    } else {
        Err(bad(name.to_owned()))
    }
}

pub(crate) fn check_project_id(id: &str) -> Result<(), BadName> {
    let ok = (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && lower_alnum_hyphen(id);
    named(ok, id, BadName::ProjectId)
}

pub(crate) fn check_region(region: &str) -> Result<(), BadName> {
    let ok = region.contains('-')
        && lower_alnum_hyphen(region)
        && region.ends_with(|c: char| c.is_ascii_digit());
    named(ok, region, BadName::Region)
}

/// Cloud Run service names: up to 49 lowercase letters, digits and hyphens, starting with a
/// letter and not ending with a hyphen.
pub(crate) fn check_service_name(name: &str) -> Result<(), BadName> {
    let ok = (1..=49).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && lower_alnum_hyphen(name);
    named(ok, name, BadName::ServiceName)
}

pub(crate) fn check_tag(tag: &str) -> Result<(), BadName> {
    let ok = (1..=46).contains(&tag.len())
        && tag.starts_with(|c: char| c.is_ascii_lowercase())
        && !tag.contains("--")
        && !tag.ends_with('-')
        && lower_alnum_hyphen(tag);
    named(ok, tag, BadName::Tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_values_are_stable_and_well_formed() {
        let id = unique_id_for("login@demo-project.iam.gserviceaccount.com");
        assert_eq!(id.len(), 21);
        assert!(id.starts_with('1') && id.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(
            id,
            unique_id_for("login@demo-project.iam.gserviceaccount.com")
        );
        assert_ne!(
            id,
            unique_id_for("search@demo-project.iam.gserviceaccount.com")
        );
        assert_ne!(
            id,
            user_id_for("login@demo-project.iam.gserviceaccount.com")
        );

        let h = legacy_hash("demo-project", "search");
        assert_eq!(h.len(), 10);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(h, legacy_hash("demo-project", "login"));

        assert_eq!(region_code("us-central1"), "uc");
        assert_eq!(region_code("me-central2"), "mc");
    }
}
