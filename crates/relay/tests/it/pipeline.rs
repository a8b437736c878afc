use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use switchboard_core::*;
use switchboard_relay::engine::{Connections, DeliveryOutcome, Relay, RelayConfig, Translated};
use switchboard_storage::{Keyring, MasterKey, SqlStore};
use time::OffsetDateTime;

include!("world.rs");

#[tokio::test]
async fn posts_replies_edits_reactions_and_deletes_reach_the_other_side_once() {
    let w = world().await;
    let text = RichText {
        blocks: vec![Block::Paragraph {
            inlines: vec![
                Inline::Text { text: "hi ".into() },
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("U1").unwrap(),
                        display_name: "U1".into(),
                    },
                },
                Inline::Text {
                    text: " and ".into(),
                },
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("U404").unwrap(),
                        display_name: "U404".into(),
                    },
                },
            ],
        }],
    };
    w.accept(
        &w.slack,
        event("Ev1", &w.slack_ch, posted("1700000000.000100", None, text)),
    )
    .await;
    // a redelivery of the same event is deduplicated by the inbox
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("1700000000.000100", None, RichText::plain("x")),
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert_eq!(outcomes, vec![DeliveryOutcome::Delivered]);
    let posts = w.teams_rec.posts();
    assert_eq!(posts.len(), 1);
    let Call::Post {
        channel,
        id: copy,
        reply_to,
        text,
        marker,
        mentions,
    } = &posts[0]
    else {
        unreachable!()
    };
    assert_eq!(channel, &w.teams_ch);
    assert_eq!(reply_to, &None);
    assert_eq!(
        text, "hi @Jane Doe and @unknown user",
        "matched by email; the stranger by name, never an id"
    );
    assert_eq!(
        mentions,
        &vec!["0b9e3b7f-0000-4000-8000-0000000000a1".to_owned()]
    );
    assert!(marker.as_deref().unwrap().starts_with("sb1."));
    let copy_rec = w
        .store
        .find_message_copy(&w.org, &w.teams_ch, &MessageId::new(copy.clone()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copy_rec.posted_by, Some(PostingIdentity::ServiceAccount));

    // our copy coming back from Teams is not relayed again
    let teams_conn = w
        .store
        .list_connections(&w.org)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.platform == PlatformKind::Msteams)
        .unwrap()
        .id;
    w.accept(
        &teams_conn,
        event("g1", &w.teams_ch, posted(copy, None, RichText::plain("hi"))),
    )
    .await;
    // a reply in the thread goes under the copy of its root
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            posted(
                "1700000000.000200",
                Some("1700000000.000100"),
                RichText::plain("a reply"),
            ),
        ),
    )
    .await;
    // an edit, a reaction and a delete of the origin
    w.accept(
        &w.slack,
        event(
            "Ev3",
            &w.slack_ch,
            EventKind::Edited {
                message: MessageId::new("1700000000.000100").unwrap(),
                content: PortableMessage {
                    sender: sender(),
                    text: RichText::plain("edited"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ev4",
            &w.slack_ch,
            EventKind::ReactionAdded {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U1").unwrap(),
                emoji: Emoji::Unicode {
                    value: "👍".into(),
                    name: Some("+1".into()),
                },
            },
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ev5",
            &w.slack_ch,
            EventKind::Deleted {
                message: MessageId::new("1700000000.000100").unwrap(),
            },
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered),
        "{outcomes:?}"
    );
    let calls = w.teams_rec.calls();
    assert_eq!(calls.len(), 7, "{calls:#?}");
    match &calls[1] {
        Call::Post { reply_to, text, .. } => {
            assert_eq!(reply_to.as_deref(), Some(copy.as_str()));
            assert_eq!(text, "a reply");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls[2],
        Call::Edit {
            id: copy.clone(),
            text: "edited".into(),
            by: PostingIdentity::ServiceAccount
        }
    );
    assert_eq!(
        calls[3],
        Call::React {
            id: copy.clone(),
            change: ReactionChange::Add
        }
    );
    // who reacted, in a note under the copy (the service account's reaction cannot say)
    let note = match &calls[4] {
        Call::Post {
            id, reply_to, text, ..
        } => {
            assert_eq!(reply_to.as_deref(), Some(copy.as_str()));
            assert_eq!(text, "Reactions: 👍 Jane Doe");
            id.clone()
        }
        other => panic!("{other:?}"),
    };
    // the delete reaches the copy and its note
    assert_eq!(calls[5], Call::Delete { id: copy.clone() });
    assert_eq!(calls[6], Call::Delete { id: note });
    assert!(
        w.slack_rec.calls().is_empty(),
        "nothing echoed back to Slack"
    );
}

#[tokio::test]
async fn transient_failures_are_retried_and_permanent_ones_dead_lettered() {
    let w = world().await;
    w.teams_rec.fail_posts.lock().extend([
        Error::new(
            ErrorKind::RateLimited {
                retry_after: Some(Duration::ZERO),
            },
            "slow down",
        ),
        Error::upstream("503 from Graph"),
    ]);
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("1.000100", None, RichText::plain("one")),
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            posted("1.000200", None, RichText::plain("two")),
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert!(
        matches!(outcomes[0], DeliveryOutcome::Retried { .. }),
        "{outcomes:?}"
    );
    assert!(matches!(outcomes[1], DeliveryOutcome::Retried { .. }));
    let texts: Vec<String> = w
        .teams_rec
        .posts()
        .into_iter()
        .map(|c| match c {
            Call::Post { text, .. } => text,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        texts,
        ["one", "two"],
        "delivered once each, in origin order"
    );

    w.teams_rec
        .fail_posts
        .lock()
        .push(Error::new(ErrorKind::Forbidden, "removed from the team"));
    w.accept(
        &w.slack,
        event(
            "Ev3",
            &w.slack_ch,
            posted("1.000300", None, RichText::plain("three")),
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ev4",
            &w.slack_ch,
            posted("1.000400", None, RichText::plain("four")),
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert!(
        matches!(outcomes[0], DeliveryOutcome::Failed { .. }),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        DeliveryOutcome::Delivered,
        "a dead letter does not block the channel"
    );
    assert_eq!(w.teams_rec.posts().len(), 3);
}

fn post_text(c: &Call) -> &str {
    match c {
        Call::Post { text, .. } | Call::Edit { text, .. } => text,
        _ => "",
    }
}

fn by(id: &str) -> Sender {
    Sender {
        user: UserId::new(id).unwrap(),
        ..sender()
    }
}

fn reaction(n: &str, ts: &str, user: &str, emoji: &Emoji, add: bool) -> Inbound {
    let message = MessageId::new(ts).unwrap();
    let user = UserId::new(user).unwrap();
    let emoji = emoji.clone();
    let kind = if add {
        EventKind::ReactionAdded {
            message,
            user,
            emoji,
        }
    } else {
        EventKind::ReactionRemoved {
            message,
            user,
            emoji,
        }
    };
    event(n, &"slack:T1/C1".parse().unwrap(), kind)
}

#[tokio::test]
async fn reactions_through_one_identity_are_counted_per_emoji_and_show_who_reacted() {
    let w = world().await;
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("5.000100", None, RichText::plain("lunch?")),
        ),
    )
    .await;
    w.settle().await;
    let copy = match &w.teams_rec.posts()[0] {
        Call::Post { id, .. } => id.clone(),
        _ => unreachable!(),
    };
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("+1".into()),
    };
    w.accept(&w.slack, reaction("R1", "5.000100", "U1", &thumbs, true))
        .await;
    w.accept(&w.slack, reaction("R2", "5.000100", "U2", &thumbs, true))
        .await;
    w.settle().await;
    // Ravi's second 👍 (another event id: Slack sends reaction events again on retries).
    w.accept(&w.slack, reaction("R3", "5.000100", "U2", &thumbs, true))
        .await;
    w.settle().await;
    let reacts = |w: &World| -> Vec<ReactionChange> {
        w.teams_rec
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::React { id, change } if id == copy => Some(change),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        reacts(&w),
        vec![ReactionChange::Add],
        "one reaction for two reactors"
    );
    let last_note = |w: &World| -> String {
        w.teams_rec
            .calls()
            .iter()
            .rev()
            .find(|c| post_text(c).starts_with("Reactions:"))
            .map(|c| post_text(c).to_owned())
            .unwrap()
    };
    assert_eq!(last_note(&w), "Reactions: 👍 Jane Doe, Ravi Rao");
    // Jane takes hers back: the reaction stays for Ravi.
    w.accept(&w.slack, reaction("R4", "5.000100", "U1", &thumbs, false))
        .await;
    w.settle().await;
    assert_eq!(reacts(&w), vec![ReactionChange::Add]);
    assert_eq!(last_note(&w), "Reactions: 👍 Ravi Rao");
    // The last reactor leaves: now it is removed.
    w.accept(&w.slack, reaction("R5", "5.000100", "U2", &thumbs, false))
        .await;
    w.settle().await;
    assert_eq!(
        reacts(&w),
        vec![ReactionChange::Add, ReactionChange::Remove]
    );
    assert_eq!(last_note(&w), "Reactions: none any more");
    // One note, posted once and edited in place.
    let note_posts = w
        .teams_rec
        .posts()
        .iter()
        .filter(|c| post_text(c).starts_with("Reactions:"))
        .count();
    assert_eq!(note_posts, 1);
    let universal = w
        .store
        .find_message_copy(&w.org, &w.teams_ch, &MessageId::new(copy.clone()).unwrap())
        .await
        .unwrap()
        .unwrap()
        .universal;
    assert!(
        w.store
            .reactions_on(&w.org, &universal, &w.teams_ch, 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        w.slack_rec.calls().is_empty(),
        "nothing echoed back to Slack"
    );
}

#[tokio::test]
async fn long_messages_are_split_and_edits_and_deletes_reach_every_part() {
    let w = world().await;
    let paragraph = "All work and no play makes Jack a dull boy. ".repeat(200);
    let text = RichText {
        blocks: (0..8)
            .map(|_| Block::Paragraph {
                inlines: vec![Inline::Text {
                    text: paragraph.clone(),
                }],
            })
            .collect(),
    };
    assert!(text.to_plain_text().len() > 70_000);
    // The third part fails once: the retry posts what is missing, nothing twice.
    w.teams_rec.fail_posts.lock().push(Error::upstream("503"));
    w.accept(
        &w.slack,
        event("Ev1", &w.slack_ch, posted("7.000100", None, text.clone())),
    )
    .await;
    let outcomes = w.settle().await;
    assert!(
        matches!(outcomes[0], DeliveryOutcome::Retried { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last(), Some(&DeliveryOutcome::Delivered));
    let posts = w.teams_rec.posts();
    assert!(posts.len() >= 3, "{} parts", posts.len());
    let mut joined = String::new();
    for (k, p) in posts.iter().enumerate() {
        let t = post_text(p);
        assert!(t.len() <= 28_000, "part {k} is {} bytes", t.len());
        let body = if k == 0 {
            t.to_owned()
        } else {
            let prefix = format!("(part {} of {})\n\n", k + 1, posts.len());
            assert!(t.starts_with(&prefix), "{:?}", &t[..40]);
            t[prefix.len()..].to_owned()
        };
        if !joined.is_empty() {
            joined.push_str("\n\n");
        }
        joined.push_str(&body);
        match p {
            Call::Post { marker, .. } => assert!(marker.is_some()),
            _ => unreachable!(),
        }
    }
    assert_eq!(joined, text.to_plain_text(), "no text lost, none repeated");
    let ids: Vec<String> = posts
        .iter()
        .map(|p| match p {
            Call::Post { id, .. } => id.clone(),
            _ => unreachable!(),
        })
        .collect();
    // Every part is a copy of the one universal message, in order.
    let first = w
        .store
        .find_message_copy(&w.org, &w.teams_ch, &MessageId::new(&ids[0]).unwrap())
        .await
        .unwrap()
        .unwrap();
    let copies: Vec<MessageCopy> = w
        .store
        .message_copies(&w.org, &first.universal)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.channel == w.teams_ch)
        .collect();
    assert_eq!(
        copies
            .iter()
            .map(|c| c.message.to_string())
            .collect::<Vec<_>>(),
        ids
    );
    assert_eq!(
        copies.iter().map(|c| c.part).collect::<Vec<_>>(),
        (0..ids.len() as u32).collect::<Vec<_>>()
    );

    // An edit to a short text: the first part says it, the others say they are gone.
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            EventKind::Edited {
                message: MessageId::new("7.000100").unwrap(),
                content: PortableMessage {
                    sender: sender(),
                    text: RichText::plain("short now"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.settle().await;
    let edits: Vec<(String, String)> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Edit { id, text, .. } => Some((id, text)),
            _ => None,
        })
        .collect();
    assert_eq!(edits.len(), ids.len());
    assert_eq!(edits[0], (ids[0].clone(), "short now".to_owned()));
    for (id, text) in &edits[1..] {
        assert!(ids.contains(id));
        assert_eq!(text, "(this part of the message was removed by an edit)");
    }
    // A delete reaches every part.
    w.accept(
        &w.slack,
        event(
            "Ev3",
            &w.slack_ch,
            EventKind::Deleted {
                message: MessageId::new("7.000100").unwrap(),
            },
        ),
    )
    .await;
    w.settle().await;
    let deleted: Vec<String> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Delete { id } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, ids);
}

#[tokio::test]
async fn a_message_queued_twice_in_a_backlog_is_posted_once() {
    // A catch-up replays posts whose live events are still queued (the catch-up leaves out
    // only posts the map knows): the same Slack message arrives under two event ids, and
    // both become deliveries. In a backlog they can fall into one combined post.
    let w = combining_world().await;
    let message = |i: u32| {
        posted(
            &format!("9.{:06}", i + 1),
            None,
            RichText::plain(format!("message {i}")),
        )
    };
    for i in 0..4u32 {
        w.accept(&w.slack, event(&format!("Ev{i}"), &w.slack_ch, message(i)))
            .await;
    }
    // Translated (not yet delivered) when the replays of 2 and 3 arrive, followed by the
    // live 4 and 5: the outbox holds 0 1 2 3 2 3 4 5, all combinable.
    while w.relay.translate_batch().await.unwrap() > 0 {}
    for i in 2..4u32 {
        w.accept(
            &w.slack,
            event(&format!("Replay{i}"), &w.slack_ch, message(i)),
        )
        .await;
    }
    for i in 4..6u32 {
        w.accept(&w.slack, event(&format!("Ev{i}"), &w.slack_ch, message(i)))
            .await;
    }
    let outcomes = w.settle().await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered),
        "{outcomes:?}"
    );
    let lines = message_lines(&w.teams_rec);
    for i in 0..6 {
        let n = lines
            .iter()
            .filter(|l| l.ends_with(&format!("message {i}")))
            .count();
        assert_eq!(n, 1, "message {i} posted {n} times: {lines:?}");
    }
    assert_eq!(w.store.outbox_pending(&w.org).await.unwrap(), 0);
}

#[tokio::test]
async fn a_backlog_is_combined_into_posts_that_keep_every_sender_in_order() {
    let w = combining_world().await;
    for i in 0..10u32 {
        let user = if i % 2 == 0 { "U1" } else { "U2" };
        let mut kind = posted(
            &format!("9.{:06}", i + 1),
            None,
            RichText::plain(format!("message {i}")),
        );
        if let EventKind::Posted { content, .. } = &mut kind {
            content.sender = by(user);
        }
        w.accept(&w.slack, event(&format!("Ev{i}"), &w.slack_ch, kind))
            .await;
    }
    let outcomes = w.settle().await;
    assert_eq!(outcomes.len(), 10);
    assert!(outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered));
    let posts = w.teams_rec.posts();
    assert!(
        posts.len() < 10 && posts.len() >= 2,
        "10 messages in {} posts",
        posts.len()
    );
    // Every message appears once, in origin order, under its sender's name.
    let all = message_lines(&w.teams_rec);
    let expected: Vec<String> = (0..10)
        .map(|i| {
            let name = if i % 2 == 0 { "Jane Doe" } else { "Ravi Rao" };
            format!("{name}: message {i}")
        })
        .collect();
    // A message posted alone (the tail, below the threshold) carries its sender in the
    // attribution the adapter adds, not in the text.
    let stripped: Vec<String> = all
        .iter()
        .map(|l| {
            if l.contains(": ") {
                l.clone()
            } else {
                let i: usize = l.trim_start_matches("message ").parse().unwrap();
                expected[i].clone()
            }
        })
        .collect();
    assert_eq!(stripped, expected);
    let combined_id = match &posts[0] {
        Call::Post { id, text, .. } => {
            assert!(
                text.starts_with("Jane Doe: message 0\n\nRavi Rao: message 1"),
                "{text}"
            );
            id.clone()
        }
        _ => unreachable!(),
    };

    // An edit of a combined message rewrites the combined post; a delete takes it out.
    w.accept(
        &w.slack,
        event(
            "Ed1",
            &w.slack_ch,
            EventKind::Edited {
                message: MessageId::new("9.000002").unwrap(),
                content: PortableMessage {
                    sender: by("U2"),
                    text: RichText::plain("message 1, edited"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ed2",
            &w.slack_ch,
            EventKind::Deleted {
                message: MessageId::new("9.000001").unwrap(),
            },
        ),
    )
    .await;
    w.settle().await;
    let edits: Vec<(String, String)> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Edit { id, text, .. } => Some((id, text)),
            _ => None,
        })
        .collect();
    assert_eq!(edits.len(), 2, "{edits:?}");
    assert!(edits.iter().all(|(id, _)| *id == combined_id));
    assert!(
        edits[0].1.contains("Ravi Rao: message 1, edited"),
        "{}",
        edits[0].1
    );
    assert!(edits[0].1.contains("Jane Doe: message 0"));
    assert!(!edits[1].1.contains("message 0"), "{}", edits[1].1);
    assert!(edits[1].1.starts_with("Ravi Rao: message 1, edited"));
    assert!(
        !w.teams_rec
            .calls()
            .iter()
            .any(|c| matches!(c, Call::Delete { .. })),
        "the combined post stays for the others"
    );
    // Every origin of the combined post is mapped: a reply to one goes under the post.
    let mut reply = posted("9.000100", Some("9.000003"), RichText::plain("a reply"));
    if let EventKind::Posted { content, .. } = &mut reply {
        content.sender = by("U1");
    }
    w.accept(&w.slack, event("Ev99", &w.slack_ch, reply)).await;
    w.settle().await;
    match w.teams_rec.posts().last().unwrap() {
        Call::Post { reply_to, text, .. } => {
            assert_eq!(reply_to.as_deref(), Some(combined_id.as_str()));
            assert_eq!(text, "a reply");
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn dead_letters_tell_the_sender_in_the_origin_thread_once_and_can_be_retried() {
    let w = world().await;
    w.teams_rec
        .fail_posts
        .lock()
        .push(Error::new(ErrorKind::Forbidden, "removed from the team"));
    // The notice itself fails too: it is dead-lettered without a notice about it.
    w.slack_rec
        .fail_posts
        .lock()
        .push(Error::new(ErrorKind::Forbidden, "not in channel"));
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("3.000100", None, RichText::plain("hello")),
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, DeliveryOutcome::Failed { .. }))
    );
    let dead = w.store.outbox_dead_letters(&w.org, None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert!(w.slack_rec.posts().is_empty());

    // Once told: the notice goes into the origin thread, naming the target and the reason.
    w.teams_rec
        .fail_posts
        .lock()
        .push(Error::new(ErrorKind::Forbidden, "removed from the team"));
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            posted("3.000200", None, RichText::plain("again")),
        ),
    )
    .await;
    w.settle().await;
    let notices = w.slack_rec.posts();
    assert_eq!(notices.len(), 1, "{notices:?}");
    match &notices[0] {
        Call::Post {
            channel,
            reply_to,
            text,
            ..
        } => {
            assert_eq!(channel, &w.slack_ch);
            assert_eq!(reply_to.as_deref(), Some("3.000200"));
            assert!(
                text.contains("could not deliver this message to #general on msteams"),
                "{text}"
            );
            assert!(text.contains("removed from the team"), "{text}");
        }
        _ => unreachable!(),
    }
    assert!(w.teams_rec.posts().is_empty());
    // A retry from the dead letters delivers it.
    let dead = w.store.outbox_dead_letters(&w.org, None, 10).await.unwrap();
    let to_teams: Vec<_> = dead.iter().filter(|d| d.target == w.teams_ch).collect();
    assert_eq!(to_teams.len(), 2);
    for d in &to_teams {
        w.store.outbox_retry_dead(&w.org, d.id).await.unwrap();
    }
    let outcomes = w.settle().await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered),
        "{outcomes:?}"
    );
    let texts: Vec<String> = w
        .teams_rec
        .posts()
        .iter()
        .map(|p| post_text(p).to_owned())
        .collect();
    assert_eq!(texts, ["hello", "again"], "in origin order");
    assert_eq!(w.store.outbox_dead_letter_count(&w.org).await.unwrap(), 1);
}

#[tokio::test]
async fn messages_per_channel_per_day_are_counted_and_the_admin_warned_near_the_cap() {
    let w = world_with(|c| {
        c.batch_threshold = None;
        c.limits.insert(
            PlatformKind::Msteams,
            switchboard_relay::limits::TargetLimits {
                max_message: 28_000,
                daily_cap: Some(10),
            },
        );
    })
    .await;
    for i in 0..12u32 {
        w.accept(
            &w.slack,
            event(
                &format!("Ev{i}"),
                &w.slack_ch,
                posted(&format!("4.{:06}", i + 1), None, RichText::plain("hi")),
            ),
        )
        .await;
    }
    w.settle().await;
    let today = OffsetDateTime::now_utc().date();
    assert_eq!(
        w.store.posted_on(&w.org, today).await.unwrap(),
        vec![(w.teams_ch.clone(), 12)]
    );
    let warnings: Vec<AuditEntry> = w
        .store
        .list_audit(&w.org, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "channel.daily_cap_near")
        .collect();
    assert_eq!(warnings.len(), 1, "once, at 90 %");
    assert_eq!(warnings[0].target, w.teams_ch.to_string());
    assert_eq!(warnings[0].details["posted"], 9);
    assert_eq!(warnings[0].details["cap"], 10);
}

#[tokio::test]
async fn copies_posted_by_the_previous_account_are_reported_not_edited_or_retried() {
    use switchboard_relay::engine::OLD_ACCOUNT_REASON;
    let w = world().await;
    let edit = |id: &str, ts: &str, text: &str| {
        event(
            id,
            &w.slack_ch,
            EventKind::Edited {
                message: MessageId::new(ts).unwrap(),
                content: PortableMessage {
                    sender: sender(),
                    text: RichText::plain(text),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        )
    };
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("4.000100", None, RichText::plain("before")),
        ),
    )
    .await;
    assert_eq!(w.settle().await, vec![DeliveryOutcome::Delivered]);
    // The Teams connection is migrated: it now acts as another account.
    *w.teams_rec.account.lock() = Some("svc2".into());
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            posted("4.000200", None, RichText::plain("after")),
        ),
    )
    .await;
    assert_eq!(w.settle().await, vec![DeliveryOutcome::Delivered]);
    let account_of = |copy: &'static str| {
        let (store, org, ch) = (w.store.clone(), w.org.clone(), w.teams_ch.clone());
        async move {
            store
                .find_message_copy(&org, &ch, &MessageId::new(copy).unwrap())
                .await
                .unwrap()
                .unwrap()
                .posted_by_account
                .map(|a| a.to_string())
        }
    };
    assert_eq!(account_of("copy-1").await.as_deref(), Some("svc"));
    assert_eq!(account_of("copy-2").await.as_deref(), Some("svc2"));

    // Edits of both and a delete of the old one: the new copy is edited, the old one is
    // reported for the edit and for the delete, never attempted.
    w.accept(&w.slack, edit("Ev3", "4.000100", "before, edited"))
        .await;
    w.accept(&w.slack, edit("Ev4", "4.000200", "after, edited"))
        .await;
    w.accept(
        &w.slack,
        event(
            "Ev5",
            &w.slack_ch,
            EventKind::Deleted {
                message: MessageId::new("4.000100").unwrap(),
            },
        ),
    )
    .await;
    let outcomes = w.settle().await;
    let to_teams: Vec<Call> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter(|c| !matches!(c, Call::Post { .. }))
        .collect();
    assert_eq!(
        to_teams,
        vec![Call::Edit {
            id: "copy-2".into(),
            text: "after, edited".into(),
            by: PostingIdentity::ServiceAccount,
        }],
        "the old copy is neither edited nor deleted"
    );
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| match o {
            DeliveryOutcome::Failed { error } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 2, "{outcomes:?}");
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, DeliveryOutcome::Retried { .. })),
        "{outcomes:?}"
    );
    // Dead letters with the reason, for the admin (console, API, metrics).
    let dead = w.store.outbox_dead_letters(&w.org, None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    for d in &dead {
        let error = d.error.as_deref().unwrap_or_default();
        assert!(error.starts_with(OLD_ACCOUNT_REASON), "{error}");
        assert!(
            error.contains("svc") && error.contains("migrated to svc2"),
            "{error}"
        );
        assert!(error.contains("only the sender"), "{error}");
    }
    // The sender is told in the origin thread, once per job.
    let notices: Vec<(Option<String>, String)> = w
        .slack_rec
        .posts()
        .into_iter()
        .filter_map(|p| match p {
            Call::Post { reply_to, text, .. } => Some((reply_to, text)),
            _ => None,
        })
        .collect();
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices
            .iter()
            .all(|(r, _)| r.as_deref() == Some("4.000100"))
    );
    assert!(
        notices
            .iter()
            .any(|(_, t)| t.contains("could not deliver an edit of this message")),
        "{notices:?}"
    );
    assert!(
        notices
            .iter()
            .any(|(_, t)| t.contains("could not deliver the deletion of this message")),
        "{notices:?}"
    );
    // Nothing is left to retry on its own.
    assert!(w.settle().await.is_empty());
    assert_eq!(w.store.outbox_pending(&w.org).await.unwrap(), 0);
}

/// Links Jane's own Teams account: stored (as the link page does) and handed to the live
/// Teams connection (as the server's pool does).
async fn link_jane(w: &World) -> UserId {
    let aad = UserId::new("0b9e3b7f-0000-4000-8000-0000000000a1").unwrap();
    w.store
        .put_linked_account(
            &w.org,
            &LinkedAccount {
                platform: PlatformKind::Msteams,
                user: aad.clone(),
                display_name: "Jane Doe".into(),
                linked_at: OffsetDateTime::now_utc(),
            },
            &Credentials {
                access_token: secrecy::SecretString::from("jane-token".to_owned()),
                refresh_token: None,
                expires_at: None,
                scopes: vec![],
            },
            Actor::System,
        )
        .await
        .unwrap();
    w.teams_rec
        .link_user(
            aad.clone(),
            Credentials {
                access_token: secrecy::SecretString::from("jane-token".to_owned()),
                refresh_token: None,
                expires_at: None,
                scopes: vec![],
            },
            Arc::new(NoSink),
        )
        .await
        .unwrap();
    aad
}

struct NoSink;

#[async_trait]
impl CredentialsSink for NoSink {
    async fn persist(&self, _: &Credentials) -> Result<()> {
        Ok(())
    }
}

fn teams_sender(id: &UserId) -> Sender {
    Sender {
        platform: PlatformKind::Msteams,
        user: id.clone(),
        display_name: "Jane Doe".into(),
        avatar_url: None,
        email: None,
    }
}

async fn teams_connection(w: &World) -> ConnectionId {
    w.store
        .list_connections(&w.org)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.platform == PlatformKind::Msteams)
        .unwrap()
        .id
}

#[tokio::test]
async fn a_linked_senders_copy_is_posted_as_them_and_their_own_edit_is_relayed() {
    let w = world().await;
    // A second Slack channel in the universal channel, so an edit made in Teams has somewhere
    // to go besides the origin.
    let slack_conn = w
        .store
        .get_connection(&w.org, &w.slack)
        .await
        .unwrap()
        .unwrap();
    let run = w.store.begin_import(&w.org, &w.slack).await.unwrap();
    w.store
        .upsert_channels(
            &w.org,
            &w.slack,
            run,
            &[Channel {
                id: ChannelId::new("C2").unwrap(),
                team: TeamId::new("T1").unwrap(),
                name: "general-2".into(),
                kind: ChannelKind::Standard,
                description: None,
            }],
        )
        .await
        .unwrap();
    let slack_c2: ChannelRef = "slack:T1/C2".parse().unwrap();
    let teams = teams_connection(&w).await;
    let old = w
        .store
        .find_universal_channel(&w.org, &w.slack_ch)
        .await
        .unwrap()
        .unwrap();
    w.store
        .delete_universal_channel(&w.org, old.id())
        .await
        .unwrap();
    let uc = UniversalChannel::new(
        UniversalChannelId::generate(),
        w.org.clone(),
        "general",
        vec![
            Endpoint {
                connection: w.slack.clone(),
                channel: w.slack_ch.clone(),
            },
            Endpoint {
                connection: teams.clone(),
                channel: w.teams_ch.clone(),
            },
            Endpoint {
                connection: slack_conn.id.clone(),
                channel: slack_c2.clone(),
            },
        ],
    )
    .unwrap();
    w.store.create_universal_channel(&uc).await.unwrap();
    let jane = link_jane(&w).await;

    // Jane (U1, matched by email, linked in Teams) and Ravi (unmatched) post in Slack.
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted(
                "1700000000.000100",
                None,
                RichText::plain("hello from slack"),
            ),
        ),
    )
    .await;
    let mut ravi = posted("1700000000.000200", None, RichText::plain("hi, Ravi here"));
    if let EventKind::Posted { content, .. } = &mut ravi {
        content.sender = by("U2");
    }
    w.accept(&w.slack, event("Ev2", &w.slack_ch, ravi)).await;
    let outcomes = w.settle().await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered),
        "{outcomes:?}"
    );
    let copy_of = |posts: &[Call], text: &str| -> MessageId {
        posts
            .iter()
            .find_map(|c| match c {
                Call::Post { id, text: t, .. } if t == text => {
                    Some(MessageId::new(id.clone()).unwrap())
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("{text:?} was not posted: {posts:#?}"))
    };
    let teams_posts = w.teams_rec.posts();
    assert_eq!(teams_posts.len(), 2, "{teams_posts:#?}");
    let jane_copy = copy_of(&teams_posts, "hello from slack");
    let ravi_copy = copy_of(&teams_posts, "hi, Ravi here");
    let posted_by = |ch: &ChannelRef, m: &MessageId| {
        let store = w.store.clone();
        let (org, ch, m) = (w.org.clone(), ch.clone(), m.clone());
        async move {
            store
                .find_message_copy(&org, &ch, &m)
                .await
                .unwrap()
                .unwrap()
                .posted_by
        }
    };
    assert_eq!(
        posted_by(&w.teams_ch, &jane_copy).await,
        Some(PostingIdentity::LinkedUser { user: jane.clone() }),
        "the linked sender's copy is posted as her"
    );
    assert_eq!(
        posted_by(&w.teams_ch, &ravi_copy).await,
        Some(PostingIdentity::ServiceAccount),
        "an unmatched sender's copy is the service account's"
    );
    // In the other Slack channel the bot posts (Slack has no linked accounts).
    let slack_posts = w.slack_rec.posts();
    assert_eq!(slack_posts.len(), 2, "{slack_posts:#?}");
    let c2_copy = copy_of(&slack_posts, "hello from slack");
    assert_eq!(
        posted_by(&slack_c2, &c2_copy).await,
        Some(PostingIdentity::ServiceAccount)
    );

    // Our copy coming back from Teams, and the echo of an edit we make as Jane, are not relayed.
    w.accept(
        &teams,
        event(
            "g1",
            &w.teams_ch,
            EventKind::Posted {
                message: jane_copy.clone(),
                content: PortableMessage {
                    sender: teams_sender(&jane),
                    text: RichText::plain("hello from slack"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.accept(
        &w.slack,
        event(
            "Ev3",
            &w.slack_ch,
            EventKind::Edited {
                message: MessageId::new("1700000000.000100").unwrap(),
                content: PortableMessage {
                    sender: sender(),
                    text: RichText::plain("hello from slack, edited"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.settle().await;
    let edits: Vec<Call> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Edit { .. }))
        .collect();
    assert_eq!(
        edits,
        vec![Call::Edit {
            id: jane_copy.to_string(),
            text: "hello from slack, edited".into(),
            by: PostingIdentity::LinkedUser { user: jane.clone() },
        }],
        "the copy posted as Jane is edited as Jane"
    );
    let slack_calls_before = w.slack_rec.calls().len();
    // Teams reports our edit (reformatted: Teams adds its own spacing and punctuation).
    w.accept(
        &teams,
        event(
            "g2",
            &w.teams_ch,
            EventKind::Edited {
                message: jane_copy.clone(),
                content: PortableMessage {
                    sender: teams_sender(&jane),
                    text: RichText::plain("Hello from Slack — edited"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.settle().await;
    assert_eq!(
        w.slack_rec.calls().len(),
        slack_calls_before,
        "the echo of our own edit went nowhere: {:#?}",
        w.slack_rec.calls()
    );

    // Jane edits the copy herself in Teams: an edit of the universal message, relayed to
    // the other Slack channel; her own Slack message (the origin) cannot be edited by the
    // bot, so the edit is shown as a reply under it.
    let native_edit = |id: &str, text: &str| {
        event(
            id,
            &w.teams_ch,
            EventKind::Edited {
                message: jane_copy.clone(),
                content: PortableMessage {
                    sender: teams_sender(&jane),
                    text: RichText::plain(text),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        )
    };
    w.accept(&teams, native_edit("g3", "fixed a typo in Teams"))
        .await;
    let outcomes = w.settle().await;
    assert_eq!(
        outcomes,
        vec![DeliveryOutcome::Delivered, DeliveryOutcome::Delivered],
        "to the other Slack channel and to the origin's"
    );
    let slack_edits: Vec<Call> = w
        .slack_rec
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Edit { .. }))
        .collect();
    assert_eq!(
        slack_edits.last(),
        Some(&Call::Edit {
            id: c2_copy.to_string(),
            text: "fixed a typo in Teams".into(),
            by: PostingIdentity::ServiceAccount,
        }),
        "{slack_edits:#?}"
    );
    let note = w
        .slack_rec
        .posts()
        .into_iter()
        .find_map(|c| match c {
            Call::Post {
                channel,
                id,
                reply_to,
                text,
                ..
            } if channel == w.slack_ch => Some((id, reply_to, text)),
            _ => None,
        })
        .expect("a reply under the origin");
    assert_eq!(note.1.as_deref(), Some("1700000000.000100"));
    assert_eq!(
        note.2,
        "Edited in Microsoft Teams:\n\nfixed a typo in Teams"
    );
    // A second edit of hers rewrites that reply rather than adding another.
    w.accept(&teams, native_edit("g3b", "fixed two typos in Teams"))
        .await;
    w.settle().await;
    assert_eq!(
        w.slack_rec
            .calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Post { channel, .. } if *channel == w.slack_ch))
            .count(),
        1,
        "still one reply under the origin"
    );
    assert!(
        w.slack_rec.calls().contains(&Call::Edit {
            id: note.0.clone(),
            text: "Edited in Microsoft Teams:\n\nfixed two typos in Teams".into(),
            by: PostingIdentity::ServiceAccount,
        }),
        "{:#?}",
        w.slack_rec.calls()
    );
    // An edit notification of a copy from someone else than the user it was posted as is
    // not taken for theirs.
    let n = w.slack_rec.calls().len();
    w.accept(
        &teams,
        event(
            "g4",
            &w.teams_ch,
            EventKind::Edited {
                message: ravi_copy.clone(),
                content: PortableMessage {
                    sender: teams_sender(&jane),
                    text: RichText::plain("not my message"),
                    attachments: vec![],
                    thread_root: None,
                },
            },
        ),
    )
    .await;
    w.settle().await;
    assert_eq!(w.slack_rec.calls().len(), n);

    // The origin deleted in Slack: its copies go, and so does the reply we left under it.
    w.accept(
        &w.slack,
        event(
            "Ev-del",
            &w.slack_ch,
            EventKind::Deleted {
                message: MessageId::new("1700000000.000100").unwrap(),
            },
        ),
    )
    .await;
    w.settle().await;
    assert!(
        w.slack_rec
            .calls()
            .contains(&Call::Delete { id: note.0.clone() }),
        "{:#?}",
        w.slack_rec.calls()
    );
    assert!(
        w.slack_rec.calls().contains(&Call::Delete {
            id: c2_copy.to_string()
        }),
        "the other Slack channel's copy"
    );
}

#[tokio::test]
async fn a_linked_reactor_reacts_as_themselves_and_the_echo_goes_nowhere() {
    let w = world().await;
    let jane = link_jane(&w).await;
    let teams = teams_connection(&w).await;
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("1700000000.000100", None, RichText::plain("react to me")),
        ),
    )
    .await;
    w.settle().await;
    let copy = match &w.teams_rec.posts()[0] {
        Call::Post { id, .. } => MessageId::new(id.clone()).unwrap(),
        other => panic!("{other:?}"),
    };
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("+1".into()),
    };
    // Jane (U1, linked in Teams) reacts in Slack: the reaction appears in Teams as hers.
    w.accept(
        &w.slack,
        event(
            "Ev2",
            &w.slack_ch,
            EventKind::ReactionAdded {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U1").unwrap(),
                emoji: thumbs.clone(),
            },
        ),
    )
    .await;
    w.settle().await;
    assert_eq!(
        *w.teams_rec.reacted_as.lock(),
        vec![PostingIdentity::LinkedUser { user: jane.clone() }]
    );
    // Teams reports that reaction back: it is ours, not relayed to Slack.
    w.accept(
        &teams,
        event(
            "g1",
            &w.teams_ch,
            EventKind::ReactionAdded {
                message: copy.clone(),
                user: jane.clone(),
                emoji: thumbs.clone(),
            },
        ),
    )
    .await;
    w.settle().await;
    assert!(
        w.slack_rec.calls().is_empty(),
        "the echo went nowhere: {:#?}",
        w.slack_rec.calls()
    );
    // Ravi (unmatched) reacts too: through the service account, with the note.
    w.accept(
        &w.slack,
        event(
            "Ev3",
            &w.slack_ch,
            EventKind::ReactionAdded {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U2").unwrap(),
                emoji: thumbs.clone(),
            },
        ),
    )
    .await;
    w.settle().await;
    assert_eq!(
        w.teams_rec.reacted_as.lock().last(),
        Some(&PostingIdentity::ServiceAccount),
        "Jane's own reaction does not stand for Ravi's"
    );
    // Jane takes hers back in Slack: removed in Teams as her.
    w.accept(
        &w.slack,
        event(
            "Ev4",
            &w.slack_ch,
            EventKind::ReactionRemoved {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U1").unwrap(),
                emoji: thumbs.clone(),
            },
        ),
    )
    .await;
    w.settle().await;
    let removes: Vec<Call> = w
        .teams_rec
        .calls()
        .into_iter()
        .filter(|c| {
            matches!(
                c,
                Call::React {
                    change: ReactionChange::Remove,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(removes.len(), 1, "{removes:#?}");
    assert_eq!(
        w.teams_rec.reacted_as.lock().last(),
        Some(&PostingIdentity::LinkedUser { user: jane.clone() })
    );
    // The live connection lost her token (an unlink racing the delivery): her next reaction
    // goes through the service account rather than failing.
    w.teams_rec.unlink_user(&jane);
    w.accept(
        &w.slack,
        event(
            "Ev5",
            &w.slack_ch,
            EventKind::ReactionAdded {
                message: MessageId::new("1700000000.000100").unwrap(),
                user: UserId::new("U1").unwrap(),
                emoji: Emoji::Unicode {
                    value: "🎉".into(),
                    name: Some("tada".into()),
                },
            },
        ),
    )
    .await;
    let outcomes = w.settle().await;
    assert_eq!(outcomes, vec![DeliveryOutcome::Delivered]);
    assert_eq!(
        w.teams_rec.reacted_as.lock().last(),
        Some(&PostingIdentity::ServiceAccount)
    );
}

#[tokio::test]
async fn the_creation_of_our_own_copy_is_not_fetched_but_its_later_changes_are() {
    let w = world().await;
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("1700000000.000100", None, RichText::plain("hello")),
        ),
    )
    .await;
    // The server's worker lingers after a batch that queued deliveries, only.
    assert_eq!(
        w.relay.translate_batch_counted().await.unwrap(),
        Translated {
            items: 1,
            deliveries: 1
        }
    );
    assert_eq!(w.settle().await, vec![DeliveryOutcome::Delivered]);
    let Call::Post { id: copy, .. } = &w.teams_rec.posts()[0] else {
        unreachable!()
    };
    let teams = w.teams_ch.clone();
    let hint = |id: &str, change: ChangeType| {
        Inbound::Changed(ChangeHint {
            event_id: id.into(),
            channel: teams.clone(),
            message: MessageId::new(copy.clone()).unwrap(),
            thread_root: None,
            change,
            received_at: OffsetDateTime::now_utc(),
        })
    };
    let teams_conn = w
        .store
        .find_universal_channel(&w.org, &w.teams_ch)
        .await
        .unwrap()
        .unwrap()
        .endpoints()
        .iter()
        .find(|e| e.channel == w.teams_ch)
        .unwrap()
        .connection
        .clone();
    // Graph's "created" notification of the copy we just posted: known as ours, not fetched
    // (a fetch spends one of the channel's 4 requests a second).
    w.store
        .inbox_accept(&w.org, &teams_conn, &hint("n1", ChangeType::Created))
        .await
        .unwrap();
    assert_eq!(
        w.relay.translate_batch_counted().await.unwrap(),
        Translated {
            items: 1,
            deliveries: 0
        },
        "our own copy's notification queues nothing (no linger after it)"
    );
    w.settle().await;
    assert!(w.teams_rec.resolved.lock().is_empty());
    // A later change of the copy (a reaction, a linked user's edit) is fetched.
    w.store
        .inbox_accept(&w.org, &teams_conn, &hint("n2", ChangeType::Updated))
        .await
        .unwrap();
    w.settle().await;
    assert_eq!(*w.teams_rec.resolved.lock(), vec![copy.clone()]);
    assert_eq!(w.slack_rec.posts().len(), 0, "nothing echoes back");
}

#[tokio::test]
async fn after_a_migration_the_reaction_note_of_the_previous_account_is_followed_by_a_new_one() {
    let w = world().await;
    w.accept(
        &w.slack,
        event(
            "Ev1",
            &w.slack_ch,
            posted("6.000100", None, RichText::plain("lunch?")),
        ),
    )
    .await;
    w.settle().await;
    let thumbs = Emoji::Unicode {
        value: "👍".into(),
        name: Some("+1".into()),
    };
    w.accept(&w.slack, reaction("R1", "6.000100", "U1", &thumbs, true))
        .await;
    assert!(
        w.settle()
            .await
            .iter()
            .all(|o| *o == DeliveryOutcome::Delivered)
    );
    let notes = |w: &World| -> Vec<String> {
        w.teams_rec
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Post { .. }) && post_text(c).starts_with("Reactions:"))
            .map(|c| post_text(c).to_owned())
            .collect()
    };
    assert_eq!(notes(&w), vec!["Reactions: 👍 Jane Doe".to_owned()]);
    // The Teams connection is migrated; the old note was posted by the previous account.
    *w.teams_rec.account.lock() = Some("svc2".into());
    w.accept(&w.slack, reaction("R2", "6.000100", "U2", &thumbs, true))
        .await;
    let outcomes = w.settle().await;
    assert!(
        outcomes.iter().all(|o| *o == DeliveryOutcome::Delivered),
        "not dead-lettered: {outcomes:?}"
    );
    assert_eq!(
        notes(&w),
        vec![
            "Reactions: 👍 Jane Doe".to_owned(),
            "Reactions: 👍 Jane Doe, Ravi Rao".to_owned()
        ],
        "a new note by the new account"
    );
    // Later changes edit the new note, not the old one.
    w.accept(&w.slack, reaction("R3", "6.000100", "U1", &thumbs, false))
        .await;
    assert!(
        w.settle()
            .await
            .iter()
            .all(|o| *o == DeliveryOutcome::Delivered)
    );
    assert_eq!(notes(&w).len(), 2);
    let last_edit = w
        .teams_rec
        .calls()
        .into_iter()
        .rev()
        .find(|c| matches!(c, Call::Edit { .. }))
        .unwrap();
    assert_eq!(post_text(&last_edit), "Reactions: 👍 Ravi Rao");
}

/// A Slack post stamped `ms` milliseconds after a fixed time (the order the platform gives).
fn post_at(n: u32, ms: i64) -> Inbound {
    let base = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    Inbound::Event(PlatformEvent {
        event_id: format!("EvOrder{n}"),
        channel: ChannelRef::new(
            PlatformKind::Slack,
            TeamId::new("T1").unwrap(),
            ChannelId::new("C1").unwrap(),
        ),
        occurred_at: base + time::Duration::milliseconds(ms),
        kind: posted(
            &format!("1700000000.{:06}", ms * 1000),
            None,
            RichText::plain(format!("message {n}")),
        ),
    })
}

#[tokio::test]
async fn a_channels_posts_reach_the_target_in_the_platforms_order_though_they_arrive_out_of_it() {
    let w = world().await;
    let texts = |w: &World| last_lines(&w.teams_rec);
    // Two posts leased together, arrived the other way round: the older goes first.
    w.accept(&w.slack, post_at(2, 200)).await;
    w.accept(&w.slack, post_at(1, 100)).await;
    w.settle().await;
    assert_eq!(texts(&w), ["message 1", "message 2"]);
    assert_eq!(w.relay.next_held(), None, "in order so far: nothing held");

    // One that arrives 150 ms late, after a newer one was relayed, cannot go before it; the
    // connection is now known to deliver out of order.
    w.accept(&w.slack, post_at(4, 400)).await;
    w.settle().await;
    w.accept(&w.slack, post_at(3, 250)).await;
    w.settle().await;
    assert_eq!(texts(&w)[2..], ["message 4", "message 3"]);

    // From then on a new post waits in the inbox for late ones (the window, from its
    // arrival): the sixth is held back, the fifth arrives after it and waits behind it, and
    // both go out in the platform's order.
    w.accept(&w.slack, post_at(6, 600)).await;
    assert_eq!(w.relay.translate_batch().await.unwrap(), 0, "held back");
    assert!(w.relay.next_held().is_some());
    w.accept(&w.slack, post_at(5, 550)).await;
    assert_eq!(
        w.relay.translate_batch().await.unwrap(),
        0,
        "behind the held one"
    );
    let outcomes = w.settle().await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert_eq!(texts(&w)[4..], ["message 5", "message 6"]);
    assert_eq!(w.store.inbox_pending(&w.org).await.unwrap(), 0);
}

#[tokio::test]
async fn after_a_failed_translation_the_rest_of_its_channel_waits_and_keeps_its_order() {
    let w = world_with(|c| c.lease = Duration::from_millis(300)).await;
    let teams_conn = teams_connection(&w).await;
    // A Graph hint whose fetch fails once (a 503), then a post behind it in the same
    // channel, and a Slack post in another channel.
    hint_then_post(&w, &teams_conn, "flaky-first").await;
    w.accept(
        &w.slack,
        event(
            "Ev-other",
            &w.slack_ch,
            posted("1700000000.000900", None, RichText::plain("other")),
        ),
    )
    .await;
    w.relay.translate_batch().await.unwrap();
    w.relay.deliver_batch().await.unwrap();
    assert!(
        w.slack_rec.posts().is_empty(),
        "nothing of the failed item's channel went ahead of it"
    );
    assert_eq!(
        w.teams_rec.posts().len(),
        1,
        "the other channel is not held up"
    );
    // After the lease both come back, in order.
    tokio::time::sleep(Duration::from_millis(350)).await;
    w.settle().await;
    let texts = last_lines(&w.slack_rec);
    assert_eq!(texts.len(), 2, "{texts:?}");
    assert!(
        texts[0].contains("first") && texts[1].contains("second"),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_failed_translation_is_retried_when_the_platform_says_not_after_the_lease() {
    // The default lease (60 s): a fetch answered 429 with Retry-After 100 ms is tried again
    // after that, with the post behind it, in order, not a minute later.
    let w = world().await;
    let teams_conn = teams_connection(&w).await;
    hint_then_post(&w, &teams_conn, "throttled-first").await;
    let failed_at = std::time::Instant::now();
    w.relay.translate_batch().await.unwrap();
    // Given back for 100 ms: not leased again before then, its channel held behind it.
    assert_eq!(w.relay.translate_batch().await.unwrap(), 0);
    let mut texts: Vec<String> = Vec::new();
    while texts.len() < 2 && failed_at.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        w.settle().await;
        texts = last_lines(&w.slack_rec);
    }
    assert!(
        failed_at.elapsed() >= Duration::from_millis(100),
        "not before the platform said"
    );
    assert_eq!(texts.len(), 2, "retried within the 60 s lease: {texts:?}");
    assert!(
        texts[0].contains("first") && texts[1].contains("second"),
        "{texts:?}"
    );
}

/// A Graph change hint for `message` on the Teams channel, then a post behind it there.
async fn hint_then_post(w: &World, teams_conn: &ConnectionId, message: &str) {
    w.accept(
        teams_conn,
        Inbound::Changed(ChangeHint {
            event_id: format!("hint-{message}"),
            channel: w.teams_ch.clone(),
            message: MessageId::new(message).unwrap(),
            thread_root: None,
            change: ChangeType::Created,
            received_at: OffsetDateTime::now_utc(),
        }),
    )
    .await;
    w.accept(
        teams_conn,
        event(
            "g-second",
            &w.teams_ch,
            posted("m-second", None, RichText::plain("second")),
        ),
    )
    .await;
}

/// A world whose relay combines a backlog of more than 3 into posts of up to 6.
async fn combining_world() -> World {
    world_with(|c| {
        c.batch_threshold = Some(3);
        c.batch_max = 6;
    })
    .await
}

/// Every "message N" paragraph of the posts `rec` recorded, in order (a combined post holds
/// several).
fn message_lines(rec: &Recorder) -> Vec<String> {
    rec.posts()
        .iter()
        .flat_map(|p| {
            post_text(p)
                .split("\n\n")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|l| l.contains("message "))
        .collect()
}

/// The last line of each post `rec` recorded, in order (what a post says below its header).
fn last_lines(rec: &Recorder) -> Vec<String> {
    rec.posts()
        .iter()
        .map(|c| {
            post_text(c)
                .rsplit('\n')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}
