//! "Did you mean …?": the valid name nearest to a mistyped one, so that an error says what
//! to write instead (issue 9). Edit distance from `strsim`, compared without case, since
//! `serviceaccount` for `serviceAccount` is the commonest slip.

/// Names longer than this get no suggestion: the distance costs length × length, and a
/// name this long is no typo.
const LONGEST: usize = 200;

/// The candidate nearest to `typed`, if one is near enough to be what was meant: within a
/// third of its length in edits (at least two), or `typed` with a `…/` prefix missing
/// (`run.invoker` for `roles/run.invoker`).
pub(crate) fn nearest<'a>(
    typed: &str,
    valid: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    if typed.is_empty() || typed.len() > LONGEST {
        return None;
    }
    let lower = typed.to_lowercase();
    valid
        .into_iter()
        .filter(|v| *v != typed && v.len() <= LONGEST)
        .filter_map(|v| {
            let distance = strsim::levenshtein(&lower, &v.to_lowercase());
            let near = distance <= (v.chars().count() / 3).max(2)
                || v.strip_suffix(typed).is_some_and(|p| p.ends_with('/'));
            near.then_some((distance, v))
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, v)| v)
}

/// ` (did you mean `NAME`?)`, or nothing when no name is near.
pub(crate) fn did_you_mean<'a>(typed: &str, valid: impl IntoIterator<Item = &'a str>) -> String {
    nearest(typed, valid).map_or_else(String::new, |v| format!(" (did you mean `{v}`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_names_are_suggested_and_far_ones_not() {
        let fields = ["role", "members", "condition"];
        assert_eq!(nearest("rol", fields), Some("role"));
        assert_eq!(nearest("memberz", fields), Some("members"));
        assert_eq!(nearest("colour", fields), None);
        let kinds = ["user", "serviceAccount", "group", "domain"];
        assert_eq!(nearest("serviceaccount", kinds), Some("serviceAccount"));
        assert_eq!(nearest("team", kinds), None);
        let roles = ["roles/run.invoker", "roles/run.admin", "roles/owner"];
        assert_eq!(
            nearest("roles/run.invokr", roles),
            Some("roles/run.invoker")
        );
        assert_eq!(nearest("run.invoker", roles), Some("roles/run.invoker"));
        assert_eq!(nearest(&"x".repeat(10_000), roles), None);
        assert_eq!(did_you_mean("rol", fields), " (did you mean `role`?)");
        assert_eq!(did_you_mean("zzz", fields), "");
    }
}
