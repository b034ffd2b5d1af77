//! The changes made through the Admin APIs, as the command line sees them: listed by
//! `check` and `status`, folded into the configuration file by `fold`.

use anyhow::Context;

use super::{ConfigArgs, say};
use crate::config;
use crate::keys::StateDir;

/// `frontdoor fold`: the layer into the file (written atomically, its mode kept), then
/// what could not be folded back into the layer. A running server reloads both and ends
/// with the same configuration.
pub(super) fn fold(args: &ConfigArgs) -> anyhow::Result<()> {
    let (config, state_dir, layer) = args.load_with_layer()?;
    let layer_file = state_dir.path().join(config::layer::FILE);
    if layer.is_empty() {
        say(&format!(
            "nothing to fold: no changes made through the Admin APIs ({} is absent or empty)\n",
            layer_file.display()
        ));
        return Ok(());
    }
    let file = &config.file;
    let text = String::from_utf8(config::read_capped(file)?)
        .with_context(|| format!("{} is not UTF-8", file.display()))?;
    let folded = config::fold::fold(&text, file, &layer)?;
    if folded.text == text {
        let mut out = format!("nothing could be folded into {}:\n", file.display());
        for line in &folded.report {
            out.push_str(&format!("  {line}\n"));
        }
        say(&out);
        return Ok(());
    }

    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", file.display()))?;
    std::io::Write::write_all(&mut tmp, folded.text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::metadata(file)?.permissions())?;
    tmp.persist(file)
        .with_context(|| format!("cannot replace {}", file.display()))?;
    if folded.rest.is_empty() {
        std::fs::remove_file(&layer_file)
            .with_context(|| format!("cannot remove {}", layer_file.display()))?;
    } else {
        state_dir.write_file(config::layer::FILE, folded.rest.to_json().as_bytes())?;
    }
    let mut out = format!("folded into {}:\n", file.display());
    for line in &folded.report {
        out.push_str(&format!("  {line}\n"));
    }
    if folded.rest.is_empty() {
        out.push_str(&format!(
            "{} removed: the file now says everything\n",
            layer_file.display()
        ));
    }
    say(&out);
    Ok(())
}

/// What the Admin APIs changed over the file, and where that is kept; empty when nothing.
pub(super) fn note(state_dir: &StateDir, layer: &config::Layer) -> String {
    listed(
        &state_dir
            .path()
            .join(config::layer::FILE)
            .display()
            .to_string(),
        &layer.summary(),
    )
}

/// The layer's summary `lines`, kept in `file`; empty when there are none.
pub(super) fn listed(file: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut out = format!("changed through the Admin APIs (kept in {file}, over the file):\n");
    for line in lines {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
