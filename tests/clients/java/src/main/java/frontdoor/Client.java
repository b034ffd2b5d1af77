// Google's Java auth libraries, unmodified, with only `frontdoor env`'s variables set (the
// JVM's proxy and trust store come from JAVA_TOOL_OPTIONS), and GOOGLE_APPLICATION_CREDENTIALS
// where a cell reads a credentials file.
//
// usage: Client CELL SERVICE_URL CLOSED_URL
//        Client verify AUDIENCE TOKENS_FILE
//
// Prints one JSON object, read by tests/it/client_matrix.rs: a value whose key starts with
// "token" is a token the test checks; "verifiers" maps each verifier to its verdict on every
// token of TOKENS_FILE (a JSON object of name to token).
package frontdoor;

import com.google.api.client.googleapis.auth.oauth2.GoogleIdToken;
import com.google.api.client.googleapis.auth.oauth2.GoogleIdTokenVerifier;
import com.google.api.client.http.GenericUrl;
import com.google.api.client.http.HttpRequest;
import com.google.api.client.http.HttpResponse;
import com.google.api.client.http.javanet.NetHttpTransport;
import com.google.api.client.json.gson.GsonFactory;
import com.google.auth.http.HttpCredentialsAdapter;
import com.google.auth.oauth2.ComputeEngineCredentials;
import com.google.auth.oauth2.GoogleCredentials;
import com.google.auth.oauth2.IdTokenCredentials;
import com.google.auth.oauth2.IdTokenProvider;
import com.google.gson.Gson;
import com.google.gson.reflect.TypeToken;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

public class Client {
    private static final String CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform";

    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: Client CELL SERVICE_URL CLOSED_URL | verify AUDIENCE TOKENS_FILE");
            System.exit(2);
        }
        System.out.println(new Gson().toJson(run(args[0], args[1], args[2])));
    }

    static Map<String, Object> run(String cell, String url, String other) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        switch (cell) {
            case "platform": {
                GoogleCredentials adc = GoogleCredentials.getApplicationDefault();
                out.put("detected", adc instanceof ComputeEngineCredentials);
                out.put("project", adc.getProjectId());
                if (adc instanceof ComputeEngineCredentials) {
                    out.put("account", ((ComputeEngineCredentials) adc).getAccount());
                }
                return out;
            }
            case "metadata-access":
            case "external-access": {
                GoogleCredentials adc =
                    GoogleCredentials.getApplicationDefault().createScoped(List.of(CLOUD_PLATFORM));
                out.put("token", adc.refreshAccessToken().getTokenValue());
                return out;
            }
            case "metadata-id":
            case "key-file":
            case "impersonated":
            case "external-id": {
                // IdTokenCredentials takes an IdTokenProvider, which the credentials an
                // external_account file loads as (ExternalAccountCredentials) are not.
                GoogleCredentials adc = GoogleCredentials.getApplicationDefault();
                if (!(adc instanceof IdTokenProvider)) {
                    out.put("unsupported", adc.getClass().getSimpleName()
                        + " is not an IdTokenProvider, which IdTokenCredentials needs "
                        + "(oauth2_http/java/com/google/auth/oauth2/ExternalAccountCredentials.java)");
                    return out;
                }
                IdTokenCredentials credentials = idTokenCredentials(adc, url);
                credentials.refresh();
                out.put("token", credentials.getIdToken().getTokenValue());
                return out;
            }
            case "call": {
                List<Integer> statuses = new java.util.ArrayList<>();
                for (String u : List.of(url, other)) {
                    IdTokenCredentials credentials =
                        idTokenCredentials(GoogleCredentials.getApplicationDefault(), u);
                    HttpRequest request = new NetHttpTransport()
                        .createRequestFactory(new HttpCredentialsAdapter(credentials))
                        .buildGetRequest(new GenericUrl(u + "/whoami"));
                    request.setThrowExceptionOnExecuteError(false);
                    HttpResponse response = request.execute();
                    statuses.add(response.getStatusCode());
                    response.disconnect();
                }
                out.put("statuses", statuses);
                return out;
            }
            case "verify":
                return verify(url, Path.of(other));
            default:
                throw new IllegalArgumentException("unknown cell " + cell);
        }
    }

    // ID tokens from `adc`, with the email, and in the full format where the metadata server
    // makes them (the token then names the instance).
    static IdTokenCredentials idTokenCredentials(GoogleCredentials adc, String audience) {
        if (!(adc instanceof IdTokenProvider)) {
            throw new IllegalStateException(adc.getClass().getName() + " cannot give ID tokens");
        }
        return IdTokenCredentials.newBuilder()
            .setIdTokenProvider((IdTokenProvider) adc)
            .setTargetAudience(audience)
            .setOptions(List.of(IdTokenProvider.Option.FORMAT_FULL, IdTokenProvider.Option.INCLUDE_EMAIL))
            .build();
    }

    // GoogleIdTokenVerifier at its defaults: Google's certificates URL and issuers.
    static Map<String, Object> verify(String audience, Path file) throws Exception {
        Map<String, String> tokens = new Gson().fromJson(
            Files.readString(file), new TypeToken<Map<String, String>>() {}.getType());
        GoogleIdTokenVerifier verifier =
            new GoogleIdTokenVerifier.Builder(new NetHttpTransport(), GsonFactory.getDefaultInstance())
                .setAudience(List.of(audience))
                .build();
        Map<String, String> verdicts = new LinkedHashMap<>();
        for (Map.Entry<String, String> e : tokens.entrySet()) {
            String verdict;
            try {
                GoogleIdToken token = verifier.verify(e.getValue());
                verdict = token != null ? "accepted" : "refused: verify returned null";
            } catch (Exception ex) {
                verdict = "refused: " + ex.getClass().getSimpleName() + ": " + ex.getMessage();
            }
            verdicts.put(e.getKey(), verdict);
        }
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("verifiers", Map.of("GoogleIdTokenVerifier", verdicts));
        return out;
    }
}
