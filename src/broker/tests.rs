use std::time::Instant;

use super::*;

fn topic(name: &str) -> pb::Topic {
    pb::Topic {
        name: name.into(),
        ..Default::default()
    }
}

fn subscription(name: &str, topic: &str) -> pb::Subscription {
    pb::Subscription {
        name: name.into(),
        topic: topic.into(),
        ack_deadline_seconds: 10,
        ..Default::default()
    }
}

fn message(data: &str, key: &str) -> pb::PubsubMessage {
    pb::PubsubMessage {
        data: data.as_bytes().to_vec(),
        ordering_key: key.into(),
        ..Default::default()
    }
}

const T: &str = "projects/p/topics/t";
const S: &str = "projects/p/subscriptions/s";

fn broker() -> Broker {
    let broker = Broker::new();
    broker.create_topic(topic(T)).unwrap();
    broker
}

#[test]
fn a_subscription_gets_what_is_published_after_it_and_an_ack_removes_it() {
    let broker = broker();
    broker.publish(T, vec![message("before", "")]).unwrap();
    broker.create_subscription(subscription(S, T)).unwrap();
    broker.publish(T, vec![message("after", "")]).unwrap();
    let handed = broker.pull(S, 10, None).unwrap();
    assert_eq!(handed.len(), 1);
    assert_eq!(handed[0].message.data, b"after");
    assert_eq!(handed[0].attempt, 1);
    // Leased: not handed out again until its deadline.
    assert!(broker.pull(S, 10, None).unwrap().is_empty());
    broker.acknowledge(S, &[handed[0].ack_id.clone()]).unwrap();
    assert_eq!(broker.held().undelivered, 0);
    assert_eq!(broker.held().bytes, 0);
}

#[test]
fn a_nack_hands_the_message_out_again_and_a_stale_ack_id_is_ignored() {
    let broker = broker();
    broker.create_subscription(subscription(S, T)).unwrap();
    broker.publish(T, vec![message("m", "")]).unwrap();
    let first = broker.pull(S, 1, None).unwrap().remove(0);
    broker
        .modify_ack_deadline(S, std::slice::from_ref(&first.ack_id), 0)
        .unwrap();
    let second = broker.pull(S, 1, None).unwrap().remove(0);
    assert_eq!(second.attempt, 2);
    broker.acknowledge(S, &[first.ack_id]).unwrap();
    assert_eq!(
        broker.held().undelivered,
        1,
        "a stale ack id acknowledges nothing"
    );
    broker.acknowledge(S, &[second.ack_id]).unwrap();
    assert_eq!(broker.held().undelivered, 0);
}

#[test]
fn an_ordering_key_waits_for_the_message_before_it() {
    let broker = broker();
    let mut s = subscription(S, T);
    s.enable_message_ordering = true;
    broker.create_subscription(s).unwrap();
    broker
        .publish(
            T,
            vec![message("a1", "a"), message("a2", "a"), message("b1", "b")],
        )
        .unwrap();
    let handed: Vec<_> = broker.pull(S, 10, None).unwrap();
    let data: Vec<_> = handed.iter().map(|h| h.message.data.clone()).collect();
    assert_eq!(data, [b"a1".to_vec(), b"b1".to_vec()]);
    broker.acknowledge(S, &[handed[0].ack_id.clone()]).unwrap();
    assert_eq!(broker.pull(S, 10, None).unwrap()[0].message.data, b"a2");
}

#[test]
fn spent_messages_go_to_the_dead_letter_topic_with_their_source() {
    let broker = broker();
    let dead = "projects/p/topics/dead";
    broker.create_topic(topic(dead)).unwrap();
    broker
        .create_subscription(subscription("projects/p/subscriptions/d", dead))
        .unwrap();
    let mut s = subscription(S, T);
    s.dead_letter_policy = Some(pb::DeadLetterPolicy {
        dead_letter_topic: dead.into(),
        max_delivery_attempts: 5,
    });
    broker.create_subscription(s).unwrap();
    broker.publish(T, vec![message("m", "")]).unwrap();
    for attempt in 1..=5 {
        let handed = broker.pull(S, 1, None).unwrap().remove(0);
        assert_eq!(handed.attempt, attempt);
        broker.modify_ack_deadline(S, &[handed.ack_id], 0).unwrap();
    }
    assert!(broker.pull(S, 1, None).unwrap().is_empty());
    let dead = broker
        .pull("projects/p/subscriptions/d", 1, None)
        .unwrap()
        .remove(0);
    assert_eq!(dead.message.data, b"m");
    assert_eq!(
        dead.message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    assert_eq!(
        dead.message.attributes["CloudPubSubDeadLetterSourceSubscription"],
        "s"
    );
}

#[test]
fn a_malformed_ack_id_is_refused_and_a_deadline_out_of_range_too() {
    let broker = broker();
    broker.create_subscription(subscription(S, T)).unwrap();
    assert!(matches!(
        broker.acknowledge(S, &["nonsense".into()]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        broker.modify_ack_deadline(S, &[], 601),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_publish_past_the_limit_is_refused_whole_and_acks_make_room() {
    let mut broker = broker();
    broker.limit = 4 * (ENTRY_OVERHEAD + 1);
    broker.create_subscription(subscription(S, T)).unwrap();
    broker.publish(T, vec![message("a", ""); 3]).unwrap();
    let refused = broker.publish(T, vec![message("b", ""); 2]);
    assert!(
        matches!(refused, Err(Error::ResourceExhausted(_))),
        "{refused:?}"
    );
    assert_eq!(
        broker.held().undelivered,
        3,
        "nothing of a refused publish is kept"
    );
    let handed = broker.pull(S, 3, None).unwrap();
    let ids: Vec<String> = handed.into_iter().map(|h| h.ack_id).collect();
    broker.acknowledge(S, &ids).unwrap();
    broker.publish(T, vec![message("b", ""); 2]).unwrap();
}

#[test]
fn the_configuration_declares_what_it_names_and_takes_back_only_that() {
    use crate::config::pubsub::Pubsub;
    let broker = Broker::new();
    broker
        .create_topic(topic("projects/p/topics/by-api"))
        .unwrap();
    broker
        .create_subscription(subscription(
            "projects/p/subscriptions/api-sub",
            "projects/p/topics/by-api",
        ))
        .unwrap();
    let mut declared = Pubsub {
        backoff_divisor: 10,
        topics: vec![topic(T)],
        subscriptions: vec![subscription(S, T)],
    };
    broker.declare(&declared);
    broker.publish(T, vec![message("kept", "")]).unwrap();
    // What the API changes of a declared subscription stands while the file's does not
    // change.
    broker
        .update_subscription::<Error>(S, |s| {
            s.ack_deadline_seconds = 20;
            Ok(())
        })
        .unwrap();
    broker.declare(&declared);
    assert_eq!(broker.subscription(S).unwrap().ack_deadline_seconds, 20);
    // A changed setting in the file replaces the subscription's, its messages kept.
    declared.subscriptions[0].ack_deadline_seconds = 30;
    broker.declare(&declared);
    assert_eq!(broker.subscription(S).unwrap().ack_deadline_seconds, 30);
    assert_eq!(broker.held().undelivered, 1);
    // A name the API made first is not taken over, and so not deleted with the file's.
    let mut taken = declared.clone();
    taken
        .subscriptions
        .push(subscription("projects/p/subscriptions/api-sub", T));
    broker.declare(&taken);
    assert_eq!(
        broker
            .subscription("projects/p/subscriptions/api-sub")
            .unwrap()
            .topic,
        "projects/p/topics/by-api"
    );
    // Gone from the file: gone, bytes and all; what the API made stays.
    broker.declare(&Pubsub {
        backoff_divisor: 1,
        ..Pubsub::default()
    });
    assert!(
        broker
            .subscription("projects/p/subscriptions/api-sub")
            .is_ok()
    );
    assert!(broker.subscription(S).is_err());
    assert!(broker.topic(T).is_err());
    assert!(broker.topic("projects/p/topics/by-api").is_ok());
    assert_eq!(broker.held().bytes, 0);
}

#[test]
fn pages_follow_one_another_without_repeating() {
    let broker = Broker::new();
    for i in 0..5 {
        broker
            .create_topic(topic(&format!("projects/p/topics/t{i}")))
            .unwrap();
    }
    broker
        .create_topic(topic("projects/q/topics/other"))
        .unwrap();
    let (first, token) = broker.topics("projects/p", Page { size: 3, token: "" });
    assert_eq!(first.len(), 3);
    let (rest, end) = broker.topics(
        "projects/p",
        Page {
            size: 3,
            token: &token,
        },
    );
    assert_eq!(rest.len(), 2);
    assert!(end.is_empty());
    assert_eq!(rest[0].name, "projects/p/topics/t3");
}

#[test]
fn backoff_doubles_to_its_maximum_and_the_divisor_shortens_it() {
    let mut s = subscription(S, T);
    s.retry_policy = Some(pb::RetryPolicy {
        minimum_backoff: Some(prost_types::Duration {
            seconds: 10,
            nanos: 0,
        }),
        maximum_backoff: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
    });
    let b = Backoff::of(&s, 1);
    assert_eq!(b.after(1), Duration::from_secs(10));
    assert_eq!(b.after(3), Duration::from_secs(40));
    assert_eq!(b.after(9), Duration::from_secs(60));
    assert_eq!(Backoff::of(&s, 100).after(1), Duration::from_millis(100));
}

#[test]
fn what_the_api_made_is_kept_restored_and_adopted_once_the_file_declares_it() {
    use crate::config::pubsub::Pubsub;
    let declared = Pubsub {
        backoff_divisor: 1,
        topics: vec![topic(T)],
        subscriptions: vec![subscription(S, T)],
    };
    let broker = Broker::new();
    broker.declare(&declared);
    assert_eq!(broker.made_by_api(), MadeByApi::default());
    let before = broker.revision();
    broker.create_topic(topic("projects/p/topics/api")).unwrap();
    let api_sub = subscription("projects/p/subscriptions/api-sub", "projects/p/topics/api");
    broker.create_subscription(api_sub.clone()).unwrap();
    broker
        .update_subscription::<Error>(S, |s| {
            s.ack_deadline_seconds = 30;
            Ok(())
        })
        .unwrap();
    assert!(broker.revision() >= before + 3, "each change is counted");
    let made = broker.made_by_api();
    assert_eq!(made.topics, [topic("projects/p/topics/api")]);
    let names: Vec<&str> = made.subscriptions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["projects/p/subscriptions/api-sub", S]);

    // A restart: the file's first, then what the API made, the changed setting included.
    let again = Broker::new();
    again.declare(&declared);
    again.restore(made.clone());
    assert_eq!(again.made_by_api(), made);
    assert_eq!(again.subscription(S).unwrap().ack_deadline_seconds, 30);

    // Folded: the file declares the API's exactly, and owns them from then on.
    let mut folded = declared.clone();
    folded.topics.push(topic("projects/p/topics/api"));
    folded.subscriptions.push(api_sub);
    again.declare(&folded);
    let left = again.made_by_api();
    assert!(left.topics.is_empty());
    assert_eq!(
        left.subscriptions.len(),
        1,
        "the change to S is still the API's"
    );
    // …and takes them back when it stops declaring them.
    again.declare(&declared);
    assert!(again.topic("projects/p/topics/api").is_err());
}

#[test]
fn a_restored_subscription_whose_topic_is_gone_is_detached() {
    let broker = Broker::new();
    broker.restore(MadeByApi {
        subscriptions: vec![subscription(S, "projects/p/topics/gone")],
        ..MadeByApi::default()
    });
    assert_eq!(broker.subscription(S).unwrap().topic, DELETED_TOPIC);
}

#[test]
fn a_message_past_the_retention_is_dropped_and_its_bytes_given_back() {
    let broker = broker();
    let mut s = subscription(S, T);
    s.message_retention_duration = Some(prost_types::Duration {
        seconds: 600,
        nanos: 0,
    });
    broker.create_subscription(s).unwrap();
    broker.publish(T, vec![message("old", "")]).unwrap();
    let out = broker
        .pull(S, 1, Some(Duration::from_secs(700)))
        .unwrap()
        .remove(0);
    broker.publish(T, vec![message("old too", "")]).unwrap();
    let later = Instant::now() + Duration::from_secs(601);
    broker.store().expire(S, later, 1, broker.limit).unwrap();
    // The one out on a lease stays until it is acknowledged or its lease ends.
    assert_eq!(broker.held().undelivered, 1);
    broker.acknowledge(S, &[out.ack_id]).unwrap();
    assert_eq!(broker.held().undelivered, 0);
    assert_eq!(broker.held().bytes, 0);
}

#[test]
fn a_restart_weighs_what_the_api_kept_against_the_file_as_it_is_now() {
    use crate::config::pubsub::Pubsub;
    let declared = Pubsub {
        backoff_divisor: 1,
        topics: vec![topic(T)],
        subscriptions: vec![subscription(S, T)],
    };
    let mut labelled = topic("projects/p/topics/labelled");
    labelled.labels.insert("team".into(), "shop".into());
    let mut changed = subscription(S, T);
    changed.ack_deadline_seconds = 30;
    let made = MadeByApi {
        topics: vec![labelled.clone()],
        subscriptions: vec![changed.clone()],
        changed_from: [(S.to_owned(), subscription(S, T))].into(),
        policies: BTreeMap::new(),
    };
    let start = |file: &Pubsub| {
        let broker = Broker::new();
        broker.declare(file);
        broker.restore(made.clone());
        broker
    };
    // The file as it was: the API's change stands.
    assert_eq!(start(&declared).subscription(S).unwrap(), changed);
    // The file changed S since: the file's S.
    let mut edited = declared.clone();
    edited.subscriptions[0].enable_message_ordering = true;
    assert_eq!(
        start(&edited).subscription(S).unwrap(),
        edited.subscriptions[0]
    );
    // The file no longer declares S: it is gone, not brought back as the API's.
    let without = Pubsub {
        subscriptions: vec![],
        ..declared.clone()
    };
    let broker = start(&without);
    assert!(broker.subscription(S).is_err());
    assert!(broker.made_by_api().subscriptions.is_empty());
    // A name the API made first stays the API's, labels and all, even once the file
    // declares it otherwise; and the file does not take it back.
    let mut claims = declared.clone();
    claims.topics.push(topic("projects/p/topics/labelled"));
    let broker = start(&claims);
    assert_eq!(
        broker.topic("projects/p/topics/labelled").unwrap(),
        labelled
    );
    broker.declare(&declared);
    assert!(broker.topic("projects/p/topics/labelled").is_ok());
}
