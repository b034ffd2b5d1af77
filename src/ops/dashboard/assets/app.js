// The dashboard's live parts: the decisions feed (server-sent events), the chain of checks
// of a chosen decision, the graph redrawn on reload, and the inspector. Every string that
// came from a request or a token is put on the page as text (textContent), never as HTML:
// a token's claims are chosen by whoever made it.
"use strict";

const CHECKS = JSON.parse(document.body.dataset.checks);
const CODES = new Map(JSON.parse(document.body.dataset.codes).map((c) => [c.code, c]));
const KEEP = 500;
const decisions = new Map();
let lastSeq = 0;
let boot = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Text whose `backticked` parts are code, as the codes' tables and the reasons write them:
// text nodes and <code> elements, never HTML. Unpaired backticks leave the text as it is.
function withCode(text) {
  const parts = String(text).split("`");
  if (parts.length % 2 === 0) return [String(text)];
  return parts.map((part, i) => (i % 2 === 1 ? el("code", {}, part) : part)).filter((p) => p !== "");
}

// What a decision was about: the service called, or (IAM Credentials) the account whose
// token was asked for.
function subjectOf(d) {
  if (d.surface === "iamcredentials") return `IAM Credentials: ${d.target || "?"}`;
  return d.service || "-";
}

// A response's JSON, or (a refusal frontdoor answers in plain text: a request from another
// site, say) its text as the error.
async function answerOf(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { error: text.trim() || `answered ${response.status}` };
  }
}

function verdictOf(d) {
  if (d.would_deny) return "AUDIT";
  return d.allowed ? "ALLOW" : "DENY";
}

// --- the feed --------------------------------------------------------------------------

function addDecision(d) {
  if (d.seq <= lastSeq) return;
  lastSeq = d.seq;
  decisions.set(d.seq, d);
  // UTC, as the log and the CLI give times.
  const time = new Date(d.time * 1000).toISOString().slice(11, 19) + "Z";
  const verdict = verdictOf(d);
  const row = el(
    "tr",
    { class: "row " + verdict.toLowerCase(), "data-seq": d.seq, tabindex: "0" },
    el("td", {}, time),
    el("td", { class: "verdict" }, `${verdict} ${d.status}`),
    el("td", { class: "service" }, subjectOf(d)),
    // Whole, wrapped if need be: cut short, two callers of one project looked alike.
    el("td", { class: "principal" }, (d.principal || "(no principal)") + (d.via ? ` (${d.via})` : "")),
    el("td", { class: "code" }, d.code || ""),
  );
  row.addEventListener("click", () => select(d.seq));
  row.addEventListener("keydown", (e) => {
    if (e.key === "Enter") select(d.seq);
  });
  const rows = document.getElementById("rows");
  rows.prepend(row);
  document.getElementById("no-decisions").hidden = true;
  applyFilters(row);
  while (rows.children.length > KEEP) {
    const old = rows.lastElementChild;
    decisions.delete(Number(old.dataset.seq));
    old.remove();
  }
}

// The whole decision (its chain, its token) is fetched when it is opened: the feed
// carries only what the rows show.
let selecting = 0;
async function select(seq) {
  const mine = ++selecting;
  for (const r of document.querySelectorAll("#rows tr.selected")) r.classList.remove("selected");
  const row = document.querySelector(`#rows tr[data-seq="${seq}"]`);
  if (row) row.classList.add("selected");
  const detail = document.getElementById("detail");
  const response = await fetch(`/frontdoor/v1/decisions/${seq}`, { cache: "no-store" });
  const body = await answerOf(response);
  // A later choice wins over an answer that came late.
  if (mine !== selecting) return;
  if (!response.ok) {
    detail.replaceChildren(el("p", { class: "error" }, body.error || `answered ${response.status}`));
    return;
  }
  showVerdict(detail, body, { live: true });
}

function filters() {
  const form = document.getElementById("filters");
  return {
    service: form.elements.service.value,
    principal: form.elements.principal.value.trim().toLowerCase(),
    outcome: form.elements.outcome.value,
  };
}

function applyFilters(only) {
  const f = filters();
  const rows = only ? [only] : document.querySelectorAll("#rows tr");
  for (const row of rows) {
    const d = decisions.get(Number(row.dataset.seq));
    if (!d) continue;
    const outcome = d.would_deny ? "audit" : d.allowed ? "allowed" : "denied";
    row.hidden =
      (f.service && d.service !== f.service) ||
      (f.principal && !(d.principal || "").toLowerCase().includes(f.principal)) ||
      (f.outcome && f.outcome !== outcome && !(f.outcome === "denied" && outcome === "audit"));
  }
}

function connect() {
  const state = document.getElementById("feed-state");
  const source = new EventSource("/frontdoor/v1/events");
  source.addEventListener("open", () => {
    state.textContent = "live";
    state.className = "feed live";
  });
  source.addEventListener("error", () => {
    state.textContent = "reconnecting…";
    state.className = "feed down";
  });
  source.addEventListener("decisions", (e) => {
    const batch = JSON.parse(e.data);
    for (const d of batch.decisions) addDecision(d);
    if (batch.skipped > 0) {
      state.textContent = `live (${batch.skipped} older decisions of a busy moment not shown)`;
    }
  });
  source.addEventListener("config", (e) => {
    const config = JSON.parse(e.data);
    // A restarted server numbers its decisions from 1 again: forget the old ones.
    if (boot !== null && config.boot !== boot) {
      document.getElementById("rows").replaceChildren();
      document.getElementById("no-decisions").hidden = false;
      decisions.clear();
      lastSeq = 0;
    }
    boot = config.boot;
    document.getElementById("audit-banner").hidden = config.enforcement !== "audit";
    const refused = config.last_reload && config.last_reload.ok === false;
    const banner = document.getElementById("refused-banner");
    banner.hidden = !refused;
    banner.querySelector(".why").textContent = refused ? config.last_reload.error || "" : "";
    redrawGraph();
  });
}

async function redrawGraph() {
  const response = await fetch("/frontdoor/ui/graph", { cache: "no-store" });
  if (response.ok) {
    // Rendered by the server's template, which escapes every string in it.
    document.getElementById("graph-view").innerHTML = await response.text();
  }
}

// --- a verdict and its chain of checks ---------------------------------------------------

// The chain as the page draws it: every check in order, each passed, failed, skipped (a
// public service checks no token) or not reached.
function chainOf(v) {
  const made = new Map((v.steps || []).map((s) => [s.check, s]));
  const failedAt = (v.steps || []).findIndex((s) => s.outcome === "failed");
  const isPublic = (v.steps || []).some((s) => s.check === "public" && s.detail.startsWith("yes"));
  return CHECKS.map(([check, title]) => {
    const step = made.get(check);
    if (step) return { check, title, outcome: step.outcome, detail: step.detail };
    const skipped = isPublic && check !== "route" && check !== "container" && failedAt < 0;
    return { check, title, outcome: skipped ? "skipped" : "not-reached", detail: "" };
  });
}

// The server's ranked fixes (least privilege first; a widening one labelled), or the
// code's own fix from the table of codes where there is nothing to rank.
function fixFor(v) {
  const code = v.code && CODES.get(v.code);
  if (!code) return null;
  const box = el("div", { class: "fix" }, el("strong", {}, "Fix: "), ...withCode(code.fix));
  const fixes = Array.isArray(v.fixes) ? v.fixes : [];
  if (fixes.length === 0) return box;
  box.append(el("p", {}, "Least privilege first:"));
  const list = el("ol", { class: "fixes" });
  for (const fix of fixes) {
    const item = el(
      "li",
      { class: "fix-option" + (fix.widens ? " widens" : ""), "data-kind": fix.kind },
      el("span", { class: "fix-kind" }, fix.kind),
      fix.widens ? el("strong", { class: "widens-label" }, " widens access: ") : " ",
      ...withCode(fix.text),
    );
    if (fix.yaml) {
      item.append(
        el("p", {}, "In ", el("code", {}, fix.file || "services.yaml"), ", ", ...withCode(`${fix.place || "where it names"}:`)),
        el("pre", { class: "command yaml" }, fix.yaml),
      );
    }
    if (fix.command) item.append(el("p", {}, "or:"), el("pre", { class: "command" }, fix.command));
    list.append(item);
  }
  box.append(list);
  return box;
}

function showVerdict(into, v, { live }) {
  const verdict = live ? verdictOf(v) : v.allowed ? "ALLOW" : "DENY";
  into.replaceChildren();
  // Which decision is shown, for whoever waits for it (the browser test).
  if (v.seq !== undefined) into.dataset.seq = v.seq;
  into.append(
    el(
      "h3",
      { class: "verdict " + verdict.toLowerCase() },
      `${verdict} ${v.status} · ${subjectOf(v)}`,
    ),
  );
  if (v.would_deny) {
    into.append(
      el("p", { class: "audit-note" }, `Would deny ${v.would_deny}: enforcement would have refused it.`),
    );
  }
  if (v.code) {
    const meaning = CODES.get(v.code);
    into.append(
      el(
        "p",
        { class: "code-line" },
        el("code", { class: "code" }, v.code),
        ...(meaning ? [" — ", ...withCode(meaning.meaning)] : []),
      ),
    );
  }
  into.append(el("p", { class: "reason" }, ...withCode(v.reason || "")));
  const fix = v.allowed && !v.would_deny ? null : fixFor(v);
  if (fix) into.append(fix);

  // The chain of checks is the front door's; IAM Credentials checks one permission,
  // which the facts below name.
  const list = el("ol", { class: "chain" });
  for (const step of v.surface && v.surface !== "frontdoor" ? [] : chainOf(v)) {
    // `public?` is a question: its answer, not a ✓ that reads as "it is public".
    const mark =
      step.check === "public" && step.outcome === "passed"
        ? step.detail.startsWith("yes") ? "yes" : "no"
        : { passed: "✓", failed: "✗", skipped: "–", "not-reached": "·" }[step.outcome];
    const label =
      step.outcome === "not-reached"
        ? "not reached"
        : step.outcome === "skipped"
          ? "skipped: the service is public"
          : step.detail;
    list.append(
      el(
        "li",
        { class: "step " + step.outcome, "data-check": step.check },
        el("span", { class: "mark" }, mark),
        el("span", { class: "title" }, step.title),
        el("span", { class: "step-detail" }, ...withCode(label)),
      ),
    );
  }
  if (list.children.length) into.append(el("h4", {}, "Chain of checks"), list);

  const facts = el("dl", { class: "facts" });
  const fact = (k, value) => {
    if (value !== undefined && value !== null && value !== "") facts.append(el("dt", {}, k), el("dd", {}, value));
  };
  fact("principal", v.principal);
  fact("account", v.target);
  fact("permission", v.permission);
  fact("caller", v.via);
  fact("credential", v.credential);
  fact("request", v.method ? `${v.method} ${v.host}${v.path}` : null);
  fact("revision", v.revision);
  fact("latency", v.latency_us !== undefined ? `${(v.latency_us / 1000).toFixed(2)} ms` : null);
  if (v.minted) fact("token", "minted for this question, sent nowhere");
  into.append(facts);

  if (v.token) {
    into.append(
      el("h4", {}, "Token header"),
      el("pre", { class: "token-header" }, JSON.stringify(v.token.header, null, 2)),
      el("h4", {}, "Token claims"),
      el("pre", { class: "token-claims" }, JSON.stringify(v.token.claims, null, 2)),
    );
    // The claims' times as a person reads them: UTC, and how far from now.
    const times = el("dl", { class: "facts token-times" });
    for (const claim of ["iat", "nbf", "exp"]) {
      const t = v.token.claims ? v.token.claims[claim] : undefined;
      if (!Number.isSafeInteger(t) || t < 0 || t > 253402300799) continue;
      const minutes = Math.round((t * 1000 - Date.now()) / 60000);
      const from = minutes === 0 ? "now" : minutes > 0 ? `in ${minutes} min` : `${-minutes} min ago`;
      times.append(el("dt", {}, claim), el("dd", {}, `${new Date(t * 1000).toISOString().slice(0, 19)}Z (${from})`));
    }
    if (times.children.length) into.append(times);
    into.append(el("p", { class: "hint" }, "The signature is never shown."));
  }
}

// --- the inspector -----------------------------------------------------------------------

async function explain(event) {
  event.preventDefault();
  const form = event.target;
  const out = document.getElementById("verdict");
  const question = { service: form.elements.service.value };
  if (form.elements.mode.value === "mint") {
    question.impersonate_service_account = form.elements.account.value;
    const audience = form.elements.audience.value.trim();
    if (audience) question.audience = audience;
  } else {
    question.token = form.elements.token.value;
  }
  try {
    const response = await fetch("/frontdoor/v1/explain", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(question),
    });
    const body = await answerOf(response);
    if (!response.ok) {
      out.replaceChildren(el("p", { class: "error" }, body.error || `answered ${response.status}`));
      return;
    }
    showVerdict(out, body, { live: false });
  } catch (e) {
    out.replaceChildren(el("p", { class: "error" }, `frontdoor did not answer: ${e}`));
  }
}

function modeChanged() {
  const form = document.getElementById("explain-form");
  const mint = form.elements.mode.value === "mint";
  form.querySelector(".mint").hidden = !mint;
  form.elements.token.hidden = mint;
}

document.getElementById("filters").addEventListener("input", () => applyFilters());
document.getElementById("filters").addEventListener("submit", (e) => e.preventDefault());
document.getElementById("explain-form").addEventListener("submit", explain);
document.getElementById("explain-form").addEventListener("change", modeChanged);
modeChanged();
connect();
