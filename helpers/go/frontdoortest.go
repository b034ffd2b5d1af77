// Package frontdoortest starts frontdoor (Cloud Run's service-to-service authentication,
// emulated offline) for a Go test: Start(t, config) runs `frontdoor serve` in a fresh state
// directory on ports the OS picks, waits until it is ready, and stops it, with every
// service it started, when the test ends (t.Cleanup), passed or failed.
//
// frontdoor runs with --stop-on-stdin-close and this package holds its stdin: a test
// binary that dies without cleaning up still takes frontdoor down with it.
package frontdoortest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Frontdoor is a running frontdoor.
type Frontdoor struct {
	t          testing.TB
	binary     string
	dir        string
	configFile string
	copyBeside string
	cmd        *exec.Cmd
	stdin      io.WriteCloser
	exited     chan struct{}
	log        *os.File
	client     *http.Client
}

// Decision is one of frontdoor's recorded decisions (the fields a test usually reads;
// the dashboard shows the rest).
type Decision struct {
	Surface   string `json:"surface"`
	Allowed   bool   `json:"allowed"`
	Status    int    `json:"status"`
	Code      string `json:"code"`
	Reason    string `json:"reason"`
	Principal string `json:"principal"`
	Service   string `json:"service"`
	Method    string `json:"method"`
	Path      string `json:"path"`
}

// Addresses is the state directory's addresses.json: where every listener is.
type Addresses struct {
	Frontdoor string `json:"frontdoor"`
	Google    string `json:"google"`
	Metadata  string `json:"metadata"`
	Services  map[string]struct {
		Listen   string `json:"listen"`
		Metadata string `json:"metadata"`
	} `json:"services"`
	PID int `json:"pid"`
}

// How long a start may take, and how long a service may stay failed before the start is
// given up (frontdoor restarts it with back-off; a port taken for a moment heals).
const (
	startTimeout = 60 * time.Second
	failedFor    = 5 * time.Second
)

// Binary is the frontdoor binary: FRONTDOOR_BIN, else `frontdoor` on PATH.
func Binary() (string, error) {
	candidate := os.Getenv("FRONTDOOR_BIN")
	if candidate == "" {
		found, err := exec.LookPath("frontdoor")
		if err != nil {
			return "", fmt.Errorf("no frontdoor binary: put `frontdoor` on PATH or set FRONTDOOR_BIN to its path")
		}
		candidate = found
	}
	info, err := os.Stat(candidate)
	if err != nil || info.IsDir() || info.Mode()&0o111 == 0 {
		return "", fmt.Errorf("frontdoor binary %q is not an executable file", candidate)
	}
	return filepath.Abs(candidate)
}

// Start runs frontdoor on config, YAML text (anything with a line break) or the path of a
// services.yaml, and stops it when the test ends. A file is never changed: frontdoor runs
// a copy written beside it (so that the paths in it still resolve), removed at the end.
// A start that fails fails the test, with frontdoor's reason and the end of its log.
func Start(t testing.TB, config string) *Frontdoor {
	t.Helper()
	f, err := start(t, config)
	if err != nil {
		t.Fatalf("frontdoortest: %v", err)
	}
	return f
}

func start(t testing.TB, config string) (*Frontdoor, error) {
	binary, err := Binary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "frontdoor-test-")
	if err != nil {
		return nil, err
	}
	f := &Frontdoor{
		t:      t,
		binary: binary,
		dir:    dir,
		// Never through a proxy: the test's own environment may name one.
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}},
	}
	t.Cleanup(f.stop)
	if err := f.writeConfig(config); err != nil {
		return nil, err
	}
	if f.log, err = os.Create(filepath.Join(dir, "frontdoor.log")); err != nil {
		return nil, err
	}
	f.cmd = exec.Command(binary, "serve", "--config", f.configFile, "--state-dir", f.StateDir(),
		"--ephemeral-ports", "--stop-on-stdin-close")
	f.cmd.Stdout, f.cmd.Stderr = f.log, f.log
	f.cmd.Env = without(os.Environ(), "FRONTDOOR_STATE_DIR")
	if f.stdin, err = f.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := f.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", binary, err)
	}
	f.exited = make(chan struct{})
	go func() { _ = f.cmd.Wait(); close(f.exited) }()
	deadline := time.Now().Add(startTimeout)
	if err := f.waitForAddresses(deadline, f.exited); err != nil {
		return nil, err
	}
	if err := f.waitUntilHealthy(deadline, f.exited); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *Frontdoor) writeConfig(config string) error {
	if strings.Contains(config, "\n") {
		f.configFile = filepath.Join(f.dir, "services.yaml")
		return os.WriteFile(f.configFile, []byte(config), 0o600)
	}
	// Absolute: the test may change directory later.
	if abs, err := filepath.Abs(config); err == nil {
		config = abs
	}
	original, err := os.ReadFile(config)
	if err != nil {
		return fmt.Errorf("configuration %q is not a readable file (YAML text needs a line break): %w", config, err)
	}
	var random [6]byte
	if _, err := io.ReadFull(rand.Reader, random[:]); err != nil {
		return err
	}
	f.copyBeside = filepath.Join(filepath.Dir(config), ".frontdoor-test-"+hex.EncodeToString(random[:])+".yaml")
	if err := os.WriteFile(f.copyBeside, original, 0o600); err != nil {
		return fmt.Errorf("cannot write the copy frontdoor runs beside %q (%v); give the configuration as text instead", config, err)
	}
	f.configFile = f.copyBeside
	return nil
}

// waitForAddresses: frontdoor writes addresses.json whole (by rename) once every listener
// is bound.
func (f *Frontdoor) waitForAddresses(deadline time.Time, exited <-chan struct{}) error {
	for {
		if err := f.checkAlive(exited); err != nil {
			return err
		}
		if a, err := f.readAddresses(); err == nil && a.PID == f.cmd.Process.Pid {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("frontdoor did not bind its listeners within %v:\n%s", startTimeout, f.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUntilHealthy: every `command` service's instance is ready when /healthz answers 200.
func (f *Frontdoor) waitUntilHealthy(deadline time.Time, exited <-chan struct{}) error {
	var failingSince time.Time
	for {
		if err := f.checkAlive(exited); err != nil {
			return err
		}
		status, body, err := f.get("/healthz")
		why := strings.TrimSpace(string(body))
		if err != nil {
			why = err.Error()
		} else if status == http.StatusOK {
			return nil
		}
		if strings.Contains(why, ": failed: ") {
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > failedFor {
				return fmt.Errorf("a service did not start: %s\n%s", why, f.logTail())
			}
		} else {
			failingSince = time.Time{}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("frontdoor did not get its services ready within %v (%s):\n%s", startTimeout, why, f.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (f *Frontdoor) checkAlive(exited <-chan struct{}) error {
	select {
	case <-exited:
		return fmt.Errorf("frontdoor exited (%v) while starting:\n%s", f.cmd.ProcessState, f.logTail())
	default:
		return nil
	}
}

// stop closes frontdoor's stdin, which stops it and its services; kills it only if it
// hangs past its own drain.
func (f *Frontdoor) stop() {
	if f.exited != nil {
		_ = f.stdin.Close()
		// Its own stop lets requests drain for up to 10 s and stops its services first:
		// past this, only a hung frontdoor is left to kill.
		select {
		case <-f.exited:
		case <-time.After(30 * time.Second):
			_ = f.cmd.Process.Kill()
			<-f.exited
		}
	}
	if f.log != nil {
		_ = f.log.Close()
	}
	if f.copyBeside != "" {
		_ = os.Remove(f.copyBeside)
	}
	_ = os.RemoveAll(f.dir)
}

// StateDir is the server's state directory (its keys, its CA, addresses.json).
func (f *Frontdoor) StateDir() string { return filepath.Join(f.dir, "state") }

// ConfigFile is the configuration file frontdoor runs (a copy; Apply writes it).
func (f *Frontdoor) ConfigFile() string { return f.configFile }

// PID is frontdoor's process id.
func (f *Frontdoor) PID() int { return f.cmd.Process.Pid }

// Addresses is where every listener is now (addresses.json, rewritten at every reload).
func (f *Frontdoor) Addresses() Addresses {
	f.t.Helper()
	a, err := f.readAddresses()
	if err != nil {
		f.t.Fatalf("frontdoortest: %v", err)
	}
	return a
}

func (f *Frontdoor) readAddresses() (Addresses, error) {
	var a Addresses
	text, err := os.ReadFile(filepath.Join(f.StateDir(), "addresses.json"))
	if err != nil {
		return a, err
	}
	return a, json.Unmarshal(text, &a)
}

// Env is the environment that makes a process act as service on Cloud Run (its metadata
// server, egress proxy, CA bundle, project, K_SERVICE): `frontdoor env SERVICE --json`.
// An empty service gives the default metadata server's.
func (f *Frontdoor) Env(service string) map[string]string {
	f.t.Helper()
	args := []string{"env", "--json", "--state-dir", f.StateDir()}
	if service != "" {
		args = append(args, service)
	}
	vars := map[string]string{}
	if err := json.Unmarshal([]byte(f.cli(args...)), &vars); err != nil {
		f.t.Fatalf("frontdoortest: frontdoor env: %v", err)
	}
	return vars
}

// Environ is os.Environ() with Env(service) over it, for an exec.Cmd's Env.
func (f *Frontdoor) Environ(service string) []string {
	f.t.Helper()
	vars := f.Env(service)
	env := os.Environ()
	for name := range vars {
		env = without(env, name)
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		env = append(env, name+"="+vars[name])
	}
	return env
}

// URL is the service's https://NAME-NUMBER.REGION.run.app URL.
func (f *Frontdoor) URL(service string) string {
	f.t.Helper()
	var status struct {
		Services []struct {
			Name string `json:"name"`
			URL  string `json:"url"`
		} `json:"services"`
	}
	f.getJSON("/frontdoor/v1/status", &status)
	var names []string
	for _, s := range status.Services {
		if s.Name == service {
			return s.URL
		}
		names = append(names, s.Name)
	}
	f.t.Fatalf("frontdoortest: no service %q in the running configuration (services: %s)", service, strings.Join(names, ", "))
	return ""
}

// Token is an ID token for serviceAccount with audience (gcloud's default audience if
// empty), as `frontdoor token` mints it.
func (f *Frontdoor) Token(serviceAccount, audience string) string {
	f.t.Helper()
	args := []string{"token", "--config", f.configFile, "--state-dir", f.StateDir(),
		"--impersonate-service-account", serviceAccount}
	if audience != "" {
		args = append(args, "--audiences", audience)
	}
	return strings.TrimSpace(f.cli(args...))
}

// Decisions are the recent decisions of surface ("frontdoor", "iamcredentials", …; all
// if empty), oldest first.
func (f *Frontdoor) Decisions(surface string) []Decision {
	f.t.Helper()
	path := "/frontdoor/v1/decisions"
	if surface != "" {
		path += "?surface=" + url.QueryEscape(surface)
	}
	var answer struct {
		Decisions []Decision `json:"decisions"`
	}
	f.getJSON(path, &answer)
	return answer.Decisions
}

// Apply replaces the configuration with config (YAML text), as a live edit of
// services.yaml would, and returns once frontdoor dealt with it (its status names the
// SHA-256 of the content it last dealt with). If frontdoor refused it, the previous text
// is put back and the error carries frontdoor's reason.
func (f *Frontdoor) Apply(config string) error {
	f.t.Helper()
	previous, err := os.ReadFile(f.configFile)
	if err != nil {
		return err
	}
	refused, err := f.writeAndWait([]byte(config))
	if err != nil || refused == "" {
		return err
	}
	if _, err := f.writeAndWait(previous); err != nil {
		return err
	}
	return fmt.Errorf("frontdoor refused the change: %s", refused)
}

// writeAndWait writes the file whole and waits for frontdoor to have dealt with it;
// returns the refusal's reason, if it was refused.
func (f *Frontdoor) writeAndWait(content []byte) (string, error) {
	tmp := f.configFile + ".new"
	if err := os.WriteFile(tmp, content, 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, f.configFile); err != nil {
		return "", err
	}
	sum := sha256.Sum256(content)
	want := hex.EncodeToString(sum[:])
	deadline := time.Now().Add(15 * time.Second)
	for {
		var status struct {
			Digest     string `json:"config_sha256"`
			LastReload *struct {
				OK    bool   `json:"ok"`
				Error string `json:"error"`
			} `json:"last_reload"`
		}
		f.getJSON("/frontdoor/v1/status", &status)
		if status.Digest == want {
			if status.LastReload != nil && !status.LastReload.OK {
				if status.LastReload.Error == "" {
					return "(frontdoor gave no reason)", nil
				}
				return status.LastReload.Error, nil
			}
			return "", nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("frontdoor did not read the change within 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log is what frontdoor wrote to stdout and stderr so far.
func (f *Frontdoor) Log() string {
	text, _ := os.ReadFile(filepath.Join(f.dir, "frontdoor.log"))
	return string(text)
}

func (f *Frontdoor) logTail() string {
	lines := strings.Split(strings.TrimRight(f.Log(), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (f *Frontdoor) get(path string) (int, []byte, error) {
	a, err := f.readAddresses()
	if err != nil {
		return 0, nil, err
	}
	response, err := f.client.Get("http://" + a.Google + path)
	if err != nil {
		return 0, nil, err
	}
	defer response.Body.Close()
	body, err := io.ReadAll(io.LimitReader(response.Body, 64<<20))
	return response.StatusCode, body, err
}

func (f *Frontdoor) getJSON(path string, into any) {
	f.t.Helper()
	status, body, err := f.get(path)
	if err != nil {
		f.t.Fatalf("frontdoortest: GET %s: %v", path, err)
	}
	if status != http.StatusOK {
		f.t.Fatalf("frontdoortest: GET %s: %d: %s", path, status, bytes.TrimSpace(body))
	}
	if err := json.Unmarshal(body, into); err != nil {
		f.t.Fatalf("frontdoortest: GET %s: %v", path, err)
	}
}

func (f *Frontdoor) cli(args ...string) string {
	f.t.Helper()
	cmd := exec.Command(f.binary, args...)
	cmd.Env = without(os.Environ(), "FRONTDOOR_STATE_DIR")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("frontdoortest: frontdoor %s: %v: %s", args[0], err, strings.TrimSpace(stderr.String()))
	}
	return string(out)
}

// without is env less the variable name.
func without(env []string, name string) []string {
	kept := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			kept = append(kept, kv)
		}
	}
	return kept
}
