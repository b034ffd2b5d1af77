// Start frontdoor for a test: `await start(config)` runs `frontdoor serve` in a fresh state
// directory on ports the OS picks, returns once it is ready, and `stop()` ends it with every
// service it started. Works the same from node:test, Jest and Vitest.
//
// frontdoor runs with --stop-on-stdin-close and this process holds its stdin: a test
// process that exits or dies without calling stop() still takes frontdoor down with it.
// The child is unref'd, so a forgotten stop() never keeps the test process alive.

import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as http from 'node:http';

const START_TIMEOUT_MS = 60_000;
// How long a service may stay failed before the start is given up: frontdoor restarts it
// with back-off, and a port taken for a moment heals on its own.
const FAILED_FOR_MS = 5_000;

export class FrontdoorError extends Error {}

/** The frontdoor binary: `binary`, else FRONTDOOR_BIN, else `frontdoor` on PATH. */
export function findBinary(binary) {
  let candidate = binary ?? process.env.FRONTDOOR_BIN;
  if (!candidate) {
    candidate = (process.env.PATH ?? '')
      .split(path.delimiter)
      .filter(Boolean)
      .map((dir) => path.join(dir, 'frontdoor'))
      .find(isExecutable);
    if (!candidate) {
      throw new FrontdoorError(
        'no frontdoor binary: put `frontdoor` on PATH, set FRONTDOOR_BIN to its path, or pass { binary }',
      );
    }
  }
  if (!isExecutable(candidate)) {
    throw new FrontdoorError(`frontdoor binary ${JSON.stringify(candidate)} is not an executable file`);
  }
  return path.resolve(candidate);
}

function isExecutable(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Starts frontdoor on `config`: YAML text (anything with a line break) or the path of a
 * services.yaml. A file is never changed: frontdoor runs a copy written beside it (so that
 * the paths in it still resolve), removed by stop().
 */
export async function start(config, { binary, timeoutMs = START_TIMEOUT_MS } = {}) {
  const fd = new Frontdoor(findBinary(binary));
  try {
    await fd._start(config, timeoutMs);
  } catch (e) {
    await fd.stop();
    throw e;
  }
  return fd;
}

export class Frontdoor {
  constructor(binary) {
    this.binary = binary;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'frontdoor-test-'));
    this.stateDir = path.join(this.dir, 'state');
    this.configFile = null;
    this._copyBeside = null;
    this._child = null;
    this._exited = null;
    this._stopping = null;
    this._spawnError = null;
    // A forgotten stop(): frontdoor stops as this process's end closes its stdin; what it
    // wrote here is removed now, synchronously, as an exit handler must.
    this._onExit = () => this._removeFiles();
    process.once('exit', this._onExit);
  }

  async _start(config, timeoutMs) {
    this.configFile = this._writeConfig(config);
    const log = fs.openSync(path.join(this.dir, 'frontdoor.log'), 'w');
    const env = { ...process.env };
    delete env.FRONTDOOR_STATE_DIR;
    try {
      this._child = spawn(
        this.binary,
        ['serve', '--config', this.configFile, '--state-dir', this.stateDir, '--ephemeral-ports', '--stop-on-stdin-close'],
        { stdio: ['pipe', log, log], env },
      );
    } finally {
      fs.closeSync(log);
    }
    this._exited = new Promise((resolve) => this._child.once('exit', (code, signal) => resolve({ code, signal })));
    this._child.once('error', (e) => {
      this._spawnError = e;
    });
    this._child.unref();
    this._child.stdin.unref?.();
    const deadline = Date.now() + timeoutMs;
    await this._waitForAddresses(deadline, timeoutMs);
    await this._waitUntilHealthy(deadline, timeoutMs);
  }

  /** Stops frontdoor (and its services) and removes what it wrote. Safe to call twice. */
  stop() {
    this._stopping ??= this._stop();
    return this._stopping;
  }

  async _stop() {
    const child = this._child;
    if (child && child.exitCode === null && child.signalCode === null) {
      // Held again while stopping, so that this process waits for the end.
      child.ref();
      child.stdin.end();
      // Its own stop drains requests for up to 10 s and stops its services first: past
      // this, only a hung frontdoor is left to kill.
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await this._exited;
      clearTimeout(timer);
    }
    this._child = null;
    this._logText = this.log;
    this._removeFiles();
    process.removeListener('exit', this._onExit);
  }

  _removeFiles() {
    if (this._copyBeside) {
      fs.rmSync(this._copyBeside, { force: true });
      this._copyBeside = null;
    }
    if (this.dir) {
      fs.rmSync(this.dir, { recursive: true, force: true });
      this.dir = null;
    }
  }

  get pid() {
    return this._child?.pid;
  }

  /** Where every listener is now (addresses.json, rewritten at every reload). */
  get addresses() {
    return JSON.parse(fs.readFileSync(path.join(this.stateDir, 'addresses.json'), 'utf8'));
  }

  /** What frontdoor wrote to stdout and stderr so far. */
  get log() {
    if (!this.dir) return this._logText ?? '';
    try {
      return fs.readFileSync(path.join(this.dir, 'frontdoor.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /**
   * The variables that make a process act as `service` on Cloud Run (its metadata server,
   * egress proxy, CA bundle, project, K_SERVICE), to spread into a child's `env`.
   */
  env(service) {
    const args = ['env', '--json', '--state-dir', this.stateDir];
    if (service) args.push(service);
    return JSON.parse(this._cli(args));
  }

  /** The service's https://NAME-NUMBER.REGION.run.app URL. */
  async url(service) {
    const { services } = await this.status();
    const found = services.find((s) => s.name === service);
    if (!found) {
      throw new FrontdoorError(
        `no service ${JSON.stringify(service)} in the running configuration (services: ${services.map((s) => s.name).join(', ')})`,
      );
    }
    return found.url;
  }

  /** An ID token for a service account, as `frontdoor token` mints it. */
  token(serviceAccount, { audience, caller } = {}) {
    const args = ['token', '--config', this.configFile, '--state-dir', this.stateDir,
      '--impersonate-service-account', serviceAccount];
    if (audience) args.push('--audiences', audience);
    if (caller) args.push('--as', caller);
    return this._cli(args).trim();
  }

  /** The recent decisions (oldest first) of `surface`, or of every surface. */
  async decisions({ surface, limit } = {}) {
    const query = new URLSearchParams();
    if (surface) query.set('surface', surface);
    if (limit) query.set('limit', String(limit));
    const suffix = query.toString() ? `?${query}` : '';
    return (await this._getJSON(`/frontdoor/v1/decisions${suffix}`)).decisions;
  }

  async status() {
    return this._getJSON('/frontdoor/v1/status');
  }

  /**
   * A live edit: replaces the configuration with `config` (YAML text) and resolves once
   * frontdoor dealt with it. If frontdoor refused it, the previous text is put back and
   * the promise rejects with frontdoor's reason.
   */
  async apply(config, { timeoutMs = 15_000 } = {}) {
    const previous = fs.readFileSync(this.configFile);
    const last = await this._writeAndWait(Buffer.from(config, 'utf8'), timeoutMs);
    if (last && !last.ok) {
      await this._writeAndWait(previous, timeoutMs);
      throw new FrontdoorError(`frontdoor refused the change: ${last.error}`);
    }
  }

  async _writeAndWait(content, timeoutMs) {
    const tmp = `${this.configFile}.new`;
    fs.writeFileSync(tmp, content);
    fs.renameSync(tmp, this.configFile);
    const digest = createHash('sha256').update(content).digest('hex');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status();
      if (status.config_sha256 === digest) return status.last_reload;
      if (Date.now() > deadline) throw new FrontdoorError(`frontdoor did not read the change within ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  _writeConfig(config) {
    if (typeof config === 'string' && config.includes('\n')) {
      const file = path.join(this.dir, 'services.yaml');
      fs.writeFileSync(file, config);
      return file;
    }
    const original = path.resolve(String(config));
    if (!fs.existsSync(original) || !fs.statSync(original).isFile()) {
      throw new FrontdoorError(`configuration ${JSON.stringify(original)} is not a file (YAML text needs a line break)`);
    }
    const copy = path.join(path.dirname(original), `.frontdoor-test-${randomBytes(6).toString('hex')}.yaml`);
    try {
      fs.copyFileSync(original, copy);
    } catch (e) {
      throw new FrontdoorError(`cannot write the copy frontdoor runs beside ${JSON.stringify(original)} (${e.message}); give the configuration as text instead`);
    }
    this._copyBeside = copy;
    return copy;
  }

  // frontdoor writes addresses.json whole (by rename) once every listener is bound.
  async _waitForAddresses(deadline, timeoutMs) {
    for (;;) {
      this._checkAlive();
      try {
        if (this.addresses.pid === this._child.pid) return;
      } catch {
        // Not written yet.
      }
      if (Date.now() > deadline) throw this._failed(`did not bind its listeners within ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  // Every `command` service's instance is ready when /healthz answers 200.
  async _waitUntilHealthy(deadline, timeoutMs) {
    let failingSince = null;
    for (;;) {
      this._checkAlive();
      let why;
      try {
        const { status, body } = await this._get('/healthz');
        if (status === 200) return;
        why = body.trim();
      } catch (e) {
        why = e.message;
      }
      if (why.includes(': failed: ')) {
        failingSince ??= Date.now();
        if (Date.now() - failingSince > FAILED_FOR_MS) throw this._failed(`could not start a service: ${why}`);
      } else {
        failingSince = null;
      }
      if (Date.now() > deadline) throw this._failed(`did not get its services ready within ${timeoutMs} ms (${why})`);
      await sleep(50);
    }
  }

  _checkAlive() {
    const child = this._child;
    if (this._spawnError) {
      throw this._failed(`could not be started: ${this._spawnError.message}`);
    }
    if (child && (child.exitCode !== null || child.signalCode !== null)) {
      throw this._failed(`exited (${child.exitCode ?? child.signalCode}) while starting`);
    }
  }

  _failed(what) {
    const tail = this.log.trimEnd().split('\n').slice(-30).join('\n');
    return new FrontdoorError(`frontdoor ${what}:\n${tail}`);
  }

  // Plain HTTP to the google listener, never through a proxy the test's environment names.
  _get(pathAndQuery) {
    const [host, port] = splitHostPort(this.addresses.google);
    return new Promise((resolve, reject) => {
      const request = http.get({ host, port, path: pathAndQuery, timeout: 10_000, agent: false }, (response) => {
        const chunks = [];
        response.on('data', (c) => chunks.push(c));
        response.on('end', () => resolve({ status: response.statusCode, body: Buffer.concat(chunks).toString('utf8') }));
        response.on('error', reject);
      });
      request.on('timeout', () => request.destroy(new Error(`GET ${pathAndQuery}: no answer in 10 s`)));
      request.on('error', reject);
    });
  }

  async _getJSON(pathAndQuery) {
    const { status, body } = await this._get(pathAndQuery);
    if (status !== 200) throw new FrontdoorError(`GET ${pathAndQuery}: ${status}: ${body.trim()}`);
    return JSON.parse(body);
  }

  _cli(args) {
    const env = { ...process.env };
    delete env.FRONTDOOR_STATE_DIR;
    try {
      return execFileSync(this.binary, args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
    } catch (e) {
      throw new FrontdoorError(`frontdoor ${args[0]}: ${(e.stderr || e.stdout || e.message).toString().trim()}`);
    }
  }
}

function splitHostPort(address) {
  const at = address.lastIndexOf(':');
  return [address.slice(0, at).replace(/^\[|\]$/g, ''), Number(address.slice(at + 1))];
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
