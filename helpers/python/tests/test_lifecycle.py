"""The helper's own tests: live changes, refusals, what a start leaves behind, and that no
frontdoor or service process outlives its test, even when the test fails, runs beside
another suite of the same configuration, or is killed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from frontdoor_testing import Frontdoor, FrontdoorError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEARCH_APP = EXAMPLES / "search_app.py"


def config(invokers, pid_file=None):
    command = [sys.executable, str(SEARCH_APP)] + ([str(pid_file)] if pid_file else [])
    return textwrap.dedent(
        f"""
        project: {{id: helper-test, number: "123456789012", region: europe-west1}}
        service_accounts:
          - email: login@helper-test.iam.gserviceaccount.com
          - email: search@helper-test.iam.gserviceaccount.com
        services:
          - name: search
            service_account: search@helper-test.iam.gserviceaccount.com
            command: {json.dumps(command)}
            iam_policy:
              bindings:
                - role: roles/run.invoker
                  members: {json.dumps(invokers)}
          - name: login
            service_account: login@helper-test.iam.gserviceaccount.com
            upstream: builtin:echo
        """
    )


LOGIN = "serviceAccount:login@helper-test.iam.gserviceaccount.com"
OTHER = "serviceAccount:search@helper-test.iam.gserviceaccount.com"


def status_of(fd, token, url):
    """The front door's answer to a call with `token`, made through the login service's
    egress proxy, as a process on Cloud Run would."""
    env = {**os.environ, **fd.env("login")}
    done = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}", url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_change_applied_live_takes_effect_and_a_refused_one_raises_with_the_reason():
    with Frontdoor(config([OTHER])) as fd:
        url = fd.url("search")
        token = fd.token("login@helper-test.iam.gserviceaccount.com", audience=url)
        assert status_of(fd, token, url) == 403
        fd.apply(config([LOGIN]))
        assert status_of(fd, token, url) == 200
        with pytest.raises(FrontdoorError, match="roles/run.invokers"):
            fd.apply(config([LOGIN]).replace("roles/run.invoker", "roles/run.invokers"))
        # Refused whole: what ran before still runs, and its text is back in the file, so
        # that minting (which reads the file) works on.
        assert status_of(fd, token, url) == 200
        assert Path(fd.config_file).read_text() == config([LOGIN])
        assert fd.status()["last_reload"]["ok"]
        again = fd.token("login@helper-test.iam.gserviceaccount.com", audience=url)
        assert status_of(fd, again, url) == 200
        # Text that changes nothing that matters returns too, the generation unchanged.
        generation = fd.status()["generation"]
        fd.apply(config([LOGIN]) + "# a comment\n")
        assert fd.status()["generation"] == generation


def test_a_token_minted_as_a_caller_is_checked_and_the_refusal_is_frontdoors():
    with Frontdoor(config([LOGIN])) as fd:
        with pytest.raises(FrontdoorError, match="getOpenIdToken"):
            fd.token("search@helper-test.iam.gserviceaccount.com", caller=LOGIN)


def test_a_file_runs_from_a_copy_beside_it_that_stop_removes(tmp_path):
    original = tmp_path / "services.yaml"
    original.write_text(config([LOGIN]))
    with Frontdoor(original) as fd:
        running = Path(fd.config_file)
        assert running.parent == tmp_path and running != original and running.exists()
        state_dir = Path(fd.state_dir)
        fd.apply(config([OTHER]))
    assert original.read_text() == config([LOGIN])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["services.yaml"]
    assert not state_dir.exists()


def test_a_configuration_frontdoor_refuses_fails_the_start_with_its_reason():
    with pytest.raises(FrontdoorError, match="project id `x`"):
        Frontdoor(config([LOGIN]).replace("helper-test,", "x,")).start()


def test_a_missing_file_or_binary_is_named(tmp_path, monkeypatch):
    with pytest.raises(FrontdoorError, match="is not a file"):
        Frontdoor(str(tmp_path / "absent.yaml")).start()
    monkeypatch.setenv("FRONTDOOR_BIN", str(tmp_path / "no-such-frontdoor"))
    with pytest.raises(FrontdoorError, match="not an executable file"):
        Frontdoor(config([LOGIN]))


def test_an_unknown_service_or_surface_is_named():
    with Frontdoor(config([LOGIN])) as fd:
        with pytest.raises(FrontdoorError, match="no service 'serch'.*search, login"):
            fd.url("serch")
        with pytest.raises(FrontdoorError, match="400.*frontdoorr"):
            fd.decisions(surface="frontdoorr")


# A suite whose only test notes frontdoor's process id, waits until the other suite's
# frontdoor runs too (so that the two surely overlap), then fails.
FAILING_SUITE = """
import time
from pathlib import Path

def test_fails_after_starting(frontdoor):
    pids = Path({pids!r})
    with open(pids, "a") as f:
        f.write(f"{{frontdoor.pid}}\\n")
    deadline = time.monotonic() + 60
    while len(pids.read_text().split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids.read_text().split()) == 2, "the other suite's frontdoor never ran"
    assert frontdoor.status()["generation"] == 1
    assert False, "failed on purpose"
"""


def gone(pid, within=20.0):
    """Whether process `pid` exits within `within` seconds (a zombie counts as gone)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def pids_in(path):
    return [int(line) for line in path.read_text().split()]


def test_two_suites_of_one_configuration_run_side_by_side_and_a_failing_test_leaves_nothing(tmp_path):
    services_yaml = tmp_path / "services.yaml"
    frontdoors = tmp_path / "frontdoor-pids"
    services = tmp_path / "service-pids"
    services_yaml.write_text(config([LOGIN], pid_file=services))
    for suite in ("one", "two"):
        (tmp_path / suite).mkdir()
        (tmp_path / suite / "test_suite.py").write_text(FAILING_SUITE.format(pids=str(frontdoors)))
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
             f"frontdoor_config={services_yaml}", str(tmp_path / suite)],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for suite in ("one", "two")
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    for run, output in zip(runs, outputs):
        assert run.returncode == 1, output
        assert "1 failed" in output and "failed on purpose" in output, output
    assert len(set(pids_in(frontdoors))) == 2
    assert len(pids_in(services)) == 2
    for pid in pids_in(frontdoors) + pids_in(services):
        assert gone(pid), f"process {pid} outlived its suite"
    # Only the configuration itself and what the tests wrote: no copy left beside it.
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "frontdoor-pids", "one", "service-pids", "services.yaml", "two",
    ]


KILLED = """
import sys, time
from frontdoor_testing import Frontdoor
fd = Frontdoor(sys.argv[1]).start()
print(fd.pid, flush=True)
time.sleep(600)
"""


def test_a_test_process_killed_outright_still_takes_frontdoor_and_its_services_down(tmp_path):
    services = tmp_path / "service-pids"
    (tmp_path / "services.yaml").write_text(config([LOGIN], pid_file=services))
    # Its frontdoor's temporary directory is made under tmp_path (TMPDIR), so that what the
    # killed holder cannot remove is removed with tmp_path.
    holder = subprocess.Popen(
        [sys.executable, "-c", KILLED, str(tmp_path / "services.yaml")],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    frontdoor_pid = int(holder.stdout.readline())
    assert not gone(frontdoor_pid, within=0.5)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert gone(frontdoor_pid), "frontdoor outlived the process that started it"
    for pid in pids_in(services):
        assert gone(pid), f"service process {pid} outlived frontdoor"
