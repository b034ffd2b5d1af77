// Drives the dashboard in Debian's chromium (through playwright-core, which downloads no
// browser) for tests/it/dashboard.rs. It reads what to do from the JSON file named by
// FD_CASES, does it as a person would (calls the front door, opens a decision, edits the
// configuration, pastes tokens into the inspector), and writes what the page showed, with
// timings, to FD_OUT; the Rust test judges it. Every request the page makes is recorded,
// so that the test can hold it to loopback.
import { chromium } from "playwright-core";
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import http from "node:http";

const cases = JSON.parse(readFileSync(process.env.FD_CASES, "utf8"));
const out = { requests: [], console_errors: [] };
const LIMIT = 15_000;

function call(url, token) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { headers: { authorization: `Bearer ${token}` } }, (res) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode, reason: res.headers["x-frontdoor-reason"] || "" }));
    });
    req.on("error", reject);
    req.end();
  });
}

// A POST of `body` as JSON with a bearer token: its status.
function post(url, token, body) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: "POST", headers: { authorization: `Bearer ${token}`, "content-type": "application/json" } },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
      },
    );
    req.on("error", reject);
    req.end(JSON.stringify(body));
  });
}

function replaceFile(path, text) {
  writeFileSync(`${path}.tmp`, text);
  renameSync(`${path}.tmp`, path);
}

// The highest decision number on the page.
function lastSeq(page) {
  return page.evaluate(() =>
    Math.max(0, ...[...document.querySelectorAll("#rows tr")].map((r) => Number(r.dataset.seq))),
  );
}

// The row of the first decision after number `after` of `service` with code `code`, once
// it is on the page.
async function rowAfter(page, after, service, code) {
  const seq = await page.waitForFunction(
    ([after, service, code]) => {
      for (const r of document.querySelectorAll("#rows tr")) {
        if (
          Number(r.dataset.seq) > after &&
          r.querySelector("td.service").textContent === service &&
          r.querySelector("td.code").textContent === code
        ) {
          return r.dataset.seq;
        }
      }
      return false;
    },
    [after, service, code],
    { timeout: LIMIT, polling: 20 },
  );
  return page.locator(`#rows tr[data-seq="${await seq.jsonValue()}"]`);
}

// Opens a decision's row, and waits for its details (fetched by the page) to show.
async function open(page, row) {
  const seq = await row.getAttribute("data-seq");
  await row.click();
  await page.locator(`#detail[data-seq="${seq}"] h3`).waitFor({ timeout: LIMIT });
}

const browser = await chromium.launch({
  executablePath: process.env.FD_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
  page.on("request", (r) => out.requests.push(r.url()));
  page.on("console", (m) => {
    if (m.type() === "error") out.console_errors.push(m.text());
  });
  page.on("pageerror", (e) => out.console_errors.push(String(e)));

  await page.goto(cases.dashboard);
  await page.locator("#feed-state.live").waitFor({ timeout: LIMIT });

  // A denied call, and how long it takes to show.
  const before = await lastSeq(page);
  const denied = await call(cases.denied.url, cases.denied.token);
  const t0 = Date.now();
  const row = await rowAfter(page, before, cases.denied.service, cases.denied.code);
  out.denied = { status: denied.status, reason: denied.reason, shown_ms: Date.now() - t0 };
  await open(page, row);
  const detail = page.locator("#detail");
  out.denied.failed_steps = await detail.locator("li.step.failed").evaluateAll((els) => els.map((e) => e.dataset.check));
  out.denied.passed_steps = await detail.locator("li.step.passed").evaluateAll((els) => els.map((e) => e.dataset.check));
  out.denied.code = await detail.locator("p.code-line code.code").textContent();
  out.denied.fix = await detail.locator(".fix").textContent();
  out.denied.claims = await detail.locator("pre.token-claims").textContent();
  out.denied.verdict = await detail.locator("h3").textContent();
  await page.screenshot({ path: process.env.FD_SCREENSHOT, fullPage: true });

  // A near-miss audience: the ranked fixes as the page lists them.
  {
    const before = await lastSeq(page);
    await call(cases.near_miss.url, cases.near_miss.token);
    await open(page, await rowAfter(page, before, cases.near_miss.service, cases.near_miss.code));
    const options = detail.locator("li.fix-option");
    out.near_miss = {
      kinds: await options.evaluateAll((els) => els.map((e) => e.dataset.kind)),
      widens: await options.evaluateAll((els) => els.map((e) => e.classList.contains("widens"))),
      first: await options.first().textContent(),
    };
  }

  // IAM Credentials refusing a token for an account: its row, and the fixes ranked.
  {
    const c = cases.token_creator;
    const before = await lastSeq(page);
    const status = await post(c.url, c.token, c.body);
    await open(page, await rowAfter(page, before, c.subject, c.code));
    const options = detail.locator("li.fix-option");
    out.token_creator = {
      status,
      verdict: await detail.locator("h3").textContent(),
      steps: await detail.locator("li.step").count(),
      kinds: await options.evaluateAll((els) => els.map((e) => e.dataset.kind)),
      widens: await options.evaluateAll((els) => els.map((e) => e.classList.contains("widens"))),
      first: await options.first().textContent(),
    };
  }

  // Hostile strings from a token, and a very long reason: shown as text, nothing run.
  out.hostile = [];
  for (const h of cases.hostile) {
    const before = await lastSeq(page);
    const answer = await call(h.url, h.token);
    const hostileRow = await rowAfter(page, before, h.service, h.code);
    await open(page, hostileRow);
    out.hostile.push({
      name: h.name,
      status: answer.status,
      row_text: await hostileRow.textContent(),
      reason_chars: ((await detail.locator("p.reason").textContent()) || "").length,
      detail_text: await detail.textContent(),
      injected_elements: await page.locator("#detail img, #detail script, #rows img, #rows script").count(),
      pwned: await page.evaluate(() => window.__pwned === 1),
    });
  }

  // The inspector, for each token: the verdict it shows.
  out.inspector = [];
  const form = page.locator("#explain-form");
  await form.locator('input[value="token"]').check();
  for (const c of cases.inspector) {
    await page.evaluate(() => document.getElementById("verdict").replaceChildren());
    await form.locator('select[name="service"]').selectOption(c.service);
    await form.locator('textarea[name="token"]').fill(c.token);
    await form.locator('button[type="submit"]').click();
    const verdict = page.locator("#verdict h3, #verdict p.error").first();
    await verdict.waitFor({ timeout: LIMIT });
    const code = page.locator("#verdict p.code-line code.code");
    out.inspector.push({
      name: c.name,
      service: c.service,
      heading: await verdict.textContent(),
      code: (await code.count()) > 0 ? await code.textContent() : null,
      failed_steps: await page.locator("#verdict li.step.failed").evaluateAll((els) => els.map((e) => e.dataset.check)),
    });
  }

  // A live edit that adds a binding: the graph shows the edge.
  const edge = `#graph-view path.edge.invoker[data-from="${cases.edit.from}"][data-to="${cases.edit.to}"]`;
  out.edit = { edge_before: await page.locator(edge).count() };
  replaceFile(cases.edit.config, cases.edit.yaml);
  const t1 = Date.now();
  await page.locator(edge).waitFor({ timeout: LIMIT, state: "attached" });
  out.edit.edge_ms = Date.now() - t1;

  // A refused reload is shown, and the graph still drawn.
  replaceFile(cases.edit.config, cases.edit.broken);
  await page.locator("#refused-banner").waitFor({ timeout: LIMIT });
  out.edit.refused_text = await page.locator("#refused-banner").textContent();
  out.edit.edge_after_refusal = await page.locator(edge).count();

  // Audit mode: the banner appears.
  out.audit = { banner_before: await page.locator("#audit-banner").isVisible() };
  replaceFile(cases.edit.config, cases.edit.audit);
  await page.locator("#audit-banner").waitFor({ state: "visible", timeout: LIMIT });
  out.audit.banner_text = await page.locator("#audit-banner").textContent();
} finally {
  await browser.close();
  writeFileSync(process.env.FD_OUT, JSON.stringify(out, null, 2));
}
