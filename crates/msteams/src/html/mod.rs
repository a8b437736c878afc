//! Teams message HTML ⇄ the portable [`RichText`](switchboard_core::RichText) model.
//!
//! **Reading** ([`from_html`]) tokenizes with html5ever's HTML5 tokenizer, so entities,
//! attributes, comments and raw text are recognized exactly as a browser would, and builds a
//! bounded tree of its own (`tree`): whatever the input, the work and memory are linear in
//! its length, the nesting depth is capped ([`MAX_DEPTH`]; deeper content is flattened to its
//! text), and outside HTML longer than [`MAX_HTML_BYTES`] is cut with a visible
//! [`TRUNCATION_MARKER`]. Only what the model can express is kept. `<script>`, `<style>`,
//! embedded objects, forms and event-handler attributes cannot survive: they are dropped with
//! their content, links keep only `http`, `https` and `mailto` targets, and an emoji is only
//! an emoji when the emoji table knows it.
//!
//! **Writing** ([`to_html`]) escapes every piece of text and attribute by construction, so the
//! HTML produced is safe whatever the model holds: user mentions become `<at>` only for
//! Graph user ids (GUIDs), a list's start number is a number, a code language is a word, and
//! nothing the writer emits is a channel or team (mass) mention. [`sanitize`] chains both.
//!
//! Mentions are `<at id="N">Name</at>` in the body plus a `mentions` array entry with the same
//! `id` ([`ChatMention`]).

mod lex;
mod read;
mod tree;
mod write;

use crate::wire::ChatMention;

pub use read::{from_html, from_html_uncapped, from_plain_text};
pub use write::to_html;

/// Deeper nesting than this is flattened to its text (hostile input cannot exhaust the
/// stack, and the tree builder never scans a deeper stack).
pub const MAX_DEPTH: usize = tree::MAX_TREE_DEPTH;

/// The most HTML [`from_html`] reads from outside: 64 KiB. Graph refuses message bodies over
/// about 28 KB, so every real message fits with room to spare; beyond it the content is cut
/// (at a tag boundary) and [`TRUNCATION_MARKER`] is appended as a last paragraph.
pub const MAX_HTML_BYTES: usize = 64 * 1024;

/// The paragraph [`from_html`] appends when it cut the input at [`MAX_HTML_BYTES`].
pub const TRUNCATION_MARKER: &str = "[… message truncated: it was too long to show in full]";

/// Elements dropped together with everything inside them.
pub(crate) const DROPPED: &[&str] = &[
    "script",
    "style",
    "head",
    "title",
    "template",
    "iframe",
    "object",
    "embed",
    "noscript",
    "svg",
    "math",
    "attachment",
    "meta",
    "link",
    "base",
    "form",
    "input",
    "button",
    "select",
    "textarea",
    "option",
    "audio",
    "video",
    "canvas",
    "frame",
    "frameset",
    "applet",
    "param",
    "source",
    "track",
    "map",
    "area",
    "dialog",
];

/// Elements that start a new block.
pub(crate) const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "nav",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "codeblock",
    "xmp",
    "plaintext",
    "listing",
    "blockquote",
    "ul",
    "ol",
    "li",
    "table",
    "thead",
    "tbody",
    "tfoot",
    "tr",
    "td",
    "th",
    "hr",
    "figure",
    "figcaption",
    "dl",
    "dt",
    "dd",
    "address",
    "details",
    "summary",
    "caption",
    "body",
    "html",
];

pub(crate) fn is_dropped(name: &str) -> bool {
    DROPPED.contains(&name)
}

pub(crate) fn is_block(name: &str) -> bool {
    BLOCKS.contains(&name)
}

/// Whether a link target may be kept: `http`, `https` or `mailto` only.
pub fn is_safe_url(url: &str) -> bool {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    if u.chars().any(|c| c.is_control()) {
        return false;
    }
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        && url::Url::parse(u).is_ok()
}

/// HTML for Graph plus the `mentions` array its `<at>` elements refer to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderedHtml {
    /// The body content (`contentType: html`).
    pub html: String,
    /// The mentions, ids matching `<at id>` in order of appearance.
    pub mentions: Vec<ChatMention>,
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// Parses and re-renders untrusted HTML: only what the model expresses survives, escaped.
pub fn sanitize(html: &str, mentions: &[ChatMention]) -> RenderedHtml {
    to_html(&from_html(html, mentions))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_core::{Block, Emoji, Inline, Mention, RichText, UserId};

    use crate::wire::{Identity, Mentioned};

    fn t(s: &str) -> Inline {
        Inline::Text { text: s.into() }
    }

    fn para(inlines: Vec<Inline>) -> Block {
        Block::Paragraph { inlines }
    }

    fn user_mention(id: i64, uid: &str, name: &str) -> ChatMention {
        ChatMention {
            id,
            mention_text: Some(name.into()),
            mentioned: Mentioned {
                user: Some(Identity {
                    id: Some(uid.into()),
                    display_name: Some(name.into()),
                    user_identity_type: Some("aadUser".into()),
                }),
                ..Default::default()
            },
        }
    }

    #[test]
    fn reads_formatting_links_lists_quotes_and_code() {
        let rt = from_html(
            "<div><p>Hello <b>bold</b> <i>it</i> <s>gone</s> <code>x&lt;y</code></p>\
             <p><a href=\"https://ex.test/a?b=1&amp;c=2\">docs</a><br>next line</p>\
             <ul><li>one</li><li><p>two</p></li></ul>\
             <blockquote><p>quoted</p></blockquote>\
             <pre><code class=\"language-rust\">fn main() {\n  x &amp;&amp; y\n}</code></pre></div>",
            &[],
        );
        assert_eq!(
            rt.blocks,
            vec![
                para(vec![
                    t("Hello "),
                    Inline::Bold {
                        inlines: vec![t("bold")]
                    },
                    t(" "),
                    Inline::Italic {
                        inlines: vec![t("it")]
                    },
                    t(" "),
                    Inline::Strike {
                        inlines: vec![t("gone")]
                    },
                    t(" "),
                    Inline::Code { code: "x<y".into() },
                ]),
                para(vec![
                    Inline::Link {
                        url: "https://ex.test/a?b=1&c=2".into(),
                        inlines: vec![t("docs")]
                    },
                    Inline::LineBreak,
                    t("next line"),
                ]),
                Block::List {
                    ordered: false,
                    start: None,
                    items: vec![vec![para(vec![t("one")])], vec![para(vec![t("two")])]]
                },
                Block::Quote {
                    blocks: vec![para(vec![t("quoted")])]
                },
                Block::CodeBlock {
                    language: Some("rust".into()),
                    code: "fn main() {\n  x && y\n}".into()
                },
            ]
        );
    }

    #[test]
    fn reads_mentions_and_merges_split_names() {
        let mentions = vec![
            user_mention(0, "u-jane", "Jane"),
            user_mention(1, "u-jane", "Smith"),
            ChatMention {
                id: 2,
                mention_text: Some("General".into()),
                mentioned: Mentioned {
                    conversation: Some(crate::wire::ConversationIdentity {
                        id: Some("19:x@thread.tacv2".into()),
                        display_name: Some("General".into()),
                        conversation_identity_type: Some("channel".into()),
                    }),
                    ..Default::default()
                },
            },
        ];
        let rt = from_html(
            "<p>Hi <at id=\"0\">Jane</at> <at id=\"1\">Smith</at> and <at id=\"2\">General</at>, <at id=\"9\">Ghost</at></p>",
            &mentions,
        );
        assert_eq!(
            rt.blocks,
            vec![para(vec![
                t("Hi "),
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("u-jane").unwrap(),
                        display_name: "Jane Smith".into()
                    }
                },
                t(" and "),
                Inline::Mention {
                    mention: Mention::Everyone
                },
                t(", @Ghost"),
            ])]
        );
    }

    #[test]
    fn hostile_html_loses_scripts_handlers_and_bad_urls() {
        let hostile = "<p onclick=\"steal()\">hi<script>alert(1)</script>\
            <img src=x onerror=alert(2)><a href=\"javascript:alert(3)\">click</a>\
            <a href=\" JaVaScRiPt:alert(4)\">two</a><style>p{}</style>\
            <iframe src=\"https://evil.test\"></iframe><svg><script>alert(5)</script></svg>\
            &lt;script&gt;alert(6)&lt;/script&gt;<a href=\"data:text/html,x\">d</a></p>";
        let rt = from_html(hostile, &[]);
        let plain = rt.to_plain_text();
        assert!(
            !plain.contains("alert(1)") && !plain.contains("alert(5)"),
            "{plain}"
        );
        assert!(
            plain.contains("<script>alert(6)</script>"),
            "entities decode to text: {plain}"
        );
        let out = to_html(&rt).html;
        for bad in [
            "<script",
            "onerror",
            "onclick",
            "javascript:",
            "<iframe",
            "<style",
            "data:",
            "<img",
            "<svg",
        ] {
            assert!(!out.to_ascii_lowercase().contains(bad), "{bad} in {out}");
        }
        assert!(
            out.contains("&lt;script&gt;alert(6)&lt;/script&gt;"),
            "{out}"
        );
        assert_eq!(sanitize(hostile, &[]).html, out);
    }

    #[test]
    fn entities_and_whitespace_are_handled() {
        let rt = from_html(
            "<p>  a&nbsp;&amp;&#x1F600;\n\n   b &eacute; </p><p>   </p><div><br></div>",
            &[],
        );
        assert_eq!(rt.blocks, vec![para(vec![t("a\u{a0}&😀 b é")])]);
        assert_eq!(to_html(&rt).html, "<p>a\u{a0}&amp;😀 b é</p>");
        assert!(from_html("", &[]).blocks.is_empty());
        assert!(from_html("<p><b> </b></p>", &[]).is_empty());
    }

    const U1: &str = "0b9e3b7f-1111-4000-8000-00000000a11c";
    const U2: &str = "0B9E3B7F-2222-4000-8000-00000000B0B0";

    #[test]
    fn writes_mentions_with_the_mentions_array() {
        let rt = RichText {
            blocks: vec![para(vec![
                t("ping "),
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new(U1).unwrap(),
                        display_name: "Ann <Admin>".into(),
                    },
                },
                t(" & "),
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new(U2).unwrap(),
                        display_name: "Bob".into(),
                    },
                },
                Inline::Emoji {
                    emoji: Emoji::Custom {
                        name: "partyparrot".into(),
                    },
                },
                Inline::Mention {
                    mention: Mention::Everyone,
                },
            ])],
        };
        let r = to_html(&rt);
        assert_eq!(
            r.html,
            "<p>ping <at id=\"0\">Ann &lt;Admin&gt;</at> &amp; <at id=\"1\">Bob</at>:partyparrot:@everyone</p>"
        );
        assert_eq!(r.mentions.len(), 2);
        let j = serde_json::to_value(&r.mentions).unwrap();
        assert_eq!(
            j[0],
            serde_json::json!({"id":0,"mentionText":"Ann <Admin>","mentioned":{"user":{"id":U1,"displayName":"Ann <Admin>","userIdentityType":"aadUser"}}})
        );
        // and it reads back to the same model
        let back = from_html(&r.html, &r.mentions);
        assert_eq!(back.blocks[0], {
            let Block::Paragraph { inlines } = &rt.blocks[0] else {
                unreachable!()
            };
            let mut v = inlines.clone();
            // custom emoji and @everyone are written as text
            v.truncate(4);
            v.push(t(":partyparrot:@everyone"));
            para(v)
        });
    }

    #[test]
    fn round_trips_the_model() {
        let rt = RichText {
            blocks: vec![
                para(vec![
                    Inline::Bold {
                        inlines: vec![
                            t("b "),
                            Inline::Italic {
                                inlines: vec![t("bi")],
                            },
                        ],
                    },
                    t(" x"),
                    Inline::LineBreak,
                    Inline::Link {
                        url: "https://a.test/?q=1&r=2".into(),
                        inlines: vec![],
                    },
                ]),
                Block::List {
                    ordered: true,
                    start: None,
                    items: vec![
                        vec![para(vec![t("1")])],
                        vec![para(vec![Inline::Code { code: "<c>".into() }])],
                    ],
                },
                Block::Quote {
                    blocks: vec![para(vec![t("q")])],
                },
                Block::CodeBlock {
                    language: None,
                    code: "a\n  b".into(),
                },
            ],
        };
        let html = to_html(&rt).html;
        let back = from_html(&html, &[]);
        let mut expected = rt.clone();
        // an empty link text is written as the URL
        if let Block::Paragraph { inlines } = &mut expected.blocks[0] {
            inlines[3] = Inline::Link {
                url: "https://a.test/?q=1&r=2".into(),
                inlines: vec![t("https://a.test/?q=1&r=2")],
            };
        }
        assert_eq!(back, expected, "{html}");
    }

    #[test]
    fn odd_markup_never_panics_and_deep_nesting_is_flattened() {
        let deep = format!("{}x{}", "<b><div>".repeat(5000), "</div></b>".repeat(5000));
        let rt = from_html(&deep, &[]);
        assert!(rt.to_plain_text().contains('x'));
        for odd in [
            "<",
            "<<>>",
            "</p>",
            "<at>",
            "<at id=\"x\"></at>",
            "<emoji alt=\"\" title=\"\"></emoji>",
            "<table><tr><td>a</td><td>b</td></tr></table>",
            "<ol><li></li>text</ol>",
            "<pre></pre>",
            "<a href>x</a>",
            "\u{0}\u{1}",
            "<img src=\"https://x.test/i.png\">",
            "<emoji id=\"smile\" alt=\"😄\" title=\"Smile\"></emoji>",
            "<attachment id=\"abc\"></attachment>",
        ] {
            let rt = from_html(odd, &[]);
            let _ = to_html(&rt);
        }
        assert_eq!(
            from_html("<table><tr><td>a</td><td>b</td></tr></table>", &[]).to_plain_text(),
            "a | b"
        );
        assert_eq!(
            from_html(
                "<emoji id=\"smile\" alt=\"😄\" title=\"Smile\"></emoji>",
                &[]
            )
            .blocks,
            vec![para(vec![Inline::Emoji {
                emoji: Emoji::Unicode {
                    value: "😄".into(),
                    name: None
                }
            }])]
        );
        assert!(from_html("<attachment id=\"abc\">card</attachment>", &[]).is_empty());
    }

    #[test]
    fn random_tag_soup_is_safe_and_sanitizing_is_stable() {
        use rand::{Rng, SeedableRng};
        const PIECES: &[&str] = &[
            "<p>",
            "</p>",
            "<div>",
            "</div>",
            "<b>",
            "</b>",
            "<i>",
            "</i>",
            "<s>",
            "</s>",
            "<code>",
            "</code>",
            "<pre>",
            "</pre>",
            "<ul>",
            "<ol>",
            "<li>",
            "</li>",
            "</ul>",
            "</ol>",
            "<blockquote>",
            "</blockquote>",
            "<br>",
            "<a href=\"https://x.test/?a=1&amp;b\">",
            "<a href=\"javascript:alert(1)\">",
            "</a>",
            "<script>",
            "</script>",
            "<style>",
            "<img src=x onerror=alert(1)>",
            "<at id=\"0\">",
            "</at>",
            "&amp;",
            "&lt;",
            "&#60;",
            "&nbsp;",
            " ",
            "\n",
            "text",
            "x<y",
            "\"q\"",
            "😀",
            "<table><tr><td>",
            "</td></tr></table>",
            "<h1>",
            "</h1>",
            "<span onclick=\"x()\">",
            "</span>",
            "<!-- c -->",
            "<emoji alt=\"🎉\">",
        ];
        let mentions = vec![user_mention(0, "u1", "Ann")];
        // HTML_SEED / HTML_ITERS run a longer search: `HTML_ITERS=100000 cargo test …`
        let mut rng = rand::rngs::StdRng::seed_from_u64(
            std::env::var("HTML_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(7),
        );
        for _ in 0..std::env::var("HTML_ITERS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2_000)
        {
            let n = rng.gen_range(0..40);
            let input: String = (0..n)
                .map(|_| PIECES[rng.gen_range(0..PIECES.len())])
                .collect();
            let once = sanitize(&input, &mentions);
            let lower = once.html.to_ascii_lowercase();
            for bad in [
                "<script",
                "<style",
                "javascript:",
                "onerror",
                "onclick",
                "<img",
            ] {
                assert!(
                    !lower.contains(bad),
                    "{bad} survived {input:?} → {}",
                    once.html
                );
            }
            let twice = sanitize(&once.html, &once.mentions);
            assert_eq!(twice.html, once.html, "not stable for {input:?}");
        }
    }

    #[test]
    fn ordered_lists_keep_their_start_number() {
        let rt = from_html(
            "<ol start=\"7\"><li>a</li><li>b</li></ol><ol start=\"1\"><li>c</li></ol><ol start=\"-3\"><li>d</li></ol><ul start=\"4\"><li>e</li></ul>",
            &[],
        );
        let starts: Vec<_> = rt
            .blocks
            .iter()
            .map(|b| match b {
                Block::List { start, ordered, .. } => (*ordered, *start),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            starts,
            vec![(true, Some(7)), (true, None), (true, None), (false, None)]
        );
        let html = to_html(&rt).html;
        assert!(
            html.starts_with("<ol start=\"7\"><li>a</li><li>b</li></ol><ol><li>c"),
            "{html}"
        );
        assert_eq!(from_html(&html, &[]), rt, "the start number round-trips");
        // zero is a start number too; one is the default and is not written
        for (start, tag) in [
            (Some(0), "<ol start=\"0\">"),
            (Some(1), "<ol>"),
            (None, "<ol>"),
        ] {
            let rt = RichText {
                blocks: vec![Block::List {
                    ordered: true,
                    start,
                    items: vec![vec![para(vec![t("x")])]],
                }],
            };
            assert!(to_html(&rt).html.starts_with(tag), "{start:?}");
        }
    }

    #[test]
    fn only_graph_user_ids_become_at_mentions() {
        let mention = |id: &str, name: &str| Inline::Mention {
            mention: Mention::User {
                id: UserId::new(id).unwrap(),
                display_name: name.into(),
            },
        };
        let rt = RichText {
            blocks: vec![para(vec![
                mention("\"><script>x</script>", "Eve"),
                t(" "),
                mention("U0SLACK1", "Sam <b>"),
                t(" "),
                mention("0b9e3b7f-1111-4000-8000-00000000a11", "Short"),
                t(" "),
                mention(U1, "Ann"),
                t(" "),
                Inline::Mention {
                    mention: Mention::Here,
                },
            ])],
        };
        let r = to_html(&rt);
        assert_eq!(
            r.html,
            "<p>@Eve @Sam &lt;b&gt; @Short <at id=\"0\">Ann</at> @here</p>"
        );
        assert_eq!(r.mentions.len(), 1);
        assert_eq!(
            r.mentions[0].mentioned.user.as_ref().unwrap().id.as_deref(),
            Some(U1)
        );
    }

    #[test]
    fn emoji_are_checked_against_the_table() {
        let rt = from_html(
            "<p><emoji alt=\"<b>not</b>\"></emoji><img itemtype=\"http://schema.skype.com/Emoji\" alt=\"fake\"><emoji alt=\"👍🏽\"></emoji></p>",
            &[],
        );
        assert_eq!(
            rt.blocks,
            vec![para(vec![
                t("<b>not</b>[fake]"),
                Inline::Emoji {
                    emoji: Emoji::Unicode {
                        value: "👍🏽".into(),
                        name: None
                    }
                }
            ])]
        );
        let emoji = |value: &str, name: Option<&str>| Inline::Emoji {
            emoji: Emoji::Unicode {
                value: value.into(),
                name: name.map(Into::into),
            },
        };
        let rt = RichText {
            blocks: vec![para(vec![
                emoji("🎉", None),
                emoji("<img src=x onerror=y>", None),
                emoji("?", Some("tada")),
            ])],
        };
        assert_eq!(to_html(&rt).html, "<p>🎉&lt;img src=x onerror=y&gt;🎉</p>");
    }

    #[test]
    fn oversized_input_is_cut_with_a_visible_marker() {
        let body = "<p>word word</p>".repeat(MAX_HTML_BYTES / 8);
        let rt = from_html(&body, &[]);
        let Some(Block::Paragraph { inlines }) = rt.blocks.last() else {
            panic!("no marker")
        };
        assert_eq!(inlines, &vec![t(TRUNCATION_MARKER)]);
        assert!(rt.blocks.len() < MAX_HTML_BYTES / 16 + 2);
        assert!(rt.to_plain_text().len() <= MAX_HTML_BYTES);
        // the cut never leaves half a tag: a cut inside `<a href=…` keeps no link text
        let tail = format!(
            "{}<a href=\"https://x.test/{}\">link</a>",
            "x".repeat(MAX_HTML_BYTES - 20),
            "y".repeat(100)
        );
        let rt = from_html(&tail, &[]);
        assert!(
            !rt.to_plain_text().contains("href"),
            "{}",
            rt.to_plain_text().len()
        );
        assert!(
            from_html(&"é".repeat(MAX_HTML_BYTES), &[])
                .to_plain_text()
                .ends_with(TRUNCATION_MARKER)
        );
        let plain = from_plain_text(&"line\n".repeat(MAX_HTML_BYTES));
        assert!(plain.to_plain_text().ends_with(TRUNCATION_MARKER));
        assert!(plain.to_plain_text().len() <= MAX_HTML_BYTES + TRUNCATION_MARKER.len() + 2);
        // at the cap exactly: no marker
        let exact = "a".repeat(MAX_HTML_BYTES);
        assert_eq!(from_html(&exact, &[]).to_plain_text(), exact);
    }

    #[test]
    fn plain_text_bodies_become_paragraphs() {
        let rt = from_plain_text("a\nb\n\nc");
        assert_eq!(
            rt.blocks,
            vec![
                para(vec![t("a"), Inline::LineBreak, t("b")]),
                para(vec![t("c")])
            ]
        );
    }
}
