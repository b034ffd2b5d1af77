// Plain Java, no library: what JAVA_TOOL_OPTIONS from `frontdoor env` alone gives the JVM.
// It asks the metadata server at its real name for an ID token (through the proxy), then
// calls the service at its run.app URL over TLS (the proxy, and the PKCS#12 trust store).
//
// usage: java Probe.java SERVICE_URL        (Java 11+ runs a single source file)
// Prints the status without a token, then with one.
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.URL;
import java.nio.charset.StandardCharsets;

public class Probe {
    public static void main(String[] args) throws Exception {
        String url = args[0];
        HttpURLConnection anonymous = (HttpURLConnection) new URL(url + "/").openConnection();
        System.out.println(anonymous.getResponseCode());

        HttpURLConnection metadata = (HttpURLConnection) new URL(
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience="
                + url).openConnection();
        metadata.setRequestProperty("Metadata-Flavor", "Google");
        String token;
        try (InputStream in = metadata.getInputStream()) {
            token = new String(in.readAllBytes(), StandardCharsets.US_ASCII);
        }

        HttpURLConnection call = (HttpURLConnection) new URL(url + "/").openConnection();
        call.setRequestProperty("Authorization", "Bearer " + token);
        System.out.println(call.getResponseCode());
    }
}
