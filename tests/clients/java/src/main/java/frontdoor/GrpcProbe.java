// A gRPC client in Java: grpc-java over TLS to HOST:443 (its Netty transport), with an ID token
// for https://HOST as call credentials, MoreCallCredentials over google-auth-library's
// IdTokenCredentials (the metadata server, on Cloud Run). Messages are raw bytes (a
// marshaller of our own, no protobuf): the transport and the identity are under test. The
// JVM's proxy and trust store come from JAVA_TOOL_OPTIONS, as `frontdoor env` sets it.
//
// usage: GrpcProbe HOST CASE
//   CASE  kinds | unary | no-token
//
// Prints one JSON object: what each call answered, or its status code and description.
package frontdoor;

import com.google.auth.oauth2.GoogleCredentials;
import com.google.auth.oauth2.IdTokenCredentials;
import com.google.auth.oauth2.IdTokenProvider;
import com.google.gson.Gson;
import io.grpc.CallCredentials;
import io.grpc.CallOptions;
import io.grpc.ClientCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.auth.MoreCallCredentials;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.MetadataUtils;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

public class GrpcProbe {
    private static final String PROBE = "frontdoor.test.Probe/";

    static final MethodDescriptor.Marshaller<byte[]> RAW = new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
            return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
            try {
                return stream.readAllBytes();
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        }
    };

    static MethodDescriptor<byte[], byte[]> method(String name, MethodDescriptor.MethodType type) {
        return MethodDescriptor.<byte[], byte[]>newBuilder()
                .setType(type)
                .setFullMethodName(PROBE + name)
                .setRequestMarshaller(RAW)
                .setResponseMarshaller(RAW)
                .build();
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    public static void main(String[] args) throws Exception {
        String host = args[0];
        String which = args[1];
        ManagedChannel channel = NettyChannelBuilder.forTarget(host + ":443").build();
        CallOptions options = CallOptions.DEFAULT;
        if (!which.equals("no-token")) {
            IdTokenCredentials idTokens = IdTokenCredentials.newBuilder()
                    .setIdTokenProvider((IdTokenProvider) GoogleCredentials.getApplicationDefault())
                    .setTargetAudience("https://" + host)
                    .build();
            CallCredentials perCall = MoreCallCredentials.from(idTokens);
            options = options.withCallCredentials(perCall);
        }
        Map<String, Object> out;
        try {
            out = which.equals("kinds") ? kinds(channel, options) : unary(channel, options);
        } finally {
            channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
        }
        System.out.println(new Gson().toJson(out));
    }

    static CallOptions within(CallOptions options, long millis) {
        return options.withDeadlineAfter(millis, TimeUnit.MILLISECONDS);
    }

    static Map<String, Object> failed(StatusRuntimeException e) {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("code", e.getStatus().getCode().name());
        out.put("details", e.getStatus().getDescription());
        return out;
    }

    static Map<String, Object> unary(ManagedChannel channel, CallOptions options) {
        try {
            byte[] answer = ClientCalls.blockingUnaryCall(channel,
                    method("Unary", MethodDescriptor.MethodType.UNARY), within(options, 20_000), bytes("hello"));
            Map<String, Object> out = new LinkedHashMap<>();
            out.put("code", "OK");
            out.put("answer", new Gson().fromJson(text(answer), Map.class));
            return out;
        } catch (StatusRuntimeException e) {
            return failed(e);
        }
    }

    static Map<String, Object> kinds(ManagedChannel channel, CallOptions options) throws Exception {
        Map<String, Object> out = new LinkedHashMap<>();
        byte[] answer = ClientCalls.blockingUnaryCall(channel,
                method("Unary", MethodDescriptor.MethodType.UNARY), within(options, 20_000), bytes("hello"));
        out.put("unary", new Gson().fromJson(text(answer), Map.class));

        List<String> messages = new ArrayList<>();
        Iterator<byte[]> stream = ClientCalls.blockingServerStreamingCall(channel,
                method("ServerStream", MethodDescriptor.MethodType.SERVER_STREAMING), within(options, 20_000),
                bytes("{\"count\": 5, \"size\": 3}"));
        stream.forEachRemaining(m -> messages.add(text(m)));
        out.put("server_stream", messages);

        CompletableFuture<String> total = new CompletableFuture<>();
        ClientCall<byte[], byte[]> call = channel.newCall(
                method("ClientStream", MethodDescriptor.MethodType.CLIENT_STREAMING), within(options, 20_000));
        StreamObserver<byte[]> requests = ClientCalls.asyncClientStreamingCall(call, new StreamObserver<byte[]>() {
            public void onNext(byte[] m) { total.complete(text(m)); }
            public void onError(Throwable t) { total.completeExceptionally(t); }
            public void onCompleted() { }
        });
        for (String part : new String[] {"a".repeat(10), "b".repeat(20), "c".repeat(30)}) {
            requests.onNext(bytes(part));
        }
        requests.onCompleted();
        out.put("client_stream", total.get(20, TimeUnit.SECONDS));

        // Each message goes only once the answer to the one before has arrived.
        LinkedBlockingQueue<byte[]> echoes = new LinkedBlockingQueue<>();
        CompletableFuture<Void> ended = new CompletableFuture<>();
        ClientCall<byte[], byte[]> bidi = channel.newCall(
                method("Bidi", MethodDescriptor.MethodType.BIDI_STREAMING), within(options, 20_000));
        StreamObserver<byte[]> sends = ClientCalls.asyncBidiStreamingCall(bidi, new StreamObserver<byte[]>() {
            public void onNext(byte[] m) { echoes.add(m); }
            public void onError(Throwable t) { ended.completeExceptionally(t); }
            public void onCompleted() { ended.complete(null); }
        });
        List<String> got = new ArrayList<>();
        for (int i = 1; i <= 3; i++) {
            sends.onNext(bytes(String.valueOf(i)));
            byte[] echo = echoes.poll(20, TimeUnit.SECONDS);
            if (echo == null) {
                throw new IllegalStateException("no echo of message " + i);
            }
            got.add(text(echo));
        }
        sends.onCompleted();
        ended.get(20, TimeUnit.SECONDS);
        out.put("bidi", got);

        AtomicReference<Metadata> trailing = new AtomicReference<>();
        AtomicReference<Metadata> headers = new AtomicReference<>();
        byte[] ok = ClientCalls.blockingUnaryCall(
                io.grpc.ClientInterceptors.intercept(channel,
                        MetadataUtils.newCaptureMetadataInterceptor(headers, trailing)),
                method("Trailers", MethodDescriptor.MethodType.UNARY), within(options, 20_000), new byte[0]);
        Map<String, Object> trailers = new LinkedHashMap<>();
        trailers.put("answer", text(ok));
        trailers.put("trailing", Map.of("x-probe-trailer",
                String.valueOf(trailing.get().get(Metadata.Key.of("x-probe-trailer", Metadata.ASCII_STRING_MARSHALLER)))));
        out.put("trailers", trailers);

        try {
            ClientCalls.blockingUnaryCall(channel, method("Slow", MethodDescriptor.MethodType.UNARY),
                    within(options, 500), bytes("{\"seconds\": 5}"));
            out.put("deadline", Map.of("code", Status.Code.OK.name()));
        } catch (StatusRuntimeException e) {
            out.put("deadline", failed(e));
        }
        return out;
    }
}
