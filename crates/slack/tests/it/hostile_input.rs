//! Hostile input (issue 11, the Slack side): the probe's inputs as regressions, injection
//! from the portable model into mrkdwn, the bounded Web API body, and property tests of the
//! mrkdwn converters and the Events API envelopes. One binary, as test binaries are slow to
//! link.

use proptest::prelude::*;
use serde_json::{Value, json};
use switchboard_core::{
    Block, ChannelId, Emoji, ErrorKind, EventKind, Inline, Mention, RichText, UserId,
};
use switchboard_slack::client::MAX_RESPONSE_BYTES;
use switchboard_slack::mrkdwn::{
    Limits, MAX_MESSAGE_CHARS, TRUNCATION_MARKER, from_mrkdwn, from_mrkdwn_with, to_mrkdwn,
};
use switchboard_slack::{
    Args, Auth, CallOptions, Disposition, EventRequest, OwnIdentity, SlackClient, SlackConfig,
    parse_request, to_platform_event,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn t(s: &str) -> Inline {
    Inline::Text { text: s.into() }
}

fn para(inlines: Vec<Inline>) -> RichText {
    RichText {
        blocks: vec![Block::Paragraph { inlines }],
    }
}

/// The size of a model, as the bytes of its JSON form.
fn model_size(rt: &RichText) -> usize {
    serde_json::to_string(rt).expect("serializable").len()
}

fn walk<'a>(blocks: &'a [Block], out: &mut Vec<&'a Inline>) {
    fn inl<'a>(i: &'a Inline, out: &mut Vec<&'a Inline>) {
        out.push(i);
        match i {
            Inline::Bold { inlines }
            | Inline::Italic { inlines }
            | Inline::Strike { inlines }
            | Inline::Link { inlines, .. } => inlines.iter().for_each(|x| inl(x, out)),
            _ => {}
        }
    }
    for b in blocks {
        match b {
            Block::Paragraph { inlines } => inlines.iter().for_each(|i| inl(i, out)),
            Block::Quote { blocks } => walk(blocks, out),
            Block::List { items, .. } => items.iter().for_each(|it| walk(it, out)),
            Block::CodeBlock { .. } => {}
        }
    }
}

fn inlines_of(rt: &RichText) -> Vec<&Inline> {
    let mut out = Vec::new();
    walk(&rt.blocks, &mut out);
    out
}

fn has_mass_mention(rt: &RichText) -> bool {
    inlines_of(rt).into_iter().any(|i| {
        matches!(
            i,
            Inline::Mention {
                mention: Mention::Everyone | Mention::Here
            }
        )
    })
}

fn links(rt: &RichText) -> Vec<String> {
    inlines_of(rt)
        .into_iter()
        .filter_map(|i| match i {
            Inline::Link { url, .. } => Some(url.clone()),
            _ => None,
        })
        .collect()
}

/// Every `<` in mrkdwn starts a user or channel mention, a mass mention the caller allows,
/// or an http(s)/mailto link.
fn control_sequences_are_only(m: &str, allow_mass: bool) {
    let lower = m.to_ascii_lowercase();
    for (i, _) in lower.match_indices('<') {
        let rest = &lower[i..];
        let ok = rest.starts_with("<@")
            || rest.starts_with("<#")
            || rest.starts_with("<http://")
            || rest.starts_with("<https://")
            || rest.starts_with("<mailto:")
            || (allow_mass && (rest.starts_with("<!channel>") || rest.starts_with("<!here>")));
        assert!(ok, "unexpected control sequence at {i} in {m:?}");
    }
}

fn message_event(text: &str) -> Value {
    json!({
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event_id": "Ev1",
        "event_time": 1_700_000_000,
        "event": {
            "type": "message", "channel": "C1", "user": "U7", "text": text,
            "ts": "1700000000.000100"
        }
    })
}

/// The text of the message an Events API body becomes, through the adapter's entry point.
fn relayed_text(body: &[u8]) -> Option<RichText> {
    let EventRequest::EventCallback(cb) = parse_request(body).ok()? else {
        return None;
    };
    match to_platform_event(&cb, &OwnIdentity::default()).ok()? {
        Disposition::Relay(ev) => match ev.kind {
            EventKind::Posted { content, .. } | EventKind::Edited { content, .. } => {
                Some(content.text)
            }
            _ => None,
        },
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// The probe's inputs
// ---------------------------------------------------------------------------------------

const WORST: [&str; 7] = ["*a<", "*a ", "*a`", "<", "<@", "<!", "<#"];

#[test]
fn cubic_star_a_lt_at_slacks_limit_parses_through_the_event_path() {
    // 40,000 characters of "*a<": 8 KB took 4.4 s before, so this would take minutes.
    let text = "*a<".repeat(MAX_MESSAGE_CHARS / 3);
    let body = serde_json::to_vec(&message_event(&text)).unwrap();
    let rt = relayed_text(&body).expect("relayed");
    let plain = rt.to_plain_text();
    // Nothing here is formatting: the text survives whole, and nothing was cut.
    assert_eq!(plain, text);
    assert!(!plain.contains(TRUNCATION_MARKER));
    assert!(model_size(&rt) <= 2 * text.len() + 256);
}

#[test]
fn quadratic_inputs_parse_uncapped_with_output_bounded_by_input() {
    for p in WORST {
        let text = p.repeat(200_000 / p.len());
        let rt = from_mrkdwn_with(&text, Limits::UNBOUNDED);
        let plain = rt.to_plain_text();
        if p == "*a`" {
            // "`*a`" pairs up as code spans; nothing else is lost.
            assert_eq!(plain.len(), text.len() - text.matches('`').count(), "{p:?}");
        } else {
            // None of these close anything: all of it is text, none of it is lost.
            assert!(plain == text, "{p:?}: read as something else");
        }
        // Code spans cost ~55 bytes of JSON per 6 input bytes; text about its own size.
        assert!(model_size(&rt) <= 16 * text.len() + 256, "{p:?}");
        let written = to_mrkdwn(&rt);
        assert!(written.len() <= 8 * text.len() + 64, "{p:?}");
        // Writing it back keeps it text.
        assert!(
            from_mrkdwn_with(&written, Limits::UNBOUNDED) == rt,
            "{p:?}: not stable"
        );
    }
}

#[test]
fn the_cap_cuts_on_a_char_boundary_and_says_so() {
    for unit in ["é", "🎉", "a", "a<", "<@"] {
        let text = unit.repeat(MAX_MESSAGE_CHARS + 5);
        let rt = from_mrkdwn(&text);
        let Some(Block::Paragraph { inlines }) = rt.blocks.last() else {
            panic!("{unit}: no marker paragraph")
        };
        assert_eq!(inlines, &vec![t(TRUNCATION_MARKER)], "{unit}");
        let kept: usize = rt.blocks[..rt.blocks.len() - 1]
            .iter()
            .map(|b| {
                RichText {
                    blocks: vec![b.clone()],
                }
                .to_plain_text()
                .chars()
                .count()
            })
            .sum();
        assert_eq!(kept, MAX_MESSAGE_CHARS, "{unit}");
    }
    // At the limit exactly nothing is cut.
    let exact = "é".repeat(MAX_MESSAGE_CHARS);
    assert_eq!(from_mrkdwn(&exact), RichText::plain(exact.clone()));
    // The uncapped reader keeps everything.
    let long = "x".repeat(MAX_MESSAGE_CHARS * 2);
    assert_eq!(
        from_mrkdwn_with(&long, Limits::UNBOUNDED),
        RichText::plain(long.clone())
    );
}

#[test]
fn a_megabyte_event_body_is_cut_not_parsed_whole() {
    let text = "<@".repeat(480_000);
    let body = serde_json::to_vec(&message_event(&text)).unwrap();
    let rt = relayed_text(&body).expect("relayed");
    let plain = rt.to_plain_text();
    assert!(plain.ends_with(TRUNCATION_MARKER));
    assert!(plain.chars().count() <= MAX_MESSAGE_CHARS + TRUNCATION_MARKER.chars().count() + 2);
}

#[test]
fn formatting_still_reads_as_before() {
    let rt = from_mrkdwn("*bold _both_* ~gone~ `a*b` <@U1|jane> snake_case 2*3*4 :tada:");
    let Block::Paragraph { inlines } = &rt.blocks[0] else {
        panic!("{rt:?}")
    };
    assert!(matches!(&inlines[0], Inline::Bold { inlines } if inlines.len() == 2));
    assert!(matches!(&inlines[2], Inline::Strike { .. }));
    assert_eq!(inlines[4], Inline::Code { code: "a*b".into() });
    assert!(inlines.iter().any(|i| *i == t(" snake_case 2*3*4 ")));
    // The first closer wins; an opener without a closer on its line stays text.
    assert_eq!(
        from_mrkdwn("*a *b* c*"),
        para(vec![
            Inline::Bold {
                inlines: vec![t("a *b")]
            },
            t(" c*")
        ])
    );
    assert_eq!(
        from_mrkdwn("*a\nb*"),
        para(vec![t("*a"), Inline::LineBreak, t("b*")])
    );
}

#[test]
fn user_groups_and_dates_read_as_words() {
    let rt = from_mrkdwn(
        "<!subteam^S123|@team> <!subteam^S123> <!date^1392734382^{date_short}|Feb 18, 2014> <!date^1392734382^{date_short}> <!date^x^y>",
    );
    let plain = rt.to_plain_text();
    assert_eq!(
        plain,
        "@team @user-group Feb 18, 2014 2014-02-18 14:39 UTC (a date)"
    );
    assert!(!plain.contains("date^"));
    assert_eq!(
        from_mrkdwn("<!here> <!channel> <!everyone>"),
        para(vec![
            Inline::Mention {
                mention: Mention::Here
            },
            t(" "),
            Inline::Mention {
                mention: Mention::Everyone
            },
            t(" "),
            Inline::Mention {
                mention: Mention::Everyone
            },
        ])
    );
}

// ---------------------------------------------------------------------------------------
// Teams → Slack injection
// ---------------------------------------------------------------------------------------

#[test]
fn emoji_values_cannot_ping_or_link() {
    for value in [
        "<!channel>",
        "<!everyone>",
        "<!here>",
        "<https://evil.test|https://bank.test>",
        "<@U0>",
        ":tada:",
    ] {
        for emoji in [
            Emoji::Unicode {
                value: value.into(),
                name: None,
            },
            Emoji::Unicode {
                value: value.into(),
                name: Some(value.into()),
            },
            Emoji::Custom { name: value.into() },
        ] {
            let rt = para(vec![t("x "), Inline::Emoji { emoji }]);
            let m = to_mrkdwn(&rt);
            assert!(!m.contains("<!"), "{m:?}");
            assert!(!m.contains('<'), "{m:?}");
            let back = from_mrkdwn(&m);
            assert!(!has_mass_mention(&back), "{m:?}");
            assert!(links(&back).is_empty(), "{m:?}");
            if value.contains('<') {
                assert!(
                    inlines_of(&back)
                        .iter()
                        .all(|i| !matches!(i, Inline::Mention { .. } | Inline::Emoji { .. })),
                    "{m:?} read back as {back:?}"
                );
            }
        }
    }
}

#[test]
fn mention_ids_outside_slacks_alphabet_become_names() {
    let rt = para(vec![
        Inline::Mention {
            mention: Mention::User {
                id: UserId::new("x><!channel><@U0").unwrap(),
                display_name: "Mallory <!channel>".into(),
            },
        },
        t(" "),
        Inline::Mention {
            mention: Mention::Channel {
                id: ChannelId::new("C1|<!here>").unwrap(),
                display_name: "general".into(),
            },
        },
        t(" "),
        Inline::Mention {
            mention: Mention::User {
                id: UserId::new("U0ABC123").unwrap(),
                display_name: "Jane".into(),
            },
        },
    ]);
    let m = to_mrkdwn(&rt);
    assert_eq!(m, "@Mallory &lt;!channel&gt; #general <@U0ABC123>", "{m:?}");
    assert!(!has_mass_mention(&from_mrkdwn(&m)));
}

#[test]
fn links_are_only_web_and_mail_and_cannot_break_out() {
    let cases = [
        ("https://bank.test/a|b>c<d e", "pay"),
        ("https://x.test/?q=<!channel>", ""),
        ("javascript:alert(1)", "click"),
        ("data:text/html,<b>", ""),
        ("HTTPS://X.TEST/`x`", "a|b"),
        ("mailto:a@b.test", "mail"),
    ];
    for (url, label) in cases {
        let rt = para(vec![Inline::Link {
            url: url.into(),
            inlines: if label.is_empty() {
                vec![]
            } else {
                vec![t(label)]
            },
        }]);
        let m = to_mrkdwn(&rt);
        control_sequences_are_only(&m, false);
        assert_eq!(m.matches('<').count(), m.matches('>').count(), "{m:?}");
        let back = from_mrkdwn(&m);
        assert!(!has_mass_mention(&back), "{m:?}");
        let found = links(&back);
        let web = ["http://", "https://", "mailto:"]
            .iter()
            .any(|s| url.to_ascii_lowercase().starts_with(s));
        if web {
            assert_eq!(found.len(), 1, "{m:?}");
            // The target is the same URL, with the characters that could end it encoded.
            let expected = url
                .replace('|', "%7C")
                .replace(' ', "%20")
                .replace('`', "%60");
            assert_eq!(found[0], expected, "{m:?}");
        } else {
            assert!(found.is_empty(), "{m:?}");
            // What was shown is still there, as text.
            let shown = if label.is_empty() { url } else { label };
            assert_eq!(back.to_plain_text(), shown, "{m:?}");
        }
    }
}

#[test]
fn formatting_characters_in_text_stay_text() {
    for text in [
        "*not bold*",
        "_not italic_",
        "~not struck~",
        "`not code`",
        "```not a block```",
        ":tada: :not_an_emoji:",
        ":wave::skin-tone-2:",
        "> not a quote",
        "• not a list",
        "1. not a list",
        "&gt; &amp; <!channel>",
        "\u{200B}*\u{200B} guard-like text",
        "a*b*c snake_case_name 10:30:00",
    ] {
        let rt = RichText::plain(text);
        let m = to_mrkdwn(&rt);
        assert!(!m.contains('<'), "{m:?}");
        assert_eq!(from_mrkdwn(&m), rt, "{text:?} via {m:?}");
    }
    // Text that cannot act is written as it is.
    assert_eq!(
        to_mrkdwn(&RichText::plain("snake_case 2*3*4 10:30 a * b")),
        "snake_case 2*3*4 10:30 a * b"
    );
    // Code blocks cannot end early.
    let rt = RichText {
        blocks: vec![Block::CodeBlock {
            language: None,
            code: "a ``` *b* <!channel>\n``\u{200B}`".into(),
        }],
    };
    let m = to_mrkdwn(&rt);
    assert_eq!(m.matches("```").count(), 2, "{m:?}");
    assert_eq!(from_mrkdwn(&m), rt, "{m:?}");
}

#[test]
fn deep_formatting_is_written_to_a_bounded_depth() {
    let mut inner = vec![t("x")];
    for _ in 0..3000 {
        inner = vec![Inline::Bold { inlines: inner }];
    }
    let rt = para(inner);
    let m = to_mrkdwn(&rt);
    // Dropping a model this deep recurses (the model's own drop glue), so it is leaked.
    std::mem::forget(rt);
    assert!(
        m.matches('*').count() <= 2 * switchboard_slack::mrkdwn::MAX_DEPTH,
        "{}",
        m.len()
    );
    assert_eq!(from_mrkdwn(&m).to_plain_text(), "x");
}

#[test]
fn formatting_slack_cannot_show_keeps_its_mentions_and_links() {
    // "a*…*": a word character before the opener, so Slack would not format it.
    let rt = para(vec![
        t("a"),
        Inline::Bold {
            inlines: vec![
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("U1AB").unwrap(),
                        display_name: "Jane".into(),
                    },
                },
                t(" see "),
                Inline::Link {
                    url: "https://x.test".into(),
                    inlines: vec![t("this")],
                },
            ],
        },
    ]);
    let m = to_mrkdwn(&rt);
    assert_eq!(m, "a<@U1AB> see <https://x.test|this>");
    // A word character after the closer: "*un*believable" would show its asterisks.
    let rt = para(vec![
        Inline::Bold {
            inlines: vec![t("un")],
        },
        t("believable *b*"),
    ]);
    let m = to_mrkdwn(&rt);
    assert_eq!(
        from_mrkdwn(&m),
        RichText::plain("unbelievable *b*"),
        "{m:?}"
    );
}

#[test]
fn mass_mentions_only_from_the_model() {
    for (mention, expected) in [
        (Mention::Everyone, "<!channel>"),
        (Mention::Here, "<!here>"),
    ] {
        let rt = para(vec![Inline::Mention {
            mention: mention.clone(),
        }]);
        assert_eq!(to_mrkdwn(&rt), expected);
        assert_eq!(from_mrkdwn(expected), rt);
    }
}

// ---------------------------------------------------------------------------------------
// The Web API client reads bounded bodies
// ---------------------------------------------------------------------------------------

fn client_for(base: &str) -> SlackClient {
    let config = SlackConfig::new(
        "1.2",
        secrecy::SecretString::from("s"),
        secrecy::SecretString::from("s"),
    )
    .with_base_urls(
        url::Url::parse(&format!("{base}/api/")).unwrap(),
        url::Url::parse(&format!("{base}/")).unwrap(),
    )
    .with_limits(switchboard_slack::RateLimits::unlimited());
    SlackClient::new(&config).unwrap()
}

#[tokio::test]
async fn oversized_answers_are_refused_with_a_clear_error() {
    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let mut big = br#"{"ok":true,"pad":""#.to_vec();
    big.resize(MAX_RESPONSE_BYTES + 1, b'x');
    Mock::given(path("/api/users.list"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(big, "application/json"))
        .mount(&server)
        .await;
    Mock::given(path("/api/team.info"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"ok": true, "team": {"id": "T1"}})),
        )
        .mount(&server)
        .await;
    let client = client_for(&server.uri());
    let token = secrecy::SecretString::from("xoxb-1");
    let opts = CallOptions {
        idempotent: true,
        ..Default::default()
    };
    let err = client
        .call::<Value>("users.list", Auth::Bearer(&token), &Args::None, opts)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.to_string().contains("16 MiB"), "{err}");
    // Refused once, not retried as if transient.
    let calls = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/api/users.list")
        .count();
    assert_eq!(calls, 1);
    // Ordinary answers still read.
    let ok = client
        .call::<Value>("team.info", Auth::Bearer(&token), &Args::None, opts)
        .await
        .unwrap();
    assert_eq!(ok.body["team"]["id"], "T1");
}

#[tokio::test]
async fn chunked_answers_are_cut_at_the_bound_without_a_length() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 4096];
        let _ = sock.read(&mut req).await;
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if sock.write_all(head.as_bytes()).await.is_err() {
            return 0usize;
        }
        let chunk = vec![b' '; 1024 * 1024];
        let mut sent = 0usize;
        // Up to 64 MiB; the client stops reading long before.
        for _ in 0..64 {
            let frame = format!("{:x}\r\n", chunk.len());
            if sock.write_all(frame.as_bytes()).await.is_err()
                || sock.write_all(&chunk).await.is_err()
                || sock.write_all(b"\r\n").await.is_err()
            {
                break;
            }
            sent += chunk.len();
        }
        let _ = sock.write_all(b"0\r\n\r\n").await;
        sent
    });
    let client = client_for(&format!("http://{addr}"));
    let token = secrecy::SecretString::from("xoxb-1");
    let err = client
        .call::<Value>(
            "users.list",
            Auth::Bearer(&token),
            &Args::None,
            CallOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Upstream);
    assert!(err.to_string().contains("larger than"), "{err}");
    drop(client);
    let sent = server.await.unwrap();
    assert!(
        sent < 64 * 1024 * 1024,
        "the client read everything ({sent} bytes)"
    );
}

// ---------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------

/// Characters that mean something in mrkdwn, a few ordinary ones, and the guard.
const ALPHABET: &[char] = &[
    '*', '_', '~', '`', ':', '<', '>', '&', ';', '|', '@', '#', '!', '^', '.', '1', ' ', 'a', 'b',
    'U', 'C', 'é', '🎉', '•', '\u{200B}', '\'', '+', '-', 'g', 't', 'l',
];

fn mrkdwn_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => prop::sample::select(ALPHABET),
        1 => Just('\n'),
        1 => any::<char>(),
    ]
}

fn mrkdwn_text() -> impl Strategy<Value = String> {
    prop::collection::vec(mrkdwn_char(), 0..120).prop_map(|v| v.into_iter().collect())
}

/// Plain text as the model holds it: one line, not only spaces.
fn plain_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            8 => prop::sample::select(ALPHABET),
            1 => any::<char>(),
        ],
        1..60,
    )
    .prop_map(|v| {
        v.into_iter()
            .filter(|c| *c != '\n' && *c != '\r')
            .collect::<String>()
    })
    .prop_filter("not blank", |s| !s.trim().is_empty())
}

fn id_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[UWBCGD][A-Z0-9]{1,10}",
        "[^\\s\\p{Cc}]{1,20}".prop_map(|s| s),
        Just("x><!channel><@U0".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Inline> {
    prop_oneof![
        4 => plain_text().prop_map(|text| Inline::Text { text }),
        1 => plain_text().prop_map(|code| Inline::Code { code }),
        1 => (id_like(), plain_text()).prop_filter_map("valid id", |(id, name)| {
            UserId::new(id).ok().map(|id| Inline::Mention {
                mention: Mention::User { id, display_name: name },
            })
        }),
        1 => (id_like(), plain_text()).prop_filter_map("valid id", |(id, name)| {
            ChannelId::new(id).ok().map(|id| Inline::Mention {
                mention: Mention::Channel { id, display_name: name },
            })
        }),
        1 => (plain_text(), prop::option::of(plain_text())).prop_map(|(value, name)| {
            Inline::Emoji { emoji: Emoji::Unicode { value, name } }
        }),
        1 => plain_text().prop_map(|name| Inline::Emoji { emoji: Emoji::Custom { name } }),
        1 => (
            prop_oneof![
                plain_text(),
                plain_text().prop_map(|s| format!("https://x.test/{s}")),
                plain_text().prop_map(|s| format!("javascript:{s}")),
            ],
            prop::collection::vec(plain_text().prop_map(|text| Inline::Text { text }), 0..2),
        )
            .prop_map(|(url, inlines)| Inline::Link { url, inlines }),
        1 => Just(Inline::LineBreak),
    ]
}

fn inline() -> impl Strategy<Value = Inline> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|inlines| Inline::Bold { inlines }),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|inlines| Inline::Italic { inlines }),
            prop::collection::vec(inner, 1..4).prop_map(|inlines| Inline::Strike { inlines }),
        ]
    })
}

/// Models without mass mentions: paragraphs, quotes, lists, code blocks.
fn model() -> impl Strategy<Value = RichText> {
    let paragraph = prop::collection::vec(inline(), 1..6)
        .prop_map(|inlines| Block::Paragraph { inlines })
        .boxed();
    let block = prop_oneof![
        4 => paragraph.clone(),
        1 => mrkdwn_text().prop_map(|code| Block::CodeBlock { language: None, code }),
        1 => prop::collection::vec(paragraph.clone(), 1..3).prop_map(|blocks| Block::Quote { blocks }),
        1 => (any::<bool>(), prop::collection::vec(paragraph.prop_map(|p| vec![p]), 1..3))
            .prop_map(|(ordered, items)| Block::List { ordered, start: None, items }),
    ];
    prop::collection::vec(block, 0..4).prop_map(|blocks| RichText { blocks })
}

/// 256 cases from a fixed seed (deterministic); `PROPTEST_CASES` runs more when hunting.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5117_c4b0),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn reading_never_panics_and_is_bounded(s in mrkdwn_text()) {
        let rt = from_mrkdwn_with(&s, Limits::UNBOUNDED);
        prop_assert!(model_size(&rt) <= 64 * s.len() + 64, "{} for {}", model_size(&rt), s.len());
        let written = to_mrkdwn(&rt);
        prop_assert!(written.len() <= 8 * s.len() + 64);
        // What was read and written reads the same again.
        let again = from_mrkdwn_with(&written, Limits::UNBOUNDED);
        prop_assert_eq!(&from_mrkdwn_with(&to_mrkdwn(&again), Limits::UNBOUNDED), &again);
        // A mass mention is read only where the input has one.
        if !s.contains("<!") {
            prop_assert!(!has_mass_mention(&rt));
        }
    }

    #[test]
    fn plain_text_round_trips(text in plain_text()) {
        let rt = RichText::plain(text.clone());
        let m = to_mrkdwn(&rt);
        prop_assert!(!m.contains('<'), "{:?}", m);
        prop_assert!(m.len() <= 8 * text.len() + 8);
        prop_assert_eq!(from_mrkdwn(&m), rt, "via {:?}", m);
    }

    #[test]
    fn writing_a_model_makes_no_mass_mention_and_only_safe_sequences(rt in model()) {
        let m = to_mrkdwn(&rt);
        control_sequences_are_only(&m, false);
        let back = from_mrkdwn_with(&m, Limits::UNBOUNDED);
        prop_assert!(!has_mass_mention(&back), "{:?}", m);
        for url in links(&back) {
            let lower = url.to_ascii_lowercase();
            prop_assert!(
                lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:"),
                "{:?} in {:?}", url, m
            );
        }
        prop_assert!(m.len() <= 8 * model_size(&rt) + 64);
    }

    #[test]
    fn envelopes_of_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&bytes);
    }

    #[test]
    fn message_envelopes_never_panic_and_stay_bounded(
        text in mrkdwn_text(),
        subtype in prop::option::of(prop::sample::select(vec![
            "bot_message", "file_share", "message_changed", "message_deleted", "thread_broadcast",
            "channel_join", "tombstone", "x",
        ])),
        ts in prop_oneof![Just("1700000000.000100".to_owned()), "[0-9.]{0,20}", any::<String>()],
        extra in prop::collection::vec((any::<String>(), any::<String>()), 0..3),
    ) {
        let mut v = message_event(&text);
        v["event"]["ts"] = json!(ts);
        if let Some(st) = subtype {
            v["event"]["subtype"] = json!(st);
            v["event"]["message"] = json!({"user": "U7", "text": text, "ts": ts});
            v["event"]["previous_message"] = json!({"user": "U7", "text": "old", "ts": ts});
            v["event"]["deleted_ts"] = json!(ts);
        }
        for (k, val) in extra {
            v["event"][k] = json!(val);
        }
        let body = serde_json::to_vec(&v).unwrap();
        if let Some(rt) = relayed_text(&body) {
            prop_assert!(model_size(&rt) <= 64 * text.len() + 256);
            if !text.contains("<!") {
                prop_assert!(!has_mass_mention(&rt));
            }
        }
    }
}
