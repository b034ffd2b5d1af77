//! How deeply a YAML text nests, found by a linear scan before the parser sees it.
//!
//! The YAML parser handles deep flow nesting (`[[[[…`) in time quadratic in the depth: a
//! 200 KB file of 100,000 brackets held a reload for 25 s, and SIGTERM with it. No
//! configuration of frontdoor's needs more than a handful of levels, so a text nested deeper
//! than [`MAX_DEPTH`] is refused before parsing. The scan over-counts rather than under-counts
//! (an indented line inside a block scalar counts as a level), which the generous limit
//! absorbs.

/// How many levels of nesting a configuration may have. frontdoor's own schema uses six.
pub(super) const MAX_DEPTH: usize = 64;

/// The first line (1-based) where the nesting passes [`MAX_DEPTH`], and the depth there.
pub(super) fn too_deep(text: &str) -> Option<(usize, usize)> {
    // Indentations of the open block collections, innermost last.
    let mut indents: Vec<usize> = Vec::new();
    let mut flow = 0usize;
    for (number, line) in text.lines().enumerate() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if flow == 0 {
            while indents.last().is_some_and(|&top| top > indent) {
                indents.pop();
            }
            if indents.last().is_none_or(|&top| top < indent) {
                indents.push(indent);
            }
        }
        // Compact nested sequences, `- - - x`, nest on one line.
        let mut rest = content;
        let mut compact = 0;
        while let Some(after) = rest.strip_prefix("- ").or_else(|| rest.strip_prefix("? ")) {
            compact += 1;
            rest = after.trim_start_matches(' ');
        }
        let mut deepest_flow = flow;
        let mut quote: Option<char> = None;
        let mut previous = ' ';
        for c in rest.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '#') if previous == ' ' => break,
                (None, '"' | '\'') if flow > 0 || matches!(previous, ' ' | ':') => quote = Some(c),
                (None, '[' | '{') => {
                    flow += 1;
                    deepest_flow = deepest_flow.max(flow);
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
            previous = c;
        }
        let depth = indents.len() + compact + deepest_flow;
        if depth > MAX_DEPTH {
            return Some((number + 1, depth));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_configurations_are_shallow() {
        let text = include_str!("../../services.yaml");
        assert_eq!(too_deep(text), None);
        let quoted =
            "a: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n";
        assert_eq!(too_deep(quoted), None);
        let commented = "a: b # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n";
        assert_eq!(too_deep(commented), None);
    }

    #[test]
    fn deep_nesting_of_every_kind_is_found() {
        let n = 100_000;
        let flow = format!("project: {}{}\n", "[".repeat(n), "]".repeat(n));
        assert_eq!(too_deep(&flow), Some((1, n + 1)));
        let compact = format!("services:\n{}x\n", "- ".repeat(n));
        assert_eq!(too_deep(&compact), Some((2, n + 1)));
        let block: String = (0..100).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(too_deep(&block), Some((MAX_DEPTH + 1, MAX_DEPTH + 1)));
        // Flow nesting carried across lines.
        let lines = "a: [\n".repeat(MAX_DEPTH + 1);
        assert_eq!(too_deep(&lines).map(|(_, d)| d > MAX_DEPTH), Some(true));
    }
}
