// Two Cloud Run services tested offline: login may call search, report may not.
//
// The test binary plays every part. frontdoor starts it as the search service
// (EXAMPLE_SERVE); the tests run it again as the caller (EXAMPLE_CALL), in the environment
// frontdoor gives login or report, where Google's idtoken library fetches an ID token from
// the metadata server, as it would on Cloud Run.
package frontdoortest_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"frontdoor.test/frontdoortest"
	"google.golang.org/api/idtoken"
)

func TestMain(m *testing.M) {
	switch {
	case os.Getenv("EXAMPLE_SERVE") != "":
		serveSearch()
	case os.Getenv("EXAMPLE_CALL") != "":
		os.Exit(call(os.Getenv("EXAMPLE_CALL")))
	}
	os.Exit(m.Run())
}

func config() string { return configWith("") }

// configWith adds env to the search service's environment (the helper's own tests use it).
func configWith(env string) string {
	self, err := os.Executable()
	if err != nil {
		panic(err)
	}
	return fmt.Sprintf(`
project: {id: shop-test, number: "123456789012", region: europe-west1}
service_accounts:
  - email: login@shop-test.iam.gserviceaccount.com
  - email: report@shop-test.iam.gserviceaccount.com
  - email: search@shop-test.iam.gserviceaccount.com
services:
  - name: search
    service_account: search@shop-test.iam.gserviceaccount.com
    command: [%q]
    env: {EXAMPLE_SERVE: "1"%s}
    iam_policy:
      bindings:
        - role: roles/run.invoker
          members: [serviceAccount:login@shop-test.iam.gserviceaccount.com]
  - name: login
    service_account: login@shop-test.iam.gserviceaccount.com
    upstream: builtin:echo
  - name: report
    service_account: report@shop-test.iam.gserviceaccount.com
    upstream: builtin:echo
`, self, env)
}

// serveSearch is the search service: 200 for every request, on Cloud Run's PORT.
func serveSearch() {
	if pids := os.Getenv("EXAMPLE_PIDS"); pids != "" {
		notePID(pids)
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "results for %s\n", r.URL)
	})
	panic(http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil))
}

// call is the caller's code as it runs on Cloud Run: an ID token for the URL from the
// metadata server, carried by the client idtoken makes.
func call(url string) int {
	client, err := idtoken.NewClient(context.Background(), url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	response, err := client.Get(url + "/search?q=boots")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	response.Body.Close()
	fmt.Println(response.StatusCode)
	return 0
}

// callAs runs the caller as service would run on Cloud Run: only its environment differs.
func callAs(t *testing.T, fd *frontdoortest.Frontdoor, service, url string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(fd.Environ(service), "EXAMPLE_CALL="+url)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the caller failed: %v", err)
	}
	status, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("the caller printed %q", out)
	}
	return status
}

func TestLoginMayCallSearch(t *testing.T) {
	fd := frontdoortest.Start(t, config())
	if got := callAs(t, fd, "login", fd.URL("search")); got != 200 {
		t.Fatalf("login → search: %d, want 200", got)
	}
}

func TestReportMayNotAndTheDecisionSaysWhy(t *testing.T) {
	fd := frontdoortest.Start(t, config())
	if got := callAs(t, fd, "report", fd.URL("search")); got != 403 {
		t.Fatalf("report → search: %d, want 403", got)
	}
	decisions := fd.Decisions("frontdoor")
	if len(decisions) == 0 {
		t.Fatal("no decision recorded")
	}
	last := decisions[len(decisions)-1]
	if last.Allowed || last.Code != "no_invoker_binding" ||
		last.Principal != "serviceAccount:report@shop-test.iam.gserviceaccount.com" {
		t.Fatalf("the last decision: %+v", last)
	}
}
