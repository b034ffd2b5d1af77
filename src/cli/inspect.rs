//! The commands that read the running server: `status`, `decisions` and `explain`, each
//! asked of its google listener (`ops::introspect`, `ops::explain`) and written for a
//! person, or as the server's JSON with `--json`.

use super::{ConfigArgs, Denied, ask, changes, fetch_json, locate, say};

pub(super) async fn decisions(
    config: ConfigArgs,
    limit: usize,
    surface: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    let filter = surface.map_or_else(String::new, |s| format!("&surface={s}"));
    let body = fetch_json(
        &config,
        &format!("/frontdoor/v1/decisions?limit={limit}{filter}"),
    )
    .await?;
    if json {
        say(&format!("{}\n", serde_json::to_string_pretty(&body)?));
        return Ok(());
    }
    let list: Vec<crate::decisions::Decision> = serde_json::from_value(body["decisions"].clone())?;
    let mut out = String::new();
    // A refused reload matters more than any one decision: say it first.
    if let Ok(status) = fetch_json(&config, "/frontdoor/v1/status").await
        && status["last_reload"]["ok"] == false
    {
        out.push_str(&format!(
                "the last reload of {} failed; the previous configuration is still in force:\n    {}\n\n",
                status["config_file"].as_str().unwrap_or("the configuration"),
                status["last_reload"]["error"].as_str().unwrap_or("(no reason recorded)")
            ));
    }
    if list.is_empty() {
        match surface {
            Some(s) => out.push_str(&format!(
                "no decisions of surface `{s}` yet: it has decided nothing since the server started\n"
            )),
            None => out.push_str(
                "no decisions yet: nothing has been asked of frontdoor since it started\n",
            ),
        }
    }
    // The server escapes what it records; escaping again here keeps a terminal safe from
    // whatever answers on that port.
    let esc = crate::decisions::escape_controls;
    for d in list {
        let verdict = match (d.would_deny, d.allowed) {
            (Some(_), _) => "AUDIT",
            (None, true) => "ALLOW",
            (None, false) => "DENY ",
        };
        let time = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(d.time.max(0) as u64),
        );
        // The front door's lines name the service; the other surfaces say which they are
        // and what was asked of them.
        let what = if d.surface == crate::decisions::Surface::Frontdoor {
            format!(
                "{} {} {}",
                esc(&d.method),
                esc(d.service.as_deref().unwrap_or("-")),
                esc(&d.path)
            )
        } else {
            format!(
                "{} {} {}",
                d.surface,
                esc(&d.method),
                esc(d.target.as_deref().unwrap_or(&d.path))
            )
        };
        // A Google-managed caller (a Pub/Sub push) is named beside the principal.
        let what = match &d.via {
            Some(via) => format!("{what} ({})", esc(via)),
            None => what,
        };
        let code = d.code.map(|c| format!("{c}: ")).unwrap_or_default();
        let code = match d.would_deny {
            Some(status) => format!("would deny {status}: {code}"),
            None => code,
        };
        out.push_str(&format!(
            "{time} {verdict} {} {what} → {}\n    {code}{}\n",
            d.status,
            esc(d.principal.as_deref().unwrap_or("(no principal)")),
            esc(&d.reason)
        ));
    }
    say(&out);
    Ok(())
}

/// Asks the running server to judge a token (`POST /frontdoor/v1/explain`) and prints its
/// verdict: the decision line, the code and reason, and the token's header and claims.
pub(super) async fn explain(
    config: ConfigArgs,
    question: serde_json::Value,
    json: bool,
) -> anyhow::Result<()> {
    // An absent option goes as null, which the server reads as absent.
    let addresses = locate::running(&config)?;
    let (status, _, body) = ask(addresses.google, "/frontdoor/v1/explain", Some(&question)).await?;
    let body: serde_json::Value = serde_json::from_slice(&body)?;
    if !status.is_success() {
        anyhow::bail!(
            "{}",
            body["error"]
                .as_str()
                .unwrap_or("the server refused the question")
        );
    }
    // A group's question is denied if any member it judged is.
    let denied = match body["verdicts"].as_array() {
        Some(verdicts) => verdicts.iter().any(|v| v["allowed"] == false),
        None => body["allowed"] != true,
    };
    let end = || if denied { Err(Denied.into()) } else { Ok(()) };
    if json {
        say(&format!("{}\n", serde_json::to_string_pretty(&body)?));
        return end();
    }
    let esc = crate::decisions::escape_controls;
    let verdict = if body["allowed"] == true {
        "ALLOW"
    } else {
        "DENY "
    };
    let code = body["code"]
        .as_str()
        .map(|c| format!("{c}: "))
        .unwrap_or_default();
    // A refusal's fix, as the table of codes gives it (the dashboard's Fix box adds the
    // lines for this configuration).
    let fix = body["code"]
        .as_str()
        .and_then(crate::decisions::codes::fix_of)
        .map(|fix| format!("    fix: {fix}\n"))
        .unwrap_or_default();
    if let Some(verdicts) = body["verdicts"].as_array() {
        let members: Vec<&str> = body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        let mut out = format!(
            "{} (members: {}) → {}\n",
            esc(body["group"].as_str().unwrap_or("?")),
            if members.is_empty() {
                "none".to_owned()
            } else {
                esc(&members.join(", ")).into_owned()
            },
            esc(body["service"].as_str().unwrap_or("?")),
        );
        for v in verdicts {
            let verdict = match v["allowed"].as_bool() {
                Some(true) => "ALLOW",
                Some(false) => "DENY ",
                None => "  -  ",
            };
            let code = v["code"]
                .as_str()
                .map(|c| format!("{c}: "))
                .unwrap_or_default();
            out.push_str(&format!(
                "  {verdict} {}\n      {code}{}\n",
                esc(v["principal"].as_str().unwrap_or("?")),
                esc(v["reason"].as_str().unwrap_or("")),
            ));
        }
        say(&out);
        return end();
    }
    if body["permission"].is_string() {
        say(&format!(
            "{verdict} {} {} → {} on {}\n    {code}{}\n{fix}{}",
            body["status"],
            esc(body["principal"].as_str().unwrap_or("?")),
            esc(body["permission"].as_str().unwrap_or("?")),
            esc(body["resource"].as_str().unwrap_or("?")),
            esc(body["reason"].as_str().unwrap_or("")),
            ranked_fixes(&body["fixes"]),
        ));
        return end();
    }
    let mut out = format!(
        "{verdict} {} {} → {}\n    {}{}\n{fix}",
        body["status"],
        esc(body["service"].as_str().unwrap_or("?")),
        esc(body["principal"].as_str().unwrap_or("(no principal)")),
        code,
        esc(body["reason"].as_str().unwrap_or("")),
    );
    out.push_str(&ranked_fixes(&body["fixes"]));
    if body["minted"] == true {
        out.push_str("    (a token minted for the question, sent nowhere)\n");
    }
    let steps: Vec<crate::decisions::Step> =
        serde_json::from_value(body["steps"].clone()).unwrap_or_default();
    out.push_str(&format!(
        "  checks: {}\n",
        crate::decisions::chain::summary(&steps)
    ));
    for part in ["header", "claims"] {
        let value = &body["token"][part];
        if !value.is_null() {
            out.push_str(&format!("  token {part}: {}\n", esc(&value.to_string())));
        }
    }
    say(&out);
    end()
}

/// The server's ranked fixes (`ops::fixes`), least privilege first, each with the lines it
/// gives; a widening one says so.
fn ranked_fixes(fixes: &serde_json::Value) -> String {
    let esc = crate::decisions::escape_controls;
    let Some(fixes) = fixes.as_array().filter(|f| !f.is_empty()) else {
        return String::new();
    };
    let mut out = String::from("    fixes, least privilege first:\n");
    for (i, fix) in fixes.iter().enumerate() {
        let widens = if fix["widens"] == true {
            " [WIDENS ACCESS]"
        } else {
            ""
        };
        out.push_str(&format!(
            "      {}. ({}){widens} {}\n",
            i + 1,
            esc(fix["kind"].as_str().unwrap_or("?")),
            esc(fix["text"].as_str().unwrap_or(""))
        ));
        if let Some(yaml) = fix["yaml"].as_str() {
            out.push_str(&format!(
                "         in {}, {}:\n",
                esc(fix["file"].as_str().unwrap_or("services.yaml")),
                esc(fix["place"].as_str().unwrap_or("where it names"))
            ));
            for line in yaml.lines() {
                out.push_str(&format!("           {}\n", esc(line)));
            }
        }
        if let Some(command) = fix["command"].as_str() {
            out.push_str(&format!("         or: {}\n", esc(command)));
        }
    }
    out
}

pub(super) async fn status(config: ConfigArgs) -> anyhow::Result<()> {
    let status = fetch_json(&config, "/frontdoor/v1/status").await?;
    let mut out = format!(
        "{} — generation {}\n",
        status["config_file"].as_str().unwrap_or("?"),
        status["generation"]
    );
    if status["enforcement"] == "audit" {
        out.push_str("AUDIT MODE: nothing is enforced; refusals are logged as would deny\n");
    }
    match &status["last_reload"] {
        serde_json::Value::Null => out.push_str("no reload yet\n"),
        last if last["ok"] == true => out.push_str("last reload: applied\n"),
        last => out.push_str(&format!(
            "last reload: REFUSED, the previous configuration is still in force:\n    {}\n",
            last["error"].as_str().unwrap_or("(no reason recorded)")
        )),
    }
    let changes: Vec<String> = status["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str().map(str::to_owned))
        .collect();
    out.push_str(&changes::listed(
        status["changes_file"].as_str().unwrap_or("?"),
        &changes,
    ));
    for s in status["services"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<20} {:<28} {}\n",
            s["name"].as_str().unwrap_or("?"),
            s["revision"].as_str().unwrap_or("-"),
            s["instance"]["phase"]
                .as_str()
                .unwrap_or_else(|| s["upstream"].as_str().unwrap_or("")),
        ));
    }
    say(&out);
    Ok(())
}
