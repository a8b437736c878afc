//! Hostile input from outside: the probe's findings as regression tests, and property tests
//! of the Teams HTML converters and the Graph notification parsers.
//!
//! Every test here asserts outcomes and size bounds (model nodes, rendered bytes, peak heap
//! measured by a counting allocator), never wall time. The tests share one process-wide
//! allocator counter, so they run one at a time (`serial`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use peak_alloc::PeakAlloc;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use switchboard_core::{Block, ChannelId, Emoji, Inline, Mention, RichText, UserId};
use switchboard_msteams::graph::retry_after;
use switchboard_msteams::html::{
    MAX_DEPTH, MAX_HTML_BYTES, TRUNCATION_MARKER, from_html, from_html_uncapped, sanitize, to_html,
};
use switchboard_msteams::subscriptions::{parse_lifecycle, parse_notifications, parse_resource};
use switchboard_msteams::wire::{ChatMention, Identity, Mentioned};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f`, returning its result and the heap high-water mark it added (bytes).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let out = f();
    let peak = HEAP.peak_usage().saturating_sub(base);
    if std::env::var_os("SHOW_PEAKS").is_some() {
        eprintln!("peak heap {peak} B");
    }
    (out, peak)
}

/// Blocks + inlines of a model, at any depth (iterative).
fn node_count(rt: &RichText) -> usize {
    model_stats(rt).0
}

/// (nodes, deepest nesting) of a model.
fn model_stats(rt: &RichText) -> (usize, usize) {
    enum N<'a> {
        B(&'a Block),
        I(&'a Inline),
    }
    let mut stack: Vec<(N<'_>, usize)> = rt.blocks.iter().map(|b| (N::B(b), 1)).collect();
    let (mut nodes, mut deepest) = (0, 0);
    while let Some((n, d)) = stack.pop() {
        nodes += 1;
        deepest = deepest.max(d);
        match n {
            N::B(Block::Paragraph { inlines }) => {
                stack.extend(inlines.iter().map(|i| (N::I(i), d + 1)))
            }
            N::B(Block::Quote { blocks }) => stack.extend(blocks.iter().map(|b| (N::B(b), d + 1))),
            N::B(Block::List { items, .. }) => {
                for item in items {
                    stack.extend(item.iter().map(|b| (N::B(b), d + 1)));
                }
            }
            N::B(Block::CodeBlock { .. }) => {}
            N::I(
                Inline::Bold { inlines }
                | Inline::Italic { inlines }
                | Inline::Strike { inlines }
                | Inline::Link { inlines, .. },
            ) => stack.extend(inlines.iter().map(|i| (N::I(i), d + 1))),
            N::I(_) => {}
        }
    }
    (nodes, deepest)
}

fn has_everyone(rt: &RichText) -> bool {
    let mut stack: Vec<&Inline> = Vec::new();
    let mut blocks: Vec<&Block> = rt.blocks.iter().collect();
    while let Some(b) = blocks.pop() {
        match b {
            Block::Paragraph { inlines } => stack.extend(inlines),
            Block::Quote { blocks: bs } => blocks.extend(bs),
            Block::List { items, .. } => items.iter().for_each(|i| blocks.extend(i)),
            Block::CodeBlock { .. } => {}
        }
    }
    while let Some(i) = stack.pop() {
        match i {
            Inline::Mention {
                mention: Mention::Everyone,
            } => return true,
            Inline::Bold { inlines }
            | Inline::Italic { inlines }
            | Inline::Strike { inlines }
            | Inline::Link { inlines, .. } => stack.extend(inlines),
            _ => {}
        }
    }
    false
}

/// Checks that `html` (written by `to_html`) holds only the writer's own tags, with only
/// safe attribute values. Text is escaped by the writer, so every `<` starts a tag and the
/// first `>` after it ends it.
fn assert_writer_markup(html: &str) {
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let after = &rest[lt + 1..];
        let gt = after
            .find('>')
            .unwrap_or_else(|| panic!("unclosed tag in {html}"));
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let tag = tag.strip_prefix('/').unwrap_or(tag);
        let (name, attrs) = tag.split_once(' ').unwrap_or((tag, ""));
        assert!(
            [
                "p",
                "b",
                "i",
                "s",
                "code",
                "pre",
                "a",
                "at",
                "br",
                "blockquote",
                "ul",
                "ol",
                "li"
            ]
            .contains(&name),
            "tag {name:?} in {html}"
        );
        if attrs.is_empty() {
            continue;
        }
        let (key, value) = attrs
            .split_once("=\"")
            .unwrap_or_else(|| panic!("attribute {attrs:?} in {html}"));
        let value = value
            .strip_suffix('"')
            .unwrap_or_else(|| panic!("attribute {attrs:?} in {html}"));
        assert!(!value.contains('"'), "{attrs:?}");
        match (name, key) {
            ("a", "href") => {
                let v = value.to_ascii_lowercase();
                assert!(
                    v.starts_with("http://")
                        || v.starts_with("https://")
                        || v.starts_with("mailto:"),
                    "href {value:?}"
                );
            }
            ("at", "id") | ("ol", "start") => {
                assert!(value.bytes().all(|b| b.is_ascii_digit()), "{attrs:?}")
            }
            ("code", "class") => {
                let l = value.strip_prefix("language-").expect("language-");
                assert!(
                    l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+#-_".contains(&b)),
                    "{attrs:?}"
                );
            }
            _ => panic!("attribute {attrs:?} on {name} in {html}"),
        }
    }
}

/// The markup of `html` without its text: every tag, concatenated, lower-cased. (Escaped text
/// may well say `javascript:`; what matters is that no tag or attribute does.)
fn tags_of(html: &str) -> String {
    let mut out = String::new();
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        let end = rest[lt..].find('>').map_or(rest.len(), |g| lt + g + 1);
        out.push_str(&rest[lt..end].to_ascii_lowercase());
        rest = &rest[end..];
    }
    out
}

fn is_guid(id: &str) -> bool {
    id.len() == 36
        && id.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The writer's mentions are user mentions of Graph user ids, one per `<at>`, and nothing
/// else: no channel, team or tag (mass) mention.
fn assert_only_user_mentions(html: &str, mentions: &[ChatMention]) {
    assert_eq!(html.matches("<at id=").count(), mentions.len(), "{html}");
    for (n, m) in mentions.iter().enumerate() {
        assert_eq!(m.id, n as i64);
        assert!(m.mentioned.conversation.is_none() && m.mentioned.tag.is_none());
        let user = m.mentioned.user.as_ref().expect("a user mention");
        assert!(is_guid(user.id.as_deref().unwrap_or("")), "{:?}", user.id);
    }
}

// ---------------------------------------------------------------------------------------
// The probe's inputs

/// `<p>` + k `<b id=N>` + k × `</p><p>x`: the reconstruction of active formatting elements.
fn formatting_attack(k: usize) -> String {
    let mut s = String::from("<p>");
    for i in 0..k {
        s.push_str(&format!("<b id={i}>"));
    }
    s.push_str(&"</p><p>x".repeat(k));
    s
}

#[test]
fn formatting_reconstruction_input_stays_linear_in_nodes_and_memory() {
    let _g = serial();
    let html = formatting_attack(1400);
    assert!(html.len() < 28 * 1024, "under Graph's cap: {}", html.len());
    let (rt, peak) = peak_of(|| from_html(&html, &[]));
    // the old parser built ~1400² = 2M elements and peaked at 352 MB
    assert!(
        node_count(&rt) <= 2 * html.len(),
        "{} nodes",
        node_count(&rt)
    );
    assert!(
        peak <= 64 * html.len(),
        "peak {peak} B for {} B",
        html.len()
    );
    let plain = rt.to_plain_text();
    assert_eq!(plain.matches('x').count(), 1400, "every x survives");
    let out = to_html(&rt).html;
    assert!(out.len() <= 4 * html.len(), "{}", out.len());
    // the 94 KB variant is over the cap: cut, with the marker, still bounded
    let big = formatting_attack(5000);
    assert!(big.len() > MAX_HTML_BYTES);
    let (rt, peak) = peak_of(|| from_html(&big, &[]));
    assert!(rt.to_plain_text().ends_with(TRUNCATION_MARKER));
    assert!(node_count(&rt) <= 2 * MAX_HTML_BYTES);
    assert!(peak <= 64 * MAX_HTML_BYTES, "peak {peak}");
    // and uncapped, the whole of it stays linear
    let (rt, peak) = peak_of(|| from_html_uncapped(&big, &[]));
    assert_eq!(rt.to_plain_text().matches('x').count(), 5000);
    assert!(peak <= 64 * big.len(), "peak {peak} for {}", big.len());
}

#[test]
fn deep_unclosed_containers_are_flattened_not_recursed() {
    let _g = serial();
    for open in [
        "<div>",
        "<ul>",
        "<blockquote>",
        "<ul><li>",
        "<b><div>",
        "<i>",
    ] {
        let n = 20_000 / open.len();
        let html = format!("{}deep text{}", open.repeat(n), "</div>".repeat(n / 2));
        let (rt, peak) = peak_of(|| from_html(&html, &[]));
        assert!(
            rt.to_plain_text().contains("deep text"),
            "{open}: {:?}",
            rt.to_plain_text()
        );
        let (nodes, depth) = model_stats(&rt);
        assert!(depth <= MAX_DEPTH + 4, "{open}: depth {depth}");
        assert!(nodes <= html.len(), "{open}: {nodes} nodes");
        assert!(peak <= 64 * html.len(), "{open}: peak {peak}");
        let out = sanitize(&html, &[]).html;
        assert!(out.len() <= html.len() + 64, "{open}: {} bytes", out.len());
        assert_writer_markup(&out);
    }
    // and text after the deep part is still read
    let html = format!(
        "{}a{}<p>after</p>",
        "<div>".repeat(5000),
        "</div>".repeat(5000)
    );
    assert!(from_html(&html, &[]).to_plain_text().ends_with("after"));
}

#[test]
fn many_line_breaks_then_text() {
    let _g = serial();
    let html = format!("<p>{}text</p>", "<br>".repeat(6000));
    let (rt, peak) = peak_of(|| from_html(&html, &[]));
    assert_eq!(
        rt.blocks,
        vec![Block::Paragraph {
            inlines: vec![Inline::Text {
                text: "text".into()
            }]
        }]
    );
    assert!(peak <= 64 * html.len(), "peak {peak}");
    // breaks between words are kept, leading and trailing ones go
    let html = format!("{}a<br>b{}", "<br>".repeat(3000), "<br>".repeat(3000));
    assert_eq!(from_html(&html, &[]).to_plain_text(), "a\nb");
}

#[test]
fn a_tag_with_thousands_of_attributes_is_cheap() {
    let _g = serial();
    let attrs: String = (0..6000).map(|i| format!(" a{i}=v")).collect();
    let html = format!("<b{attrs}>bold</b> <a{attrs} href=\"https://x.test/\">l</a>");
    assert!(html.len() < MAX_HTML_BYTES * 2);
    let (rt, peak) = peak_of(|| from_html_uncapped(&html, &[]));
    assert!(peak <= 64 * html.len(), "peak {peak}");
    let Some(Block::Paragraph { inlines }) = rt.blocks.first() else {
        panic!("{rt:?}")
    };
    assert_eq!(
        inlines[0],
        Inline::Bold {
            inlines: vec![Inline::Text {
                text: "bold".into()
            }]
        }
    );
    // the href after the 64th attribute is not read: the link is plain text
    assert_eq!(inlines.len(), 2, "{inlines:?}");
    assert_eq!(inlines[1], Inline::Text { text: " l".into() });
}

#[test]
fn ordered_list_start_numbers_survive_both_ways() {
    let _g = serial();
    let rt = from_html("<ol start=\"3\"><li>three</li><li>four</li></ol>", &[]);
    assert!(matches!(
        rt.blocks[0],
        Block::List {
            ordered: true,
            start: Some(3),
            ..
        }
    ));
    assert_eq!(
        to_html(&rt).html,
        "<ol start=\"3\"><li>three</li><li>four</li></ol>"
    );
}

#[test]
fn the_writer_escapes_everything_it_is_given() {
    let _g = serial();
    let t = |s: &str| Inline::Text { text: s.into() };
    let user = |id: &str, name: &str| Inline::Mention {
        mention: Mention::User {
            id: UserId::new(id).unwrap(),
            display_name: name.into(),
        },
    };
    let rt = RichText {
        blocks: vec![
            Block::Paragraph {
                inlines: vec![
                    t("<script>alert(1)</script> & \"q\" 'a'"),
                    Inline::Link {
                        url: "javascript:alert(2)".into(),
                        inlines: vec![t("js")],
                    },
                    Inline::Link {
                        url: "https://x.test/\"onmouseover=\"alert(3)".into(),
                        inlines: vec![t("quote")],
                    },
                    Inline::Link {
                        url: "data:text/html,<script>".into(),
                        inlines: vec![],
                    },
                    user("00000000-0000-0000-0000-000000000001\"x", "Ann"),
                    user("00000000-0000-0000-0000-0000000000aa", "</at><script>"),
                    Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: "<img src=x onerror=alert(4)>".into(),
                            name: Some("not a shortcode\"".into()),
                        },
                    },
                    Inline::Emoji {
                        emoji: Emoji::Custom {
                            name: "\"><b>".into(),
                        },
                    },
                    Inline::Mention {
                        mention: Mention::Channel {
                            id: ChannelId::new("19:x@thread.tacv2").unwrap(),
                            display_name: "<general>".into(),
                        },
                    },
                    Inline::Mention {
                        mention: Mention::Here,
                    },
                    Inline::Code {
                        code: "</code><script>".into(),
                    },
                ],
            },
            Block::CodeBlock {
                language: Some("rust\"><script>".into()),
                code: "</pre><script>".into(),
            },
        ],
    };
    let r = to_html(&rt);
    assert_writer_markup(&r.html);
    assert_only_user_mentions(&r.html, &r.mentions);
    assert_eq!(r.mentions.len(), 1, "only the real GUID is an <at>");
    let lower = tags_of(&r.html);
    for bad in ["<script", "<img", "javascript:", "data:", "onmouseover=\""] {
        assert!(!lower.contains(bad), "{bad} in {}", r.html);
    }
    assert!(r.html.contains("@here") && r.html.contains("#&lt;general&gt;"));
    assert!(!has_everyone(&from_html(&r.html, &r.mentions)));
}

#[test]
fn retry_after_with_huge_numbers_clamps_instead_of_panicking() {
    let _g = serial();
    let mut h = HeaderMap::new();
    for v in [
        "18446744073709551616",
        "1e19",
        "1e300",
        "99999999999999999999999.5",
    ] {
        h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
        let d = retry_after(&h);
        assert!(
            d.is_none_or(|d| d <= Duration::from_secs(3600)),
            "{v}: {d:?}"
        );
    }
    h.insert(
        RETRY_AFTER,
        HeaderValue::from_static("18446744073709551616"),
    );
    assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
}

// ---------------------------------------------------------------------------------------
// Property tests: fixed seed, bounded cases, no files written.

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5eed_7ea5),
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

const PIECES: &[&str] = &[
    "<p>",
    "</p>",
    "<div>",
    "</div>",
    "<b>",
    "</b>",
    "<b id=1>",
    "<i class=x>",
    "</i>",
    "<s>",
    "</s>",
    "<code>",
    "</code>",
    "<pre>",
    "</pre>",
    "<ul>",
    "<ol start=\"4\">",
    "<ol start=-1>",
    "<li>",
    "</li>",
    "</ul>",
    "</ol>",
    "<blockquote>",
    "</blockquote>",
    "<br>",
    "</br>",
    "<a href=\"https://x.test/?a=1&amp;b\">",
    "<a href=\"javascript:alert(1)\">",
    "<a href='mailto:a@b.test'>",
    "</a>",
    "<script>",
    "</script>",
    "<style>",
    "</style>",
    "<svg>",
    "</svg>",
    "<img src=x onerror=alert(1)>",
    "<img src=\"https://x.test/i.png\" alt=\"pic\">",
    "<at id=\"0\">",
    "<at id=\"1\">",
    "</at>",
    "<emoji alt=\"🎉\">",
    "<emoji alt=\"<b>\">",
    "</emoji>",
    "&amp;",
    "&lt;",
    "&#60;",
    "&nbsp;",
    "&",
    "<",
    ">",
    "\"",
    " ",
    "\n",
    "text",
    "x<y",
    "😀",
    "<table><tr><td>",
    "<td>",
    "</td></tr></table>",
    "<h1>",
    "</h1>",
    "<span onclick=\"x()\">",
    "</span>",
    "<!-- c -->",
    "<!--",
    "-->",
    "<textarea>",
    "<title>",
    "<plaintext>",
    "<template>",
    "</template>",
    "<select><option>",
    "<math>",
    "<p a b c d e f g h>",
];

fn mentions() -> Vec<ChatMention> {
    vec![
        ChatMention {
            id: 0,
            mention_text: Some("Ann".into()),
            mentioned: Mentioned {
                user: Some(Identity {
                    id: Some("0b9e3b7f-0000-4000-8000-00000000a11c".into()),
                    display_name: Some("Ann".into()),
                    user_identity_type: Some("aadUser".into()),
                }),
                ..Default::default()
            },
        },
        ChatMention {
            id: 1,
            mention_text: Some("General".into()),
            mentioned: Mentioned {
                conversation: Some(switchboard_msteams::wire::ConversationIdentity {
                    id: Some("19:x@thread.tacv2".into()),
                    display_name: Some("General".into()),
                    conversation_identity_type: Some("channel".into()),
                }),
                ..Default::default()
            },
        },
    ]
}

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(PIECES).prop_map(str::to_owned),
            1 => "[a-z <>&\"'=/!-]{0,12}",
        ],
        0..120,
    )
    .prop_map(|v| v.concat())
}

/// Bounds every reader output: nodes, text and written HTML are at most a constant times
/// the input (plus a constant for empty input).
fn assert_read_bounds(html: &str, rt: &RichText) {
    let n = html.len() + 16;
    assert!(node_count(rt) <= n, "{} nodes for {n}", node_count(rt));
    assert!(rt.to_plain_text().len() <= 16 * n, "{html:?}");
    assert!(model_stats(rt).1 <= 2 * MAX_DEPTH + 4);
    let out = to_html(rt);
    assert!(out.html.len() <= 32 * n, "{} bytes for {n}", out.html.len());
    assert_writer_markup(&out.html);
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn from_html_on_arbitrary_strings(s in any::<String>()) {
        let _g = serial();
        let rt = from_html(&s, &mentions());
        assert_read_bounds(&s, &rt);
    }

    #[test]
    fn from_html_on_tag_soup(html in soup()) {
        let _g = serial();
        let m = mentions();
        let rt = from_html(&html, &m);
        assert_read_bounds(&html, &rt);
        let once = sanitize(&html, &m);
        let lower = tags_of(&once.html);
        for bad in ["<script", "<style", "javascript:", "onerror", "onclick", "<img", "<svg"] {
            prop_assert!(!lower.contains(bad), "{} survived {:?}: {}", bad, html, once.html);
        }
        assert_only_user_mentions(&once.html, &once.mentions);
        let twice = sanitize(&once.html, &once.mentions);
        prop_assert_eq!(&twice.html, &once.html, "not stable for {:?}", html);
    }
}

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9]{1,8}",
            prop::sample::select(&["<", ">", "&", "\"", "'", "&amp;", "<b>", "é", "😀", "@x"][..])
                .prop_map(str::to_owned),
        ],
        1..6,
    )
    .prop_map(|w| w.join(" "))
}

fn inline_strategy() -> impl Strategy<Value = Inline> {
    let leaf = prop_oneof![
        4 => text_strategy().prop_map(|text| Inline::Text { text }),
        1 => text_strategy().prop_map(|code| Inline::Code { code }),
        1 => Just(Inline::LineBreak),
        1 => (any::<u128>(), text_strategy()).prop_map(|(n, name)| {
            let h = format!("{n:032x}");
            let id = format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]);
            Inline::Mention { mention: Mention::User { id: UserId::new(id).unwrap(), display_name: name } }
        }),
        1 => ("[a-zA-Z0-9:@._\"<>-]{1,20}", text_strategy()).prop_map(|(id, name)| Inline::Mention {
            mention: Mention::User { id: UserId::new(id).unwrap(), display_name: name }
        }),
        1 => Just(Inline::Mention { mention: Mention::Here }),
        1 => text_strategy().prop_map(|n| Inline::Mention { mention: Mention::Channel {
            id: ChannelId::new("C123").unwrap(), display_name: n } }),
        1 => prop::sample::select(&["👍", "👍🏽", "🎉", "x", "<b>", "\"", "❤"][..]).prop_map(|v| Inline::Emoji {
            emoji: Emoji::Unicode { value: v.into(), name: None } }),
        1 => "[a-z_\"<>]{1,10}".prop_map(|name| Inline::Emoji { emoji: Emoji::Custom { name } }),
    ];
    leaf.prop_recursive(6, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..4).prop_map(|inlines| Inline::Bold { inlines }),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|inlines| Inline::Italic { inlines }),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|inlines| Inline::Strike { inlines }),
            (
                prop::sample::select(
                    &[
                        "https://x.test/a?b=1&c=\"2\"",
                        "javascript:alert(1)",
                        "mailto:a@b.test",
                        "data:x",
                        " HTTP://X.TEST "
                    ][..]
                ),
                prop::collection::vec(inner, 0..3)
            )
                .prop_map(|(u, inlines)| Inline::Link {
                    url: u.into(),
                    inlines
                }),
        ]
    })
}

fn block_strategy() -> impl Strategy<Value = Block> {
    let leaf = prop_oneof![
        3 => prop::collection::vec(inline_strategy(), 1..5).prop_map(|inlines| Block::Paragraph { inlines }),
        1 => (prop::option::of("[a-z+#\"<> -]{0,8}"), text_strategy())
            .prop_map(|(language, code)| Block::CodeBlock { language, code }),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 1..3).prop_map(|blocks| Block::Quote { blocks }),
            (
                any::<bool>(),
                prop::option::of(any::<u64>()),
                prop::collection::vec(prop::collection::vec(inner, 1..3), 1..3)
            )
                .prop_map(|(ordered, start, items)| Block::List {
                    ordered,
                    start,
                    items
                }),
        ]
    })
}

fn model_strategy() -> impl Strategy<Value = (RichText, bool)> {
    (prop::collection::vec(block_strategy(), 0..4), any::<bool>()).prop_map(
        |(mut blocks, everyone)| {
            if everyone {
                blocks.push(Block::Paragraph {
                    inlines: vec![Inline::Mention {
                        mention: Mention::Everyone,
                    }],
                });
            }
            (RichText { blocks }, everyone)
        },
    )
}

/// The size of a model in source-ish bytes: text lengths plus a few bytes per node.
fn model_size(rt: &RichText) -> usize {
    serde_json::to_string(rt).map(|s| s.len()).unwrap_or(0) + 16
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn to_html_on_generated_models((rt, everyone) in model_strategy()) {
        let _g = serial();
        let r = to_html(&rt);
        assert_writer_markup(&r.html);
        assert_only_user_mentions(&r.html, &r.mentions);
        prop_assert!(r.html.len() <= 8 * model_size(&rt), "{} for {}", r.html.len(), model_size(&rt));
        let back = from_html(&r.html, &r.mentions);
        // no mass mention appears that the model did not hold (and Teams gets none at all)
        prop_assert!(!has_everyone(&back));
        prop_assert!(everyone || !r.html.contains("@everyone") || rt.to_plain_text().contains("@everyone"));
        // writing what was read changes nothing more
        let again = to_html(&back);
        prop_assert_eq!(&to_html(&from_html(&again.html, &again.mentions)).html, &again.html);
    }

    #[test]
    fn plain_text_round_trips_through_escaping(lines in prop::collection::vec(text_strategy(), 1..4)) {
        let _g = serial();
        let text = lines.join("\n");
        let rt = RichText { blocks: vec![Block::Paragraph { inlines: vec![Inline::Text { text: text.clone() }] }] };
        let html = to_html(&rt).html;
        let back = from_html(&html, &[]);
        prop_assert_eq!(back.to_plain_text(), text, "{}", html);
    }
}

fn notification_json() -> impl Strategy<Value = serde_json::Value> {
    let scalar = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        prop::sample::select(
            &[
                "sub-1",
                "created",
                "updated",
                "deleted",
                "missed",
                "reauthorizationRequired",
                "subscriptionRemoved",
                "teams('T')/channels('C')/messages('M')",
                "teams('T')/channels('C')/messages('M')/replies('R')",
                "2026-01-01T00:00:00Z",
                "not a date",
                "",
                "secret",
            ][..]
        )
        .prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    let key = prop::sample::select(
        &[
            "subscriptionId",
            "clientState",
            "changeType",
            "resource",
            "tenantId",
            "resourceData",
            "id",
            "lifecycleEvent",
            "subscriptionExpirationDateTime",
            "value",
            "@odata.type",
            "x",
        ][..],
    );
    let value = scalar.prop_recursive(3, 24, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8).prop_map(|kv| {
                serde_json::Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    });
    prop::collection::vec(value, 0..6).prop_map(|items| serde_json::json!({ "value": items }))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn notification_parsers_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _g = serial();
        if let Ok(b) = parse_notifications(&bytes) {
            prop_assert!(b.items.len() + b.skipped <= bytes.len());
        }
        if let Ok(b) = parse_lifecycle(&bytes) {
            prop_assert!(b.items.len() + b.skipped <= bytes.len());
        }
        let s = String::from_utf8_lossy(&bytes);
        if let Some(r) = parse_resource(&s) {
            prop_assert!(r.team.len() + r.channel.len() <= s.len());
        }
    }

    #[test]
    fn notification_parsers_on_arbitrary_json(v in notification_json()) {
        let _g = serial();
        let body = serde_json::to_vec(&v).unwrap();
        let n = v["value"].as_array().map_or(0, Vec::len);
        if let Ok(b) = parse_notifications(&body) {
            prop_assert!(b.items.len() + b.skipped <= n);
            for it in &b.items {
                prop_assert!(!it.subscription_id.is_empty());
                let _ = parse_resource(&it.resource);
            }
        }
        if let Ok(b) = parse_lifecycle(&body) {
            prop_assert!(b.items.len() + b.skipped <= n);
        }
    }

    #[test]
    fn parse_resource_on_arbitrary_paths(
        parts in prop::collection::vec(
            prop_oneof![
                prop::sample::select(&["teams", "channels", "messages", "replies", "/", "('", "')", "'", "(", ")", "''", "%27", "x", "19:a@thread.tacv2"][..]).prop_map(str::to_owned),
                any::<String>(),
            ],
            0..16,
        )
    ) {
        let _g = serial();
        let s = parts.concat();
        if let Some(r) = parse_resource(&s) {
            prop_assert!(r.team.len() + r.channel.len() + r.message.map_or(0, |m| m.len()) + r.reply.map_or(0, |m| m.len()) <= s.len());
        }
    }
}
