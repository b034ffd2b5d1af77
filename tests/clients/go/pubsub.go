// The Pub/Sub cell: Google's Go library (cloud.google.com/go/pubsub/v2), unmodified, as an
// app uses it: create a topic and a subscription with the admin clients, publish five
// messages, receive them with Receive (a streaming pull) and acknowledge them. Where it
// connects is the environment's business: PUBSUB_EMULATOR_HOST if set, else
// pubsub.googleapis.com through the proxy with the metadata server's credentials.
//
// usage: go-client pubsub PROJECT TOPIC
package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

func pubsubCell(ctx context.Context, project, topicID string) (map[string]any, error) {
	client, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	defer client.Close()
	topic := fmt.Sprintf("projects/%s/topics/%s", project, topicID)
	subscription := fmt.Sprintf("projects/%s/subscriptions/%s-sub", project, topicID)
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		return nil, fmt.Errorf("create topic: %w", err)
	}
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: subscription, Topic: topic}); err != nil {
		return nil, fmt.Errorf("create subscription: %w", err)
	}
	publisher := client.Publisher(topic)
	defer publisher.Stop()
	var ids []string
	for i := 0; i < 5; i++ {
		result := publisher.Publish(ctx, &pubsub.Message{Data: []byte(fmt.Sprintf("m%d", i)), Attributes: map[string]string{"origin": "go"}})
		id, err := result.Get(ctx)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		ids = append(ids, id)
	}
	var mu sync.Mutex
	var received []string
	receiveCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = client.Subscriber(subscription).Receive(receiveCtx, func(_ context.Context, m *pubsub.Message) {
		mu.Lock()
		defer mu.Unlock()
		received = append(received, string(m.Data))
		m.Ack()
		if len(received) >= 5 {
			cancel()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	sort.Strings(received)
	return map[string]any{"ids": ids, "received": received}, nil
}
