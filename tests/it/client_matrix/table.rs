//! The client section of `docs/clients.md`, rendered from one run.

use super::clients::Client;
use super::differential::{DISAGREEMENTS, Differential};
use super::{CELLS, Outcome};

fn cell_text(outcome: &Outcome, notes: &mut Vec<String>, row: &str, column: &str) -> String {
    match outcome {
        Outcome::Works(None) => "works".into(),
        Outcome::Works(Some(note)) => {
            notes.push(format!("{row}, {column}: {note}."));
            format!("works [{}]", notes.len())
        }
        Outcome::NotPossible(why) => {
            notes.push(format!("{row}, {column}: {why}."));
            format!("not possible in the library [{}]", notes.len())
        }
        Outcome::Fails(why) => {
            notes.push(format!("{row}, {column}: {}", why.replace('\n', " ")));
            format!("**fails** [{}]", notes.len())
        }
    }
}

/// The page's section: the matrix, its notes, and where the verifiers disagree.
pub(crate) fn render(clients: &[Client], rows: &[Vec<Outcome>], d: &Differential) -> String {
    let mut out = String::new();
    out.push_str("| client | ");
    out.push_str(
        &CELLS
            .iter()
            .map(|(_, heading)| *heading)
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(CELLS.len()));
    out.push('\n');
    let mut notes = Vec::new();
    for (client, row) in clients.iter().zip(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(CELLS)
            .map(|(o, (_, heading))| cell_text(o, &mut notes, client.name, heading))
            .collect();
        out.push_str(&format!(
            "| **{}** | {} |\n",
            client.name,
            cells.join(" | ")
        ));
    }
    out.push('\n');
    for (i, note) in notes.iter().enumerate() {
        out.push_str(&format!("{}. {note}\n", i + 1));
    }
    out.push_str("\nThe libraries, as pinned in `tests/clients/`, and the gcloud installed on the machine:\n\n");
    for client in clients {
        out.push_str(&format!("- {}: {}\n", client.name, client.libraries));
    }
    out.push_str(&format!(
        "\nThe differential test put {} tokens (the hostile-token corpus and valid ones) through {} default verifiers ({}) and the front door.",
        d.cases.len(),
        d.verifiers.len(),
        d.verifiers.keys().cloned().collect::<Vec<_>>().join(", ")
    ));
    out.push_str(
        " Where every library accepted a token the front door did too, and where every library refused one so did the front door.",
    );
    if DISAGREEMENTS.is_empty() {
        out.push_str(" The libraries agreed with each other on every token.\n");
    } else {
        out.push_str(
            " The libraries themselves differ on these, and frontdoor follows the side it gives here:\n\n| token | accepted by | frontdoor | why |\n|---|---|---|---|\n",
        );
        for (case, accepting, follows, why) in DISAGREEMENTS {
            out.push_str(&format!(
                "| {case} | {} | {} | {why} |\n",
                accepting.join(", "),
                if *follows { "accepts" } else { "refuses" }
            ));
        }
    }
    out
}

/// The page that shows the table, between `START` and `END`; `scripts/client-matrix` names
/// it too.
pub(crate) const PAGE: &str = "docs/clients.md";

pub(crate) const START: &str = "<!-- client-matrix: written by tests/it/client_matrix.rs, copied in by scripts/client-matrix -->\n";

pub(crate) const END: &str = "<!-- /client-matrix -->";
