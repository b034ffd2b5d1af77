package frontdoor.testing;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.google.api.client.http.GenericUrl;
import com.google.api.client.http.HttpRequest;
import com.google.api.client.http.javanet.NetHttpTransport;
import com.google.auth.http.HttpCredentialsAdapter;
import com.google.auth.oauth2.GoogleCredentials;
import com.google.auth.oauth2.IdTokenCredentials;
import com.google.auth.oauth2.IdTokenProvider;
import com.google.gson.JsonObject;
import com.sun.net.httpserver.HttpServer;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * Two Cloud Run services tested offline: login may call search, report may not. Each test
 * gets its own frontdoor, on ports nobody else uses, stopped after it, passed or failed.
 * The callers run as JVMs of their own, in the environment frontdoor gives login or report,
 * where Google's auth library fetches ID tokens from the metadata server as on Cloud Run.
 */
class TwoServicesTest {
    static final String JAVA = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    static final String CLASSPATH = System.getProperty("java.class.path");

    static final String CONFIG = """
        project: {id: shop-test, number: "123456789012", region: europe-west1}
        service_accounts:
          - email: login@shop-test.iam.gserviceaccount.com
          - email: report@shop-test.iam.gserviceaccount.com
          - email: search@shop-test.iam.gserviceaccount.com
        services:
          - name: search
            service_account: search@shop-test.iam.gserviceaccount.com
            command: %s
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
        """.formatted(json(List.of(JAVA, "-cp", CLASSPATH, Search.class.getName())));

    @RegisterExtension
    final FrontdoorExtension frontdoor = FrontdoorExtension.withConfig(CONFIG);

    @Test
    void loginMayCallSearch() throws Exception {
        Frontdoor fd = frontdoor.frontdoor();
        assertEquals(200, callAs(fd, "login", fd.url("search")));
    }

    @Test
    void reportMayNotAndTheDecisionSaysWhy() throws Exception {
        Frontdoor fd = frontdoor.frontdoor();
        assertEquals(403, callAs(fd, "report", fd.url("search")));
        List<JsonObject> denied = fd.decisions("frontdoor").stream()
            .filter(d -> !d.get("allowed").getAsBoolean())
            .toList();
        JsonObject last = denied.get(denied.size() - 1);
        assertEquals("no_invoker_binding", last.get("code").getAsString());
        assertEquals("serviceAccount:report@shop-test.iam.gserviceaccount.com", last.get("principal").getAsString());
    }

    /** Runs the caller as {@code service} would run on Cloud Run: only its environment differs. */
    static int callAs(Frontdoor fd, String service, String url) throws Exception {
        ProcessBuilder caller = new ProcessBuilder(JAVA, "-cp", CLASSPATH, Caller.class.getName(), url);
        caller.environment().putAll(fd.env(service));
        caller.redirectError(ProcessBuilder.Redirect.INHERIT);
        Process process = caller.start();
        String out = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
        assertEquals(0, process.waitFor(), "the caller failed");
        return Integer.parseInt(out);
    }

    /** The caller's code, as it runs on Cloud Run. */
    public static final class Caller {
        public static void main(String[] args) throws Exception {
            String url = args[0];
            GoogleCredentials adc = GoogleCredentials.getApplicationDefault();
            IdTokenCredentials credentials = IdTokenCredentials.newBuilder()
                .setIdTokenProvider((IdTokenProvider) adc)
                .setTargetAudience(url)
                .build();
            HttpRequest request = new NetHttpTransport()
                .createRequestFactory(new HttpCredentialsAdapter(credentials))
                .buildGetRequest(new GenericUrl(url + "/search?q=boots"));
            request.setThrowExceptionOnExecuteError(false);
            System.out.println(request.execute().getStatusCode());
        }
    }

    /** The search service: 200 for every request, on Cloud Run's PORT. With an argument, it
     *  appends its process id to that file (the helper's own tests check that it stops). */
    public static final class Search {
        public static void main(String[] args) throws Exception {
            if (args.length > 0) {
                java.nio.file.Files.writeString(Path.of(args[0]), ProcessHandle.current().pid() + "\n",
                    java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.APPEND);
            }
            HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", Integer.parseInt(System.getenv("PORT"))), 0);
            server.createContext("/", exchange -> {
                byte[] body = ("results for " + exchange.getRequestURI() + "\n").getBytes(StandardCharsets.UTF_8);
                exchange.sendResponseHeaders(200, body.length);
                exchange.getResponseBody().write(body);
                exchange.close();
            });
            server.start();
        }
    }

    /** A JSON array of strings, which YAML reads as a list. */
    static String json(List<String> items) {
        com.google.gson.JsonArray array = new com.google.gson.JsonArray();
        items.forEach(array::add);
        return array.toString();
    }
}
