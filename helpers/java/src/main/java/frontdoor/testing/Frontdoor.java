package frontdoor.testing;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A running frontdoor: {@code frontdoor serve} in a fresh state directory on ports the OS
 * picks, with its stdin held (--stop-on-stdin-close), so that a JVM that dies without
 * closing it still takes frontdoor down. Use it through {@link FrontdoorExtension}, or on its
 * own with try-with-resources.
 */
public final class Frontdoor implements AutoCloseable {
    private static final Duration START_TIMEOUT = Duration.ofSeconds(60);
    // How long a service may stay failed before the start is given up: frontdoor restarts
    // it with back-off, and a port taken for a moment heals on its own.
    private static final Duration FAILED_FOR = Duration.ofSeconds(5);

    private final String binary;
    private final Path dir;
    private final Path stateDir;
    private Path configFile;
    private Path copyBeside;
    private Process process;
    // Never through a proxy: the test's own environment may name one.
    private final HttpClient http = HttpClient.newBuilder()
        .proxy(HttpClient.Builder.NO_PROXY)
        .connectTimeout(Duration.ofSeconds(10))
        .build();

    private Frontdoor(String binary) throws IOException {
        this.binary = binary;
        this.dir = Files.createTempDirectory("frontdoor-test-");
        this.stateDir = dir.resolve("state");
    }

    /**
     * Starts frontdoor on {@code config}: YAML text (anything with a line break) or the path
     * of a services.yaml. A file is never changed: frontdoor runs a copy written beside it
     * (so that the paths in it still resolve), removed by {@link #close()}.
     */
    public static Frontdoor start(String config) {
        Frontdoor frontdoor;
        try {
            frontdoor = new Frontdoor(binary());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        try {
            frontdoor.run(config);
        } catch (RuntimeException | Error e) {
            frontdoor.close();
            throw e;
        }
        return frontdoor;
    }

    /** The frontdoor binary: FRONTDOOR_BIN, else {@code frontdoor} on PATH. */
    public static String binary() {
        String candidate = System.getenv("FRONTDOOR_BIN");
        if (candidate == null || candidate.isEmpty()) {
            String path = System.getenv().getOrDefault("PATH", "");
            candidate = Stream.of(path.split(File.pathSeparator))
                .filter(d -> !d.isEmpty())
                .map(d -> Path.of(d, "frontdoor"))
                .filter(p -> Files.isRegularFile(p) && Files.isExecutable(p))
                .map(Path::toString)
                .findFirst()
                .orElseThrow(() -> new FrontdoorException(
                    "no frontdoor binary: put `frontdoor` on PATH or set FRONTDOOR_BIN to its path"));
        }
        Path file = Path.of(candidate);
        if (!Files.isRegularFile(file) || !Files.isExecutable(file)) {
            throw new FrontdoorException("frontdoor binary \"" + candidate + "\" is not an executable file");
        }
        return file.toAbsolutePath().toString();
    }

    private void run(String config) {
        try {
            configFile = writeConfig(config);
            ProcessBuilder builder = new ProcessBuilder(binary, "serve", "--config", configFile.toString(),
                "--state-dir", stateDir.toString(), "--ephemeral-ports", "--stop-on-stdin-close");
            builder.environment().remove("FRONTDOOR_STATE_DIR");
            builder.redirectErrorStream(true);
            builder.redirectOutput(dir.resolve("frontdoor.log").toFile());
            process = builder.start();
        } catch (IOException e) {
            throw new FrontdoorException("cannot start frontdoor: " + e.getMessage(), e);
        }
        long deadline = System.nanoTime() + START_TIMEOUT.toNanos();
        waitForAddresses(deadline);
        waitUntilHealthy(deadline);
    }

    private Path writeConfig(String config) throws IOException {
        if (config.contains("\n")) {
            Path file = dir.resolve("services.yaml");
            Files.writeString(file, config);
            return file;
        }
        Path original = Path.of(config);
        if (!Files.isRegularFile(original)) {
            throw new FrontdoorException("configuration \"" + config + "\" is not a file (YAML text needs a line break)");
        }
        byte[] random = new byte[6];
        new SecureRandom().nextBytes(random);
        Path copy = original.toAbsolutePath().resolveSibling(".frontdoor-test-" + HexFormat.of().formatHex(random) + ".yaml");
        try {
            Files.copy(original, copy);
        } catch (IOException e) {
            throw new FrontdoorException("cannot write the copy frontdoor runs beside \"" + config + "\" ("
                + e.getMessage() + "); give the configuration as text instead", e);
        }
        copyBeside = copy;
        return copy;
    }

    // frontdoor writes addresses.json whole (by rename) once every listener is bound.
    private void waitForAddresses(long deadline) {
        while (true) {
            checkAlive();
            try {
                if (addresses().get("pid").getAsLong() == process.pid()) {
                    return;
                }
            } catch (RuntimeException notYet) {
                // Not written yet.
            }
            if (System.nanoTime() > deadline) {
                throw failed("did not bind its listeners within " + START_TIMEOUT.toSeconds() + " s");
            }
            sleep(20);
        }
    }

    // Every `command` service's instance is ready when /healthz answers 200.
    private void waitUntilHealthy(long deadline) {
        long failingSince = 0;
        while (true) {
            checkAlive();
            String why;
            try {
                HttpResponse<String> response = get("/healthz");
                if (response.statusCode() == 200) {
                    return;
                }
                why = response.body().strip();
            } catch (IOException e) {
                why = String.valueOf(e.getMessage());
            }
            if (why.contains(": failed: ")) {
                failingSince = failingSince == 0 ? System.nanoTime() : failingSince;
                if (System.nanoTime() - failingSince > FAILED_FOR.toNanos()) {
                    throw failed("could not start a service: " + why);
                }
            } else {
                failingSince = 0;
            }
            if (System.nanoTime() > deadline) {
                throw failed("did not get its services ready within " + START_TIMEOUT.toSeconds() + " s (" + why + ")");
            }
            sleep(50);
        }
    }

    private void checkAlive() {
        if (!process.isAlive()) {
            throw failed("exited (" + process.exitValue() + ") while starting");
        }
    }

    private FrontdoorException failed(String what) {
        List<String> lines = log().lines().toList();
        String tail = String.join("\n", lines.subList(Math.max(0, lines.size() - 30), lines.size()));
        return new FrontdoorException("frontdoor " + what + ":\n" + tail);
    }

    /** Stops frontdoor (and its services) and removes what it wrote. Safe to call twice. */
    @Override
    public void close() {
        if (process != null && process.isAlive()) {
            try {
                process.getOutputStream().close();
                // Its own stop drains requests for up to 10 s and stops its services first:
                // past this, only a hung frontdoor is left to kill.
                if (!process.waitFor(30, TimeUnit.SECONDS)) {
                    process.destroyForcibly().waitFor();
                }
            } catch (IOException e) {
                process.destroyForcibly();
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
        process = null;
        try {
            if (copyBeside != null) {
                Files.deleteIfExists(copyBeside);
                copyBeside = null;
            }
            if (Files.exists(dir)) {
                try (Stream<Path> all = Files.walk(dir)) {
                    for (Path p : all.sorted(Comparator.reverseOrder()).toList()) {
                        Files.deleteIfExists(p);
                    }
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** frontdoor's process id. */
    public long pid() {
        return process.pid();
    }

    /** The configuration file frontdoor runs (a copy; {@link #apply} writes it). */
    public Path configFile() {
        return configFile;
    }

    /** The state directory (keys, CA, addresses.json). */
    public Path stateDir() {
        return stateDir;
    }

    /** Where every listener is now: addresses.json, rewritten at every reload. */
    public JsonObject addresses() {
        try {
            return JsonParser.parseString(Files.readString(stateDir.resolve("addresses.json"))).getAsJsonObject();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What frontdoor wrote to stdout and stderr so far. */
    public String log() {
        try {
            return Files.readString(dir.resolve("frontdoor.log"));
        } catch (IOException e) {
            return "";
        }
    }

    /**
     * The variables that make a process act as {@code service} on Cloud Run (its metadata
     * server, egress proxy, CA bundle, JAVA_TOOL_OPTIONS, project, K_SERVICE), to put into a
     * {@link ProcessBuilder#environment()}.
     */
    public Map<String, String> env(String service) {
        List<String> args = new ArrayList<>(List.of("env", "--json", "--state-dir", stateDir.toString()));
        if (service != null) {
            args.add(service);
        }
        Map<String, String> vars = new LinkedHashMap<>();
        JsonParser.parseString(cli(args)).getAsJsonObject().entrySet()
            .forEach(e -> vars.put(e.getKey(), e.getValue().getAsString()));
        return vars;
    }

    /** The service's https://NAME-NUMBER.REGION.run.app URL. */
    public String url(String service) {
        List<String> names = new ArrayList<>();
        for (JsonElement s : status().getAsJsonArray("services")) {
            String name = s.getAsJsonObject().get("name").getAsString();
            if (name.equals(service)) {
                return s.getAsJsonObject().get("url").getAsString();
            }
            names.add(name);
        }
        throw new FrontdoorException("no service \"" + service + "\" in the running configuration (services: "
            + String.join(", ", names) + ")");
    }

    /** An ID token for a service account, for {@code audience}, as {@code frontdoor token} mints it. */
    public String token(String serviceAccount, String audience) {
        return cli(List.of("token", "--config", configFile.toString(), "--state-dir", stateDir.toString(),
            "--impersonate-service-account", serviceAccount, "--audiences", audience)).strip();
    }

    /** The recent decisions of {@code surface} (all if null), oldest first: each has
     *  {@code allowed}, {@code status}, {@code code}, {@code reason}, {@code principal}. */
    public List<JsonObject> decisions(String surface) {
        String path = "/frontdoor/v1/decisions";
        if (surface != null) {
            path += "?surface=" + URLEncoder.encode(surface, StandardCharsets.UTF_8);
        }
        List<JsonObject> all = new ArrayList<>();
        JsonArray decisions = getJson(path).getAsJsonArray("decisions");
        decisions.forEach(d -> all.add(d.getAsJsonObject()));
        return all;
    }

    /** The running server's status: generation, services, last reload. */
    public JsonObject status() {
        return getJson("/frontdoor/v1/status");
    }

    /**
     * A live edit: replaces the configuration with {@code config} (YAML text) and returns once
     * frontdoor dealt with it. If frontdoor refused it, the previous text is put back and a
     * {@link FrontdoorException} carries frontdoor's reason.
     */
    public void apply(String config) {
        try {
            byte[] previous = Files.readAllBytes(configFile);
            JsonObject last = writeAndWait(config.getBytes(StandardCharsets.UTF_8));
            if (last != null && !last.get("ok").getAsBoolean()) {
                writeAndWait(previous);
                throw new FrontdoorException("frontdoor refused the change: " + last.get("error").getAsString());
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private JsonObject writeAndWait(byte[] content) throws IOException {
        Path tmp = Path.of(configFile + ".new");
        Files.write(tmp, content);
        Files.move(tmp, configFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        String digest;
        try {
            digest = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(content));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        long deadline = System.nanoTime() + Duration.ofSeconds(15).toNanos();
        while (true) {
            JsonObject status = status();
            JsonElement handled = status.get("config_sha256");
            if (handled != null && !handled.isJsonNull() && handled.getAsString().equals(digest)) {
                JsonElement last = status.get("last_reload");
                return last == null || last.isJsonNull() ? null : last.getAsJsonObject();
            }
            if (System.nanoTime() > deadline) {
                throw new FrontdoorException("frontdoor did not read the change within 15 s");
            }
            sleep(50);
        }
    }

    private HttpResponse<String> get(String path) throws IOException {
        String google = addresses().get("google").getAsString();
        HttpRequest request = HttpRequest.newBuilder(URI.create("http://" + google + path))
            .timeout(Duration.ofSeconds(10))
            .build();
        try {
            return http.send(request, HttpResponse.BodyHandlers.ofString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    private JsonObject getJson(String path) {
        try {
            HttpResponse<String> response = get(path);
            if (response.statusCode() != 200) {
                throw new FrontdoorException("GET " + path + ": " + response.statusCode() + ": " + response.body().strip());
            }
            return JsonParser.parseString(response.body()).getAsJsonObject();
        } catch (IOException e) {
            throw new FrontdoorException("GET " + path + ": " + e.getMessage(), e);
        }
    }

    private String cli(List<String> args) {
        List<String> command = new ArrayList<>();
        command.add(binary);
        command.addAll(args);
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().remove("FRONTDOOR_STATE_DIR");
        try {
            Process cli = builder.start();
            try (OutputStream in = cli.getOutputStream()) {
                // Nothing to say to it.
            }
            byte[] out = cli.getInputStream().readAllBytes();
            byte[] err = cli.getErrorStream().readAllBytes();
            if (cli.waitFor() != 0) {
                String why = new String(err.length > 0 ? err : out, StandardCharsets.UTF_8).strip();
                throw new FrontdoorException("frontdoor " + args.get(0) + ": " + why);
            }
            return new String(out, StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new FrontdoorException("frontdoor " + args.get(0) + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new FrontdoorException("interrupted", e);
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new FrontdoorException("interrupted", e);
        }
    }
}
