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
    let decoded = crate::google::pubsub::persist::decode(&layer.pubsub);
    let made = config::fold::Made {
        pubsub: config::fold::PubsubMade {
            topics: decoded.made.topics,
            subscriptions: decoded.made.subscriptions,
            changed_from: decoded.made.changed_from,
            unreadable: decoded.unreadable,
        },
        queues: crate::google::tasks::read_back(&layer.tasks),
        jobs: crate::google::scheduler::read_back(&layer.scheduler),
    };
    let folded = config::fold::fold(&text, file, &layer, &config, &made)?;
    if folded.text == text && folded.rest == layer {
        say(&format!(
            "nothing could be folded into {}:\n{}",
            file.display(),
            indented(&folded.report)
        ));
        return Ok(());
    }
    // fold takes no lock a running server shares: a change the Admin APIs made since the
    // layer was read would be lost by writing over it, so it is refused instead.
    if config::Layer::read(state_dir.path())? != layer {
        anyhow::bail!(
            "{} changed while fold ran (a gcloud command?); nothing was written, run fold again",
            layer_file.display()
        );
    }
    if folded.text != text {
        replace_file(file, &folded.text)?;
    }
    if folded.rest.is_empty() {
        std::fs::remove_file(&layer_file)
            .with_context(|| format!("cannot remove {}", layer_file.display()))?;
    } else {
        state_dir.write_file(
            config::layer::FILE,
            folded
                .rest
                .to_json()
                .map_err(anyhow::Error::msg)?
                .as_bytes(),
        )?;
    }
    let mut out = format!(
        "folded into {}:\n{}",
        file.display(),
        indented(&folded.report)
    );
    if folded.rest.is_empty() {
        out.push_str(&format!(
            "{} removed: the file now says everything\n",
            layer_file.display()
        ));
    }
    say(&out);
    Ok(())
}

fn indented(lines: &[String]) -> String {
    lines.iter().map(|l| format!("  {l}\n")).collect()
}

/// Writes `text` over `file` atomically (a file beside it, renamed over it), keeping its
/// mode; a link is followed, so the file it names is the one replaced.
fn replace_file(file: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let target = std::fs::canonicalize(file)
        .with_context(|| format!("cannot resolve {}", file.display()))?;
    let dir = target.parent().unwrap_or(std::path::Path::new("/"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write beside {}", target.display()))?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::metadata(&target)?.permissions())?;
    tmp.persist(&target)
        .with_context(|| format!("cannot replace {}", target.display()))?;
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
    format!(
        "changed through the Admin APIs (kept in {file}, over the file):\n{}",
        indented(lines)
    )
}
