// The helper's own tests: live changes and refusals, and that no frontdoor or service
// process outlives its test, even when the test fails, runs beside another suite of the
// same configuration, or is killed. The last two run this test binary again, as a suite
// of its own (FRONTDOOR_HELPER_SUITE names what it is to do).
package frontdoortest_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"frontdoor.test/frontdoortest"
)

func TestAChangeAppliedLiveTakesEffectAndARefusedOneIsPutBack(t *testing.T) {
	fd := frontdoortest.Start(t, config())
	url := fd.URL("search")
	if got := callAs(t, fd, "report", url); got != 403 {
		t.Fatalf("report → search before: %d", got)
	}
	bad := strings.Replace(config(), "roles/run.invoker", "roles/run.invokers", 1)
	err := fd.Apply(bad)
	if err == nil || !strings.Contains(err.Error(), "roles/run.invokers") {
		t.Fatalf("a refused change: %v", err)
	}
	if text, _ := os.ReadFile(fd.ConfigFile()); string(text) != config() {
		t.Fatalf("the previous text is not back:\n%s", text)
	}
	grant := strings.Replace(config(), "members: [serviceAccount:login@",
		"members: [serviceAccount:report@shop-test.iam.gserviceaccount.com, serviceAccount:login@", 1)
	if err := fd.Apply(grant); err != nil {
		t.Fatal(err)
	}
	if got := callAs(t, fd, "report", url); got != 200 {
		t.Fatalf("report → search after the grant: %d", got)
	}
	// A token frontdoor mints for login is one the front door lets in, through login's
	// egress proxy.
	token := fd.Token("login@shop-test.iam.gserviceaccount.com", url)
	curl := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
		"-H", "Authorization: Bearer "+token, url)
	curl.Env = fd.Environ("login")
	if out, err := curl.Output(); err != nil || string(out) != "200" {
		t.Fatalf("a minted token: %s %v", out, err)
	}
}

func TestAFileRunsFromACopyBesideItThatTheEndRemoves(t *testing.T) {
	dir := t.TempDir()
	original := filepath.Join(dir, "services.yaml")
	if err := os.WriteFile(original, []byte(config()), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("inner", func(t *testing.T) {
		fd := frontdoortest.Start(t, original)
		if filepath.Dir(fd.ConfigFile()) != dir || fd.ConfigFile() == original {
			t.Fatalf("runs %s", fd.ConfigFile())
		}
	})
	entries, _ := os.ReadDir(dir)
	// Only the configuration itself.
	if len(entries) != 1 || entries[0].Name() != "services.yaml" {
		t.Fatalf("left beside it: %v", entries)
	}
}

func notePID(file string) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		panic(err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	f.Close()
}

func pidsIn(t *testing.T, file string) []int {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, field := range strings.Fields(string(text)) {
		pid, err := strconv.Atoi(field)
		if err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	return pids
}

// gone: whether process pid exits within 20 s (a zombie counts as gone).
func gone(pid int) bool {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 0 && fields[0] == "Z" {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// suite runs this test binary again as a suite of its own, running test `name`.
// Its frontdoors' temporary directories are made in dir too (TMPDIR), so that what a
// killed suite cannot remove goes with dir.
func suite(name, mode, dir string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+name+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FRONTDOOR_HELPER_SUITE="+mode, "FRONTDOOR_HELPER_DIR="+dir, "TMPDIR="+dir)
	return cmd
}

// The suite the parallel test runs twice: note frontdoor's pid, wait for the other
// suite's, then fail. Outside that suite it has nothing to do.
func TestHelperSuiteThatFails(t *testing.T) {
	if os.Getenv("FRONTDOOR_HELPER_SUITE") != "fail" {
		return
	}
	dir := os.Getenv("FRONTDOOR_HELPER_DIR")
	fd := frontdoortest.Start(t, filepath.Join(dir, "services.yaml"))
	frontdoors := filepath.Join(dir, "frontdoor-pids")
	f, _ := os.OpenFile(frontdoors, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	fmt.Fprintf(f, "%d\n", fd.PID())
	f.Close()
	deadline := time.Now().Add(60 * time.Second)
	for len(pidsIn(t, frontdoors)) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if len(pidsIn(t, frontdoors)) != 2 {
		t.Fatal("the other suite's frontdoor never ran")
	}
	t.Fatal("failed on purpose")
}

func TestTwoSuitesOfOneConfigurationSideBySideAndAFailingTestLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	services := filepath.Join(dir, "service-pids")
	yaml := configWith(fmt.Sprintf(", EXAMPLE_PIDS: %q", services))
	if err := os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outputs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := suite("TestHelperSuiteThatFails", "fail", dir).CombinedOutput()
			outputs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] == nil || !strings.Contains(outputs[i], "failed on purpose") {
			t.Fatalf("suite %d: %v\n%s", i, errs[i], outputs[i])
		}
	}
	frontdoors := pidsIn(t, filepath.Join(dir, "frontdoor-pids"))
	servicePIDs := pidsIn(t, services)
	if len(frontdoors) != 2 || frontdoors[0] == frontdoors[1] || len(servicePIDs) != 2 {
		t.Fatalf("frontdoors %v, services %v", frontdoors, servicePIDs)
	}
	for _, pid := range append(frontdoors, servicePIDs...) {
		if !gone(pid) {
			t.Errorf("process %d outlived its suite", pid)
		}
	}
}

// The suite the kill test runs: start frontdoor, note its pid, and wait to be killed.
func TestHelperSuiteThatIsKilled(t *testing.T) {
	if os.Getenv("FRONTDOOR_HELPER_SUITE") != "hold" {
		return
	}
	dir := os.Getenv("FRONTDOOR_HELPER_DIR")
	fd := frontdoortest.Start(t, filepath.Join(dir, "services.yaml"))
	fmt.Printf("frontdoor %d\n", fd.PID())
	time.Sleep(10 * time.Minute)
}

func TestATestBinaryKilledOutrightStillTakesFrontdoorAndItsServicesDown(t *testing.T) {
	dir := t.TempDir()
	services := filepath.Join(dir, "service-pids")
	yaml := configWith(fmt.Sprintf(", EXAMPLE_PIDS: %q", services))
	if err := os.WriteFile(filepath.Join(dir, "services.yaml"), []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	holder := suite("TestHelperSuiteThatIsKilled", "hold", dir)
	out, err := holder.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill() })
	var pid int
	if _, err := fmt.Fscanf(out, "frontdoor %d\n", &pid); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("frontdoor was not running before the kill: %v", err)
	}
	_ = holder.Process.Signal(syscall.SIGKILL)
	_ = holder.Wait()
	if !gone(pid) {
		t.Fatal("frontdoor outlived the test binary that started it")
	}
	for _, service := range pidsIn(t, services) {
		if !gone(service) {
			t.Errorf("service process %d outlived frontdoor", service)
		}
	}
}

func TestAMissingBinaryIsNamed(t *testing.T) {
	t.Setenv("FRONTDOOR_BIN", filepath.Join(t.TempDir(), "no-such-frontdoor"))
	if _, err := frontdoortest.Binary(); err == nil || !strings.Contains(err.Error(), "not an executable file") {
		t.Fatalf("%v", err)
	}
}
