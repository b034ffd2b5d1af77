//! The module map in `src/lib.rs` is kept true: every module imports only from modules in
//! the layers before its own (or, for listeners, the one edge written below).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// `src/lib.rs`'s layers, in order.
const LAYERS: &[&[&str]] = &[
    &["clock", "suggest", "logging", "keys"],
    &["client_env"],
    &["iam"],
    &["config"],
    &["tokens"],
    &["access", "routing", "upstream", "broker"],
    &["taskqueue"],
    &["cronjobs"],
    &["triggers"],
    &["decisions"],
    &["state"],
    &["peer"],
    &["frontdoor", "metadata", "google"],
    // The proxy in front of each metadata listener: routes to frontdoor and google.
    // Google-managed callers: push through the front door, in Google's shapes.
    &["egress", "managed"],
    // frontdoor's own surfaces: explain asks the front door's `authorize`.
    &["ops"],
    &["server"],
    &["cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules `text` names as `crate::NAME`, comments left out.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    // A `use crate::{…}` group rustfmt wrapped over several lines, joined into one.
    let mut lines = Vec::new();
    let mut open: Option<String> = None;
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        match open.as_mut() {
            Some(group) => group.push_str(line.trim()),
            None if line.contains("crate::{") && !line.contains('}') => {
                open = Some(line.to_owned());
                continue;
            }
            None => {
                lines.push(line.to_owned());
                continue;
            }
        }
        if line.contains('}') {
            lines.extend(open.take());
        }
    }
    lines.extend(open);
    for line in &lines {
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            // `crate::{a, b::C}` names several.
            let names = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

#[test]
fn no_module_imports_from_a_layer_below_it() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &all {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.iter().next().unwrap().to_str().unwrap();
        let module = top.trim_end_matches(".rs");
        if ["lib", "main"].contains(&module) {
            continue;
        }
        let own = layer_of(module).unwrap_or_else(|| {
            panic!("module `{module}` is in no layer: add it to src/lib.rs's map and here")
        });
        for import in imports(&std::fs::read_to_string(file).unwrap()) {
            if import == module {
                continue;
            }
            let theirs = layer_of(&import)
                .unwrap_or_else(|| panic!("{}: `crate::{import}` is in no layer", rel.display()));
            checked += 1;
            if theirs >= own {
                wrong.push(format!("{}: imports crate::{import}", rel.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the map:\n{}",
        wrong.join("\n")
    );
    // So that a change to how files are found cannot make this pass by reading nothing.
    assert!(checked > 100, "only {checked} imports checked");
}

#[test]
fn the_check_sees_an_import_from_below() {
    let text = "use crate::state::AppState;\n// crate::server in a comment\nfn f() { crate::cli::run() }\nuse crate::{peer::Peer, google};\nuse crate::{\n    egress::app,\n    metadata,\n};";
    assert_eq!(
        imports(text),
        BTreeSet::from(["state", "cli", "peer", "google", "egress", "metadata"].map(str::to_owned))
    );
}
