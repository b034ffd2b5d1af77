package frontdoor.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;

/**
 * The helper's own tests: live changes and refusals, and that no frontdoor or service process
 * outlives its test, even when the test fails, runs beside another suite of the same
 * configuration, or its JVM is killed. The last two run JVMs of their own
 * ({@link RunSuite}, {@link Hold}).
 */
class LifecycleTest {
    static final String LOGIN = "serviceAccount:login@helper-test.iam.gserviceaccount.com";
    static final String OTHER = "serviceAccount:search@helper-test.iam.gserviceaccount.com";

    static String config(List<String> invokers, Path pidFile) {
        List<String> command = new ArrayList<>(List.of(TwoServicesTest.JAVA, "-cp", TwoServicesTest.CLASSPATH,
            TwoServicesTest.Search.class.getName()));
        if (pidFile != null) {
            command.add(pidFile.toString());
        }
        return """
            project: {id: helper-test, number: "123456789012", region: europe-west1}
            service_accounts:
              - email: login@helper-test.iam.gserviceaccount.com
              - email: search@helper-test.iam.gserviceaccount.com
            services:
              - name: search
                service_account: search@helper-test.iam.gserviceaccount.com
                command: %s
                iam_policy:
                  bindings:
                    - role: roles/run.invoker
                      members: %s
              - name: login
                service_account: login@helper-test.iam.gserviceaccount.com
                upstream: builtin:echo
            """.formatted(TwoServicesTest.json(command), TwoServicesTest.json(invokers));
    }

    // The front door's answer to a call with `token`, through login's egress proxy.
    static int statusOf(Frontdoor fd, String token, String url) throws Exception {
        ProcessBuilder curl = new ProcessBuilder("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
            "-H", "Authorization: Bearer " + token, url);
        curl.environment().putAll(fd.env("login"));
        Process process = curl.start();
        String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertEquals(0, process.waitFor());
        return Integer.parseInt(out);
    }

    @Test
    void aChangeAppliedLiveTakesEffectAndARefusedOneIsPutBack() throws Exception {
        try (Frontdoor fd = Frontdoor.start(config(List.of(OTHER), null))) {
            String url = fd.url("search");
            String token = fd.token("login@helper-test.iam.gserviceaccount.com", url);
            assertEquals(403, statusOf(fd, token, url));
            fd.apply(config(List.of(LOGIN), null));
            assertEquals(200, statusOf(fd, token, url));
            FrontdoorException refused = assertThrows(FrontdoorException.class,
                () -> fd.apply(config(List.of(LOGIN), null).replace("roles/run.invoker", "roles/run.invokers")));
            assertTrue(refused.getMessage().contains("roles/run.invokers"), refused.getMessage());
            assertEquals(config(List.of(LOGIN), null), Files.readString(fd.configFile()));
            assertEquals(200, statusOf(fd, token, url));
        }
    }

    @Test
    void unknownNamesAndARefusedStartAreReportedInFrontdoorsWords() {
        try (Frontdoor fd = Frontdoor.start(config(List.of(LOGIN), null))) {
            FrontdoorException e = assertThrows(FrontdoorException.class, () -> fd.url("serch"));
            assertTrue(e.getMessage().contains("no service \"serch\"") && e.getMessage().contains("search, login"), e.getMessage());
            e = assertThrows(FrontdoorException.class, () -> fd.decisions("frontdoorr"));
            assertTrue(e.getMessage().contains("400") && e.getMessage().contains("frontdoorr"), e.getMessage());
        }
        FrontdoorException e = assertThrows(FrontdoorException.class,
            () -> Frontdoor.start(config(List.of(LOGIN), null).replace("helper-test,", "x,")));
        assertTrue(e.getMessage().contains("project id `x`"), e.getMessage());
        e = assertThrows(FrontdoorException.class, () -> Frontdoor.start("/no/such/services.yaml"));
        assertTrue(e.getMessage().contains("is not a file"), e.getMessage());
    }

    @Test
    void aFileRunsFromACopyBesideItThatCloseRemoves(@TempDir Path dir) throws Exception {
        Path original = dir.resolve("services.yaml");
        Files.writeString(original, config(List.of(LOGIN), null));
        try (Frontdoor fd = Frontdoor.start(original.toString())) {
            assertEquals(dir, fd.configFile().getParent());
            assertNotEquals(original, fd.configFile());
        }
        try (Stream<Path> left = Files.list(dir)) {
            assertEquals(List.of(original), left.toList());
        }
    }

    /** The suite the parallel test runs twice: note frontdoor's pid, wait for the other
     *  suite's, then fail. Nested, so that surefire leaves it to {@link RunSuite}. */
    static class FailingSuite {
        @org.junit.jupiter.api.extension.RegisterExtension
        final FrontdoorExtension frontdoor = FrontdoorExtension.withConfig(
            Path.of(System.getenv("FRONTDOOR_HELPER_DIR"), "services.yaml").toString());

        @Test
        void failsAfterStarting() throws Exception {
            Path pids = Path.of(System.getenv("FRONTDOOR_HELPER_DIR"), "frontdoor-pids");
            Files.writeString(pids, frontdoor.frontdoor().pid() + "\n",
                java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            long deadline = System.nanoTime() + 60_000_000_000L;
            while (pidsIn(pids).size() < 2 && System.nanoTime() < deadline) {
                Thread.sleep(50);
            }
            assertEquals(2, pidsIn(pids).size(), "the other suite's frontdoor never ran");
            throw new AssertionError("failed on purpose");
        }
    }

    /** Runs {@link FailingSuite} on the JUnit platform; exits 1 if a test failed. */
    public static final class RunSuite {
        public static void main(String[] args) {
            SummaryGeneratingListener listener = new SummaryGeneratingListener();
            LauncherFactory.create().execute(
                LauncherDiscoveryRequestBuilder.request().selectors(selectClass(FailingSuite.class)).build(), listener);
            listener.getSummary().printFailuresTo(new java.io.PrintWriter(System.out, true), 5);
            System.out.println("tests failed: " + listener.getSummary().getTotalFailureCount());
            System.exit(listener.getSummary().getTotalFailureCount() == 0 ? 0 : 1);
        }
    }

    static List<Long> pidsIn(Path file) throws Exception {
        return Files.readString(file).lines().filter(l -> !l.isBlank()).map(Long::parseLong).toList();
    }

    // Whether process `pid` exits within 20 s (a zombie counts as gone).
    static boolean gone(long pid) throws Exception {
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (System.nanoTime() < deadline) {
            Path stat = Path.of("/proc/" + pid + "/stat");
            String text;
            try {
                text = Files.readString(stat);
            } catch (java.io.IOException e) {
                return true;
            }
            if (text.substring(text.lastIndexOf(')') + 1).strip().startsWith("Z")) {
                return true;
            }
            Thread.sleep(50);
        }
        return false;
    }

    // Its frontdoors' temporary directories are made in dir too (java.io.tmpdir), so that what
    // a killed JVM cannot remove goes with dir.
    static ProcessBuilder jvm(Path dir, Class<?> main) {
        ProcessBuilder jvm = new ProcessBuilder(TwoServicesTest.JAVA, "-Djava.io.tmpdir=" + dir,
            "-cp", TwoServicesTest.CLASSPATH, main.getName());
        jvm.environment().put("FRONTDOOR_HELPER_DIR", dir.toString());
        jvm.redirectErrorStream(true);
        return jvm;
    }

    @Test
    void twoSuitesOfOneConfigurationSideBySideAndAFailingTestLeaveNothing(@TempDir Path dir) throws Exception {
        Path services = dir.resolve("service-pids");
        Files.writeString(dir.resolve("services.yaml"), config(List.of(LOGIN), services));
        List<CompletableFuture<String>> runs = new ArrayList<>();
        List<Process> processes = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            Process process = jvm(dir, RunSuite.class).start();
            processes.add(process);
            runs.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
                } catch (java.io.IOException e) {
                    throw new java.io.UncheckedIOException(e);
                }
            }));
        }
        for (int i = 0; i < 2; i++) {
            String output = runs.get(i).get();
            assertEquals(1, processes.get(i).waitFor(), output);
            assertTrue(output.contains("failed on purpose") && output.contains("tests failed: 1"), output);
        }
        List<Long> frontdoors = pidsIn(dir.resolve("frontdoor-pids"));
        assertEquals(2, frontdoors.stream().distinct().count());
        assertEquals(2, pidsIn(services).size());
        for (long pid : Stream.concat(frontdoors.stream(), pidsIn(services).stream()).toList()) {
            assertTrue(gone(pid), "process " + pid + " outlived its suite");
        }
        try (Stream<Path> left = Files.list(dir)) {
            assertEquals(List.of("frontdoor-pids", "service-pids", "services.yaml"),
                left.map(p -> p.getFileName().toString()).sorted().toList());
        }
    }

    /** Starts frontdoor, prints its pid, and waits to be killed. */
    public static final class Hold {
        public static void main(String[] args) throws Exception {
            Frontdoor fd = Frontdoor.start(Path.of(System.getenv("FRONTDOOR_HELPER_DIR"), "services.yaml").toString());
            System.out.println(fd.pid());
            Thread.sleep(600_000);
        }
    }

    @Test
    void aJvmKilledOutrightStillTakesFrontdoorAndItsServicesDown(@TempDir Path dir) throws Exception {
        Path services = dir.resolve("service-pids");
        Files.writeString(dir.resolve("services.yaml"), config(List.of(LOGIN), services));
        Process holder = jvm(dir, Hold.class).start();
        try {
            String line = new BufferedReader(new InputStreamReader(holder.getInputStream(), StandardCharsets.UTF_8)).readLine();
            long pid = Long.parseLong(String.valueOf(line).strip());
            assertTrue(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false),
                "frontdoor was not running before the kill");
            holder.destroyForcibly().waitFor();
            assertTrue(gone(pid), "frontdoor outlived the JVM that started it");
        } finally {
            holder.destroyForcibly();
        }
        for (long service : pidsIn(services)) {
            assertTrue(gone(service), "service " + service + " outlived frontdoor");
        }
    }
}
