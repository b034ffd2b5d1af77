// Google's Java library (google-cloud-pubsub), as an app uses it: create a topic and a
// subscription with the admin clients, publish five messages, receive them with a
// Subscriber (a streaming pull) and acknowledge them. The library does not read
// PUBSUB_EMULATOR_HOST itself; this follows Google's emulator guide for Java: when the
// variable is set, a plaintext channel to it and no credentials, else the defaults
// (pubsub.googleapis.com through the JVM's proxy, the metadata server's credentials).
//
// usage: PubsubProbe PROJECT TOPIC      prints {"ids", "received"} as JSON
package frontdoor;

import com.google.api.core.ApiFuture;
import com.google.api.gax.core.CredentialsProvider;
import com.google.api.gax.core.NoCredentialsProvider;
import com.google.api.gax.grpc.GrpcTransportChannel;
import com.google.api.gax.rpc.FixedTransportChannelProvider;
import com.google.api.gax.rpc.TransportChannelProvider;
import com.google.cloud.pubsub.v1.MessageReceiver;
import com.google.cloud.pubsub.v1.Publisher;
import com.google.cloud.pubsub.v1.Subscriber;
import com.google.cloud.pubsub.v1.SubscriptionAdminClient;
import com.google.cloud.pubsub.v1.SubscriptionAdminSettings;
import com.google.cloud.pubsub.v1.TopicAdminClient;
import com.google.cloud.pubsub.v1.TopicAdminSettings;
import com.google.gson.Gson;
import com.google.protobuf.ByteString;
import com.google.pubsub.v1.ProjectSubscriptionName;
import com.google.pubsub.v1.PubsubMessage;
import com.google.pubsub.v1.PushConfig;
import com.google.pubsub.v1.SubscriptionName;
import com.google.pubsub.v1.TopicName;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

public final class PubsubProbe {
  public static void main(String[] args) throws Exception {
    String project = args[0];
    String topicId = args[1];
    String emulator = System.getenv("PUBSUB_EMULATOR_HOST");
    ManagedChannel channel = null;
    TransportChannelProvider channels = null;
    CredentialsProvider credentials = null;
    if (emulator != null && !emulator.isEmpty()) {
      channel = ManagedChannelBuilder.forTarget(emulator).usePlaintext().build();
      channels = FixedTransportChannelProvider.create(GrpcTransportChannel.create(channel));
      credentials = NoCredentialsProvider.create();
    }
    TopicName topic = TopicName.of(project, topicId);
    SubscriptionName subscription = SubscriptionName.of(project, topicId + "-sub");
    TopicAdminSettings.Builder topicSettings = TopicAdminSettings.newBuilder();
    SubscriptionAdminSettings.Builder subscriptionSettings = SubscriptionAdminSettings.newBuilder();
    Publisher.Builder publisherBuilder = Publisher.newBuilder(topic);
    Subscriber.Builder subscriberBuilder;
    List<String> received = Collections.synchronizedList(new ArrayList<>());
    CountDownLatch five = new CountDownLatch(5);
    subscriberBuilder =
        Subscriber.newBuilder(
            ProjectSubscriptionName.of(project, topicId + "-sub"),
            (MessageReceiver)
                (message, consumer) -> {
                  received.add(message.getData().toStringUtf8());
                  consumer.ack();
                  five.countDown();
                });
    if (channels != null) {
      topicSettings.setTransportChannelProvider(channels).setCredentialsProvider(credentials);
      subscriptionSettings
          .setTransportChannelProvider(channels)
          .setCredentialsProvider(credentials);
      publisherBuilder.setChannelProvider(channels).setCredentialsProvider(credentials);
      subscriberBuilder.setChannelProvider(channels).setCredentialsProvider(credentials);
    }
    try (TopicAdminClient topics = TopicAdminClient.create(topicSettings.build());
        SubscriptionAdminClient subscriptions =
            SubscriptionAdminClient.create(subscriptionSettings.build())) {
      topics.createTopic(topic);
      subscriptions.createSubscription(subscription, topic, PushConfig.getDefaultInstance(), 10);
    }
    Publisher publisher = publisherBuilder.build();
    List<String> ids = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      PubsubMessage message =
          PubsubMessage.newBuilder()
              .setData(ByteString.copyFromUtf8("m" + i))
              .putAttributes("origin", "java")
              .build();
      ApiFuture<String> id = publisher.publish(message);
      ids.add(id.get(30, TimeUnit.SECONDS));
    }
    publisher.shutdown();
    publisher.awaitTermination(30, TimeUnit.SECONDS);
    Subscriber subscriber = subscriberBuilder.build();
    subscriber.startAsync().awaitRunning();
    boolean all = five.await(30, TimeUnit.SECONDS);
    subscriber.stopAsync().awaitTerminated(30, TimeUnit.SECONDS);
    if (channel != null) {
      channel.shutdownNow();
    }
    if (!all) {
      System.err.println("received only " + received);
      System.exit(1);
    }
    List<String> sorted = new ArrayList<>(received);
    Collections.sort(sorted);
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("ids", ids);
    out.put("received", sorted);
    System.out.println(new Gson().toJson(out));
    System.exit(0);
  }
}
