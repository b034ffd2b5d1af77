// The helper's own tests: live changes and refusals, and that no frontdoor or service
// process outlives its test, even when the test fails, runs beside another suite of the
// same configuration, or its process is killed.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { start, FrontdoorError } from 'frontdoor-testing';

// The suites below import the helper by this URL, from wherever their files are.
const HELPER = new URL('../index.js', import.meta.url).href;

const searchApp = fileURLToPath(new URL('../examples/search_app.js', import.meta.url));
const LOGIN = 'serviceAccount:login@helper-test.iam.gserviceaccount.com';
const OTHER = 'serviceAccount:search@helper-test.iam.gserviceaccount.com';

function config(invokers, pidFile) {
  const command = [process.execPath, searchApp, ...(pidFile ? [pidFile] : [])];
  return `
project: {id: helper-test, number: "123456789012", region: europe-west1}
service_accounts:
  - email: login@helper-test.iam.gserviceaccount.com
  - email: search@helper-test.iam.gserviceaccount.com
services:
  - name: search
    service_account: search@helper-test.iam.gserviceaccount.com
    command: ${JSON.stringify(command)}
    iam_policy:
      bindings:
        - role: roles/run.invoker
          members: ${JSON.stringify(invokers)}
  - name: login
    service_account: login@helper-test.iam.gserviceaccount.com
    upstream: builtin:echo
`;
}

// The front door's answer to a call with `token`, through login's egress proxy.
function statusOf(fd, token, url) {
  const env = { ...process.env, ...fd.env('login') };
  return Number(execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', `Authorization: Bearer ${token}`, url], { env, encoding: 'utf8' }));
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'frontdoor-helper-'));
}

test('a change applied live takes effect, and a refused one is put back with the reason', async (t) => {
  const fd = await start(config([OTHER]));
  t.after(() => fd.stop());
  const stateDir = fd.stateDir;
  const url = await fd.url('search');
  const token = fd.token('login@helper-test.iam.gserviceaccount.com', { audience: url });
  assert.equal(statusOf(fd, token, url), 403);
  await fd.apply(config([LOGIN]));
  assert.equal(statusOf(fd, token, url), 200);
  await assert.rejects(fd.apply(config([LOGIN]).replace('roles/run.invoker', 'roles/run.invokers')), (e) => e instanceof FrontdoorError && e.message.includes('roles/run.invokers'));
  assert.equal(fs.readFileSync(fd.configFile, 'utf8'), config([LOGIN]));
  assert.equal((await fd.status()).last_reload.ok, true);
  assert.equal(statusOf(fd, fd.token('login@helper-test.iam.gserviceaccount.com', { audience: url }), url), 200);
  // Text that changes nothing that matters resolves too, the generation unchanged.
  const { generation } = await fd.status();
  await fd.apply(`${config([LOGIN])}# a comment\n`);
  assert.equal((await fd.status()).generation, generation);
  await fd.stop();
  assert.equal(fs.existsSync(stateDir), false);
});

test('unknown names and a refused start are reported with frontdoor\'s words', async (t) => {
  const fd = await start(config([LOGIN]));
  t.after(() => fd.stop());
  await assert.rejects(fd.url('serch'), /no service "serch".*search, login/);
  await assert.rejects(fd.decisions({ surface: 'frontdoorr' }), /400.*frontdoorr/);
  assert.throws(() => fd.token('search@helper-test.iam.gserviceaccount.com', { caller: LOGIN }), /getOpenIdToken/);
  await assert.rejects(start(config([LOGIN]).replace('helper-test,', 'x,')), /project id `x`/);
  await assert.rejects(start('/no/such/services.yaml'), /is not a file/);
  await assert.rejects(start(config([LOGIN]), { binary: '/no/such/frontdoor' }), /not an executable file/);
});

test('a file runs from a copy beside it that stop() removes', async (t) => {
  const dir = tempDir();
  const original = path.join(dir, 'services.yaml');
  fs.writeFileSync(original, config([LOGIN]));
  const fd = await start(original);
  t.after(() => fd.stop());
  assert.equal(path.dirname(fd.configFile), dir);
  assert.notEqual(fd.configFile, original);
  await fd.stop();
  assert.deepEqual(fs.readdirSync(dir), ['services.yaml']);
  fs.rmSync(dir, { recursive: true });
});

// A suite whose only test notes frontdoor's pid, waits for the other suite's, then fails.
const FAILING_SUITE = (pids, configFile) => `
import { test } from 'node:test';
import * as fs from 'node:fs';
import { start } from ${JSON.stringify(HELPER)};
test('fails after starting', async (t) => {
  const fd = await start(${JSON.stringify(configFile)});
  t.after(() => fd.stop());
  fs.appendFileSync(${JSON.stringify(pids)}, fd.pid + '\\n');
  const deadline = Date.now() + 60000;
  const count = () => fs.readFileSync(${JSON.stringify(pids)}, 'utf8').split('\\n').filter(Boolean).length;
  while (count() < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (count() !== 2) throw new Error("the other suite's frontdoor never ran");
  throw new Error('failed on purpose');
});
`;

function pidsIn(file) {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
}

// Whether process `pid` exits within 20 s (a zombie counts as gone).
async function gone(pid, withinMs = 20_000) {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return true;
    }
    if (stat.slice(stat.lastIndexOf(')') + 1).trim().startsWith('Z')) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

function run(args, options) {
  return new Promise((resolve) => {
    // A suite of its own, not a part of this one: node:test marks its children through
    // this variable.
    const env = { ...options.env };
    delete env.NODE_TEST_CONTEXT;
    const child = spawn(process.execPath, args, { ...options, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (c) => { output += c; });
    child.stderr.on('data', (c) => { output += c; });
    // 'close', not 'exit': the output may still be arriving when the process has exited.
    child.on('close', (code) => resolve({ code, output }));
  });
}

// A suite's directory; its frontdoors' temporary directories are made in it too (TMPDIR),
// so that removing it removes what a killed one leaves.
function suiteDir() {
  return tempDir();
}

test('two suites of one configuration side by side, and a failing test, leave nothing behind', async () => {
  const dir = suiteDir();
  try {
    const services = path.join(dir, 'service-pids');
    const frontdoors = path.join(dir, 'frontdoor-pids');
    fs.writeFileSync(path.join(dir, 'services.yaml'), config([LOGIN], services));
    for (const suite of ['one', 'two']) {
      fs.writeFileSync(path.join(dir, `${suite}.test.js`), FAILING_SUITE(frontdoors, path.join(dir, 'services.yaml')));
    }
    const env = { ...process.env, TMPDIR: dir };
    const runs = await Promise.all(['one', 'two'].map((suite) => run(['--test', '--test-reporter=tap', path.join(dir, `${suite}.test.js`)], { cwd: dir, env })));
    for (const { code, output } of runs) {
      assert.notEqual(code, 0, output);
      assert.match(output, /failed on purpose/);
      assert.match(output, /# fail 1/);
    }
    const pids = pidsIn(frontdoors);
    assert.equal(new Set(pids).size, 2);
    assert.equal(pidsIn(services).length, 2);
    for (const pid of [...pids, ...pidsIn(services)]) {
      assert.ok(Number.isInteger(pid) && pid > 0, `not a pid: ${pid}`);
      assert.ok(await gone(pid), `process ${pid} outlived its suite`);
    }
    // Nothing left but the suites and their notes: no copy, no frontdoor directory.
    assert.deepEqual(fs.readdirSync(dir).sort(), ['frontdoor-pids', 'one.test.js', 'service-pids', 'services.yaml', 'two.test.js']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a test process killed outright still takes frontdoor and its services down', async () => {
  const dir = suiteDir();
  try {
    const services = path.join(dir, 'service-pids');
    fs.writeFileSync(path.join(dir, 'services.yaml'), config([LOGIN], services));
    const holder = spawn(process.execPath, ['--input-type=module', '-e', `
      import { start } from ${JSON.stringify(HELPER)};
      const fd = await start(${JSON.stringify(path.join(dir, 'services.yaml'))});
      console.log(fd.pid);
      setTimeout(() => {}, 600_000);
    `], { cwd: dir, env: { ...process.env, TMPDIR: dir }, stdio: ['ignore', 'pipe', 'inherit'] });
    const pid = await new Promise((resolve) => holder.stdout.once('data', (c) => resolve(Number(String(c).trim()))));
    assert.ok(Number.isInteger(pid) && pid > 0, `the holder printed ${pid}`);
    assert.equal(await gone(pid, 500), false, 'frontdoor was not running before the kill');
    holder.kill('SIGKILL');
    assert.ok(await gone(pid), 'frontdoor outlived the process that started it');
    for (const service of pidsIn(services)) assert.ok(await gone(service), `service ${service} outlived frontdoor`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
