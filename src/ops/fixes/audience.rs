//! A call addressed wrongly: a token minted for another audience, or a host no service
//! answers to.

use super::{Fix, Home, quoted};
use crate::config::{Config, KNATIVE_CUSTOM_AUDIENCES, Service};
use crate::tokens::GCLOUD_CLIENT_ID;

/// The longest audience compared letter by letter with the accepted ones: a token's `aud`
/// is its minter's to choose (up to the 8 KiB frontdoor mints), and the decisions list
/// ranks fixes for every refusal it returns.
const NEAR_MISS_MAX: usize = 256;

/// The token's audience `aud` is not one `service` accepts.
pub(super) fn audience(config: &Config, service: &Service, aud: &str) -> Vec<Fix> {
    let mut fixes = Vec::new();
    // Whoever minted the token chose `aud`: shown without backticks (the page renders
    // backticked text as code), and put in a command only when it cannot change the
    // command's meaning.
    let shown = aud.replace('`', "'");
    let aud_in_command = aud.len() <= NEAR_MISS_MAX
        && aud
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/._~%-".contains(&b));
    let url = &service.url;
    let bare = aud.split(['?', '#']).next().unwrap_or(aud);
    let accepted: Vec<&str> = [url.as_str(), service.legacy_url.as_str()]
        .into_iter()
        .chain(service.custom_audiences.iter().map(String::as_str))
        .collect();
    if aud == GCLOUD_CLIENT_ID {
        fixes.push(Fix::caller(format!(
            "mint the token for {url}: `gcloud auth print-identity-token --audiences={url}` (without --audiences, gcloud's client id is the audience, which only a user's token may carry)"
        )));
    } else if let Some(other) = config.services.iter().find(|s| {
        s.name != service.name
            && (s.url == bare.trim_end_matches('/') || s.custom_audiences.iter().any(|a| a == aud))
    }) {
        fixes.push(Fix::caller(format!(
            "the token was minted for {} ({shown}); mint it for {}'s URL, {url}",
            other.name, service.name
        )));
    } else if bare.trim_end_matches('/') != aud && accepted.contains(&bare.trim_end_matches('/')) {
        fixes.push(Fix::caller(format!(
            "an audience is the URL alone, with no query or fragment: mint the token for {}",
            bare.trim_end_matches('/')
        )));
    } else if let Some(path_base) = aud
        .strip_prefix(url.as_str())
        .filter(|rest| rest.starts_with('/') && rest.len() > 1)
        .map(|_| url.as_str())
    {
        fixes.push(Fix::caller(format!(
            "an audience is the service's URL alone, with no path: mint the token for {path_base}"
        )));
    } else if let Some(near) = accepted
        .iter()
        .copied()
        // A few letters, or a label left out or added (`billing.shop` for
        // `billing.internal.shop`): near enough to be the one meant. Only this service's
        // own audiences are candidates, so a loose match still names one that works.
        .filter(|a| {
            // No edit distance within the bound is possible past this length difference.
            let longer = a.len().max(aud.len());
            aud.len() <= NEAR_MISS_MAX && a.len().abs_diff(aud.len()) * 10 <= (longer * 3).max(30)
        })
        .map(|a| (a, strsim::levenshtein(a, aud)))
        .filter(|(a, d)| *d <= 3 || *d * 10 <= a.len().max(aud.len()) * 3)
        .min_by_key(|(_, d)| *d)
        .map(|(a, _)| a)
    {
        fixes.push(Fix::caller(format!(
            "did you mean {near}? It is an audience {} accepts, close to {shown}: mint the token for it",
            service.name
        )));
    } else {
        fixes.push(Fix::caller(format!(
            "mint the token for {url}, {}'s URL (or one of its accepted audiences: {})",
            service.name,
            accepted.join(", ")
        )));
    }
    // Accepting this audience too lets in every token minted for it: last, and said.
    let mut audiences = service.custom_audiences.clone();
    audiences.push(aud.to_owned());
    let listed = |list: &[String]| {
        list.iter()
            .map(|a| quoted(a))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let fix = Fix::change(
        "setting",
        true,
        format!(
            "accept {shown} at {} as a custom audience: every token minted for it then reaches {}, whoever it was minted for",
            service.name, service.name
        ),
        aud_in_command.then(|| {
            format!(
                "gcloud run services update {} --add-custom-audiences={aud}",
                service.name
            )
        }),
    );
    // The Knative annotation is a JSON array inside a YAML string, single-quoted (a quote
    // within is doubled).
    let home = Home::of(service, "custom_audiences", || {
        format!(
            "{KNATIVE_CUSTOM_AUDIENCES}: '[{}]'",
            listed(&audiences).replace('\'', "''")
        )
    });
    fixes.push(fix.lines(
        home,
        format!("custom_audiences: [{}]", listed(&audiences)),
        format!(
            "under service `{}`, in place of its `custom_audiences:` line if it has one",
            service.name
        ),
    ));
    fixes
}

/// No service answers to `host`: one whose URL is a few letters from it is the one meant.
pub(super) fn unknown_host(config: &Config, host: &str) -> Vec<Fix> {
    let bare = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let near = config
        .services
        .iter()
        .flat_map(|s| {
            [&s.url, &s.legacy_url]
                .into_iter()
                .chain(s.custom_domains.iter())
                .map(move |u| (s, u.trim_start_matches("https://")))
        })
        .filter(|(_, h)| strsim::levenshtein(h, bare) <= 3)
        .min_by_key(|(_, h)| strsim::levenshtein(h, bare));
    match near {
        Some((service, h)) => vec![Fix::caller(format!(
            "did you mean https://{h}? It is {}'s URL, a few letters from {bare}: call that, with a token minted for it",
            service.name
        ))],
        None => vec![Fix::caller(format!(
            "call one of the services' URLs: {}",
            config
                .services
                .iter()
                .map(|s| s.url.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))],
    }
}
