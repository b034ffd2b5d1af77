"""One frontdoor server for a test: started from a configuration (a file or YAML text) in a
fresh state directory, on ports the OS picks, stopped with everything it started.

The server is `frontdoor serve --ephemeral-ports --stop-on-stdin-close`: this object holds
its stdin, so that even a test process that dies without cleaning up stops it (frontdoor
sees the end of its stdin and shuts down, its services with it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Optional, Union

Config = Union[str, "os.PathLike[str]"]

# How long a service may report that it failed to start before the start is given up:
# frontdoor restarts it with back-off, and a port taken for a moment heals on its own.
_FAILED_FOR = 5.0


class FrontdoorError(RuntimeError):
    """frontdoor could not be found, did not start, refused a change, or a command failed.
    The message carries frontdoor's own words (and its log's end when it did not start)."""


def find_binary(binary: Optional[str] = None) -> str:
    """The frontdoor binary: `binary`, else `FRONTDOOR_BIN`, else the one the
    `frontdoor-testing` wheel installed beside this Python (the helper's own version, found
    even in a virtualenv used without being activated), else `frontdoor` on PATH."""
    beside = os.path.join(sysconfig.get_path("scripts"), "frontdoor")
    candidate = (
        binary
        or os.environ.get("FRONTDOOR_BIN")
        or (beside if os.path.isfile(beside) else None)
        or shutil.which("frontdoor")
    )
    if not candidate:
        raise FrontdoorError(
            "no frontdoor binary: put `frontdoor` on PATH, set FRONTDOOR_BIN to its path, "
            "pass binary=, or `pip install` the frontdoor-testing wheel, which carries it"
        )
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise FrontdoorError(f"frontdoor binary {candidate!r} is not an executable file")
    # Absolute: a test may change directory after this.
    return os.path.abspath(candidate)


def _is_text(config: Config) -> bool:
    """YAML text has a line break; anything else names a file."""
    return isinstance(config, str) and "\n" in config


class Frontdoor:
    """A running frontdoor. Use it as a context manager (or call `start` and `stop`).

    `config` is either YAML text (anything with a line break) or the path of a
    `services.yaml`. A file is never changed: frontdoor runs a copy written beside it (so
    that paths in it still resolve), removed at `stop`. Text is written to a temporary
    directory, and relative paths in it resolve against that directory.
    """

    def __init__(self, config: Config, *, binary: Optional[str] = None, timeout: float = 60.0):
        self._config = config
        self._binary = find_binary(binary)
        self._timeout = timeout
        self._dir: Optional[str] = None
        self._config_file: Optional[str] = None
        self._copy_beside: Optional[str] = None
        self._process: Optional[subprocess.Popen] = None
        self._log_file = None
        self._log_text = ""

    # Starting and stopping.

    def __enter__(self) -> "Frontdoor":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> "Frontdoor":
        """Starts frontdoor and returns once every listener is bound and every `command`
        service answers. Raises FrontdoorError, with frontdoor's log, if it does not."""
        if self._process is not None:
            raise FrontdoorError("this frontdoor is already started")
        self._dir = tempfile.mkdtemp(prefix="frontdoor-test-")
        try:
            self._config_file = self._write_config()
            self._log_file = open(os.path.join(self._dir, "frontdoor.log"), "wb")
            env = dict(os.environ)
            env.pop("FRONTDOOR_STATE_DIR", None)
            self._process = subprocess.Popen(
                [
                    self._binary,
                    "serve",
                    "--config",
                    self._config_file,
                    "--state-dir",
                    self.state_dir,
                    "--ephemeral-ports",
                    "--stop-on-stdin-close",
                ],
                stdin=subprocess.PIPE,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=env,
            )
            deadline = time.monotonic() + self._timeout
            self._wait_for_addresses(deadline)
            self._wait_until_healthy(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops frontdoor (and the services it started) and removes what it wrote. Safe to
        call more than once."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            try:
                if process.stdin:
                    process.stdin.close()
                # Its own stop lets requests drain for up to 10 s and stops its services
                # first: past this, only a hung frontdoor is left to kill.
                process.wait(timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                process.kill()
                process.wait()
        elif process is not None and process.stdin:
            process.stdin.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
            self._log_text = self._read_log()
        if self._copy_beside is not None:
            try:
                os.remove(self._copy_beside)
            except FileNotFoundError:
                pass
            self._copy_beside = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def state_dir(self) -> str:
        if self._dir is None:
            raise FrontdoorError("frontdoor is not started")
        return os.path.join(self._dir, "state")

    @property
    def config_file(self) -> str:
        """The configuration file frontdoor runs (a copy; `apply` writes it)."""
        if self._config_file is None:
            raise FrontdoorError("frontdoor is not started")
        return self._config_file

    @property
    def log(self) -> str:
        """What frontdoor wrote to stdout and stderr so far (after `stop`, all of it)."""
        return self._read_log() if self._log_file is not None else self._log_text

    @property
    def addresses(self) -> dict:
        """Where every listener is (the state directory's `addresses.json`, rewritten at
        every reload): `frontdoor`, `google`, `metadata`, and `services` by name."""
        with open(os.path.join(self.state_dir, "addresses.json"), encoding="utf-8") as f:
            return json.load(f)

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    # What a test asks.

    def env(self, service: Optional[str] = None) -> dict:
        """The environment variables that make a process act as `service` on Cloud Run (its
        metadata server, proxy, CA bundle, project; `frontdoor env SERVICE`), to merge into
        a subprocess's environment. Without `service`, the default metadata server's."""
        args = ["env", "--json", "--state-dir", self.state_dir]
        if service is not None:
            args.append(service)
        return json.loads(self._cli(args))

    def url(self, service: str) -> str:
        """The service's `https://NAME-NUMBER.REGION.run.app` URL."""
        for s in self.status()["services"]:
            if s["name"] == service:
                return s["url"]
        names = ", ".join(s["name"] for s in self.status()["services"])
        raise FrontdoorError(f"no service {service!r} in the running configuration (services: {names})")

    def token(
        self,
        service_account: Optional[str] = None,
        *,
        user: Optional[str] = None,
        audience: Optional[str] = None,
        caller: Optional[str] = None,
    ) -> str:
        """An ID token for `service_account` (or a declared `user`), for `audience`, as
        `frontdoor token` mints it. With `caller` (`serviceAccount:EMAIL` or
        `user:EMAIL`), minted only if that principal may, as IAM Credentials judges it."""
        if (service_account is None) == (user is None):
            raise ValueError("give exactly one of service_account and user")
        args = ["token", "--config", self.config_file, "--state-dir", self.state_dir]
        if service_account is not None:
            args += ["--impersonate-service-account", service_account]
        else:
            args += ["--user", user]
        if audience is not None:
            args += ["--audiences", audience]
        if caller is not None:
            args += ["--as", caller]
        return self._cli(args).strip()

    def decisions(self, *, surface: Optional[str] = None, limit: Optional[int] = None) -> list:
        """The recent decisions (oldest first), each with `allowed`, `status`, `code`,
        `reason`, `principal`, `service` and the rest of what the dashboard shows."""
        query = {k: v for k, v in (("surface", surface), ("limit", limit)) if v is not None}
        path = "/frontdoor/v1/decisions"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        return self._get_json(path)["decisions"]

    def status(self) -> dict:
        """The running server's status: generation, services, last reload."""
        return self._get_json("/frontdoor/v1/status")

    def apply(self, config: str, *, timeout: float = 15.0) -> None:
        """Replaces the configuration with `config` (YAML text), as a live edit of
        services.yaml would, and returns once frontdoor dealt with it: applied, or found to
        change nothing that matters. If frontdoor refuses it, the previous text is put back
        (frontdoor keeps running the previous configuration either way) and FrontdoorError
        carries frontdoor's reason."""
        previous = Path(self.config_file).read_bytes()
        last = self._write_and_wait(config.encode("utf-8"), timeout)
        if last and not last["ok"]:
            self._write_and_wait(previous, timeout)
            raise FrontdoorError(f"frontdoor refused the change: {last['error']}")

    def _write_and_wait(self, content: bytes, timeout: float) -> Optional[dict]:
        """Writes the configuration file whole and waits until frontdoor's status names
        this content's digest as the last it dealt with; returns how that went."""
        tmp = self.config_file + ".new"
        Path(tmp).write_bytes(content)
        os.replace(tmp, self.config_file)
        digest = hashlib.sha256(content).hexdigest()
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if status.get("config_sha256") == digest:
                return status.get("last_reload")
            if time.monotonic() > deadline:
                raise FrontdoorError(f"frontdoor did not read the change within {timeout} s")
            time.sleep(0.05)

    # Inside.

    def _write_config(self) -> str:
        assert self._dir is not None
        if _is_text(self._config):
            path = os.path.join(self._dir, "services.yaml")
            Path(path).write_text(str(self._config), encoding="utf-8")
            return path
        original = Path(os.fspath(self._config))
        if not original.is_file():
            raise FrontdoorError(
                f"configuration {str(original)!r} is not a file (YAML text needs a line break)"
            )
        copy = original.with_name(f".frontdoor-test-{uuid.uuid4().hex[:12]}.yaml")
        try:
            copy.write_bytes(original.read_bytes())
        except OSError as e:
            raise FrontdoorError(
                f"cannot write the copy frontdoor runs beside {str(original)!r} ({e}); "
                "give the configuration as text instead"
            ) from e
        self._copy_beside = str(copy)
        return str(copy)

    def _wait_for_addresses(self, deadline: float) -> None:
        """frontdoor writes addresses.json whole (by rename) once every listener is bound."""
        record = os.path.join(self.state_dir, "addresses.json")
        while True:
            self._check_alive()
            try:
                with open(record, encoding="utf-8") as f:
                    addresses = json.load(f)
                if addresses.get("pid") == self._process.pid:
                    return
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            self._check_deadline(deadline, "bind its listeners")
            time.sleep(0.02)

    def _wait_until_healthy(self, deadline: float) -> None:
        """Every `command` service's instance is ready when /healthz answers 200. A service
        that stays failed gives up the start with frontdoor's reason."""
        why = "no answer yet"
        failing_since: Optional[float] = None
        while True:
            self._check_alive()
            try:
                with self._open("/healthz") as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as e:
                why = e.read().decode("utf-8", "replace").strip()
            except OSError as e:
                why = str(e)
            if ": failed: " in why:
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since > _FAILED_FOR:
                    raise FrontdoorError(f"a service did not start: {why}\n{self._log_tail()}")
            else:
                failing_since = None
            self._check_deadline(deadline, f"get its services ready ({why})")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise FrontdoorError(
                f"frontdoor exited with status {self._process.returncode} while starting:\n{self._log_tail()}"
            )

    def _check_deadline(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise FrontdoorError(f"frontdoor did not {what} within {self._timeout} s:\n{self._log_tail()}")

    def _open(self, path: str):
        # Never through a proxy: the test's own environment may point at one.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return opener.open(f"http://{self.addresses['google']}{path}", timeout=10)

    def _get_json(self, path: str) -> Any:
        try:
            with self._open(path) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace").strip()
            raise FrontdoorError(f"GET {path}: {e.code}: {body}") from e

    def _cli(self, args: list) -> str:
        env = dict(os.environ)
        env.pop("FRONTDOOR_STATE_DIR", None)
        done = subprocess.run(
            [self._binary, *args], capture_output=True, text=True, env=env, timeout=60
        )
        if done.returncode != 0:
            raise FrontdoorError(f"frontdoor {args[0]}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _read_log(self) -> str:
        if self._dir is None:
            return self._log_text
        try:
            return Path(self._dir, "frontdoor.log").read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._read_log().splitlines()[-lines:])

