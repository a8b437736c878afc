//! Teams message HTML ⇄ the portable [`RichText`] model.
//!
//! Reading parses with a real HTML5 parser (html5ever through `scraper`), so entities,
//! malformed markup and odd nesting are handled as a browser would; it keeps only what the
//! model can express. `<script>`, `<style>`, embedded objects, forms and event-handler
//! attributes cannot survive: they are dropped with their content, and links keep only
//! `http`, `https` and `mailto` targets. Writing escapes every piece of text and attribute,
//! so the HTML produced is safe whatever the model holds. [`sanitize`] chains both.
//!
//! Mentions are `<at id="N">Name</at>` in the body plus a `mentions` array entry with the same
//! `id` ([`ChatMention`]).

use std::collections::HashMap;

use scraper::{ElementRef, Html};
use switchboard_core::{Block, Emoji, Inline, Mention, RichText, UserId};

use crate::wire::{ChatMention, Identity, Mentioned};

/// Deeper nesting than this is flattened to its text (hostile input cannot exhaust the
/// stack).
const MAX_DEPTH: usize = 64;

/// Elements dropped together with everything inside them.
const DROPPED: &[&str] = &[
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
const BLOCKS: &[&str] = &[
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

fn is_dropped(name: &str) -> bool {
    DROPPED.contains(&name)
}

fn is_block(name: &str) -> bool {
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

/// Parses Teams message HTML into rich text, resolving `<at id>` through `mentions`.
pub fn from_html(html: &str, mentions: &[ChatMention]) -> RichText {
    let doc = Html::parse_fragment(html);
    let reader = Reader {
        mentions: mentions.iter().map(|m| (m.id, m)).collect(),
    };
    let mut blocks = Vec::new();
    reader.blocks_of(doc.root_element(), 0, &mut blocks);
    RichText { blocks }
}

/// Converts plain text (a `text` body) into rich text: one paragraph per blank-line
/// separated chunk, single newlines kept as line breaks.
pub fn from_plain_text(text: &str) -> RichText {
    let mut blocks = Vec::new();
    for chunk in text.replace("\r\n", "\n").split("\n\n") {
        let mut inlines = Vec::new();
        for (i, line) in chunk.split('\n').enumerate() {
            if i > 0 {
                inlines.push(Inline::LineBreak);
            }
            if !line.is_empty() {
                inlines.push(Inline::Text {
                    text: line.to_owned(),
                });
            }
        }
        let inlines = normalize(inlines);
        if !inlines.is_empty() {
            blocks.push(Block::Paragraph { inlines });
        }
    }
    RichText { blocks }
}

struct Reader<'m> {
    mentions: HashMap<i64, &'m ChatMention>,
}

impl Reader<'_> {
    /// Appends the blocks made of `el`'s children to `out`.
    fn blocks_of(&self, el: ElementRef<'_>, depth: usize, out: &mut Vec<Block>) {
        let mut pending: Vec<Inline> = Vec::new();
        for child in el.children() {
            if let Some(t) = child.value().as_text() {
                pending.push(text(t));
                continue;
            }
            let Some(c) = ElementRef::wrap(child) else {
                continue;
            };
            let name = c.value().name();
            if is_dropped(name) {
                continue;
            }
            if depth >= MAX_DEPTH {
                pending.push(Inline::Text {
                    text: collapse(&raw_text(c)),
                });
                continue;
            }
            if name == "br" {
                pending.push(Inline::LineBreak);
                continue;
            }
            if !is_block(name) {
                pending.extend(self.inline(c, depth + 1));
                continue;
            }
            flush(&mut pending, out);
            match name {
                "pre" | "codeblock" => {
                    let code = raw_text(c);
                    let code = code.trim_matches('\n').to_owned();
                    if !code.trim().is_empty() {
                        out.push(Block::CodeBlock {
                            language: code_language(c),
                            code,
                        });
                    }
                }
                "blockquote" => {
                    let mut inner = Vec::new();
                    self.blocks_of(c, depth + 1, &mut inner);
                    if !inner.is_empty() {
                        out.push(Block::Quote { blocks: inner });
                    }
                }
                "ul" | "ol" => {
                    let mut items = Vec::new();
                    let mut loose = Vec::new();
                    for item in c.children() {
                        match ElementRef::wrap(item) {
                            Some(li) if li.value().name() == "li" => {
                                if !loose.is_empty() {
                                    let mut b = Vec::new();
                                    flush(&mut loose, &mut b);
                                    if !b.is_empty() {
                                        items.push(b);
                                    }
                                }
                                let mut b = Vec::new();
                                self.blocks_of(li, depth + 1, &mut b);
                                if !b.is_empty() {
                                    items.push(b);
                                }
                            }
                            Some(other) if !is_dropped(other.value().name()) => {
                                loose.extend(self.inline(other, depth + 1));
                            }
                            Some(_) => {}
                            None => {
                                if let Some(t) = item.value().as_text() {
                                    loose.push(text(t));
                                }
                            }
                        }
                    }
                    let mut b = Vec::new();
                    flush(&mut loose, &mut b);
                    if !b.is_empty() {
                        items.push(b);
                    }
                    if !items.is_empty() {
                        out.push(Block::List {
                            ordered: name == "ol",
                            start: None,
                            items,
                        });
                    }
                }
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                    let inlines = normalize(self.children_inline(c, depth + 1));
                    if !inlines.is_empty() {
                        out.push(Block::Paragraph {
                            inlines: vec![Inline::Bold { inlines }],
                        });
                    }
                }
                "tr" => {
                    let mut row: Vec<Inline> = Vec::new();
                    for cell in c.children().filter_map(ElementRef::wrap) {
                        if !matches!(cell.value().name(), "td" | "th") {
                            continue;
                        }
                        if !row.is_empty() {
                            row.push(Inline::Text { text: " | ".into() });
                        }
                        row.extend(normalize(self.children_inline(cell, depth + 1)));
                    }
                    flush(&mut row, out);
                }
                "hr" => {}
                _ => self.blocks_of(c, depth + 1, out),
            }
        }
        flush(&mut pending, out);
    }

    fn children_inline(&self, el: ElementRef<'_>, depth: usize) -> Vec<Inline> {
        let mut out = Vec::new();
        for child in el.children() {
            if let Some(t) = child.value().as_text() {
                out.push(text(t));
            } else if let Some(c) = ElementRef::wrap(child) {
                if depth >= MAX_DEPTH {
                    if !is_dropped(c.value().name()) {
                        out.push(Inline::Text {
                            text: collapse(&raw_text(c)),
                        });
                    }
                } else {
                    out.extend(self.inline(c, depth + 1));
                }
            }
        }
        out
    }

    /// The inline content of one element.
    fn inline(&self, el: ElementRef<'_>, depth: usize) -> Vec<Inline> {
        let name = el.value().name();
        if is_dropped(name) {
            return Vec::new();
        }
        let wrap = |f: fn(Vec<Inline>) -> Inline, inner: Vec<Inline>| {
            if inner.is_empty() {
                Vec::new()
            } else {
                vec![f(inner)]
            }
        };
        match name {
            "br" => vec![Inline::LineBreak],
            "b" | "strong" => wrap(
                |inlines| Inline::Bold { inlines },
                self.children_inline(el, depth),
            ),
            "i" | "em" => wrap(
                |inlines| Inline::Italic { inlines },
                self.children_inline(el, depth),
            ),
            "s" | "strike" | "del" => wrap(
                |inlines| Inline::Strike { inlines },
                self.children_inline(el, depth),
            ),
            "code" => {
                let code = raw_text(el);
                if code.is_empty() {
                    Vec::new()
                } else {
                    vec![Inline::Code { code }]
                }
            }
            "a" => {
                // links cannot nest in HTML: a link inside a link keeps only its text
                let inner = strip_links(self.children_inline(el, depth));
                match el.value().attr("href").map(str::trim) {
                    Some(href) if is_safe_url(href) => vec![Inline::Link {
                        url: href.to_owned(),
                        inlines: inner,
                    }],
                    _ => inner,
                }
            }
            "at" => self.mention(el),
            "emoji" => {
                let alt = el.value().attr("alt").unwrap_or("").trim();
                if !alt.is_empty() {
                    vec![Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: alt.to_owned(),
                            name: None,
                        },
                    }]
                } else {
                    let title = el.value().attr("title").unwrap_or("").trim();
                    if title.is_empty() {
                        Vec::new()
                    } else {
                        vec![Inline::Text {
                            text: format!("({title})"),
                        }]
                    }
                }
            }
            "img" => {
                let v = el.value();
                let alt = v.attr("alt").unwrap_or("").trim();
                let is_emoji = v
                    .attr("itemtype")
                    .is_some_and(|t| t.to_ascii_lowercase().ends_with("/emoji"));
                if is_emoji && !alt.is_empty() {
                    return vec![Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: alt.to_owned(),
                            name: None,
                        },
                    }];
                }
                let label = if alt.is_empty() { "image" } else { alt };
                match v.attr("src").map(str::trim) {
                    Some(src) if is_safe_url(src) => vec![Inline::Link {
                        url: src.to_owned(),
                        inlines: vec![Inline::Text {
                            text: label.to_owned(),
                        }],
                    }],
                    _ if !alt.is_empty() => vec![Inline::Text {
                        text: format!("[{alt}]"),
                    }],
                    _ => Vec::new(),
                }
            }
            _ if is_block(name) => {
                // a block inside inline content: keep its text on its own line
                let mut inner = self.children_inline(el, depth);
                if !inner.is_empty() {
                    inner.push(Inline::LineBreak);
                }
                inner
            }
            _ => self.children_inline(el, depth),
        }
    }

    fn mention(&self, el: ElementRef<'_>) -> Vec<Inline> {
        let shown = collapse(&raw_text(el)).trim().to_owned();
        let id = el
            .value()
            .attr("id")
            .and_then(|s| s.trim().parse::<i64>().ok());
        let entry = id.and_then(|id| self.mentions.get(&id));
        let fallback = |shown: &str| {
            if shown.is_empty() {
                Vec::new()
            } else {
                vec![Inline::Text {
                    text: format!("@{shown}"),
                }]
            }
        };
        let Some(m) = entry else {
            return fallback(&shown);
        };
        if let Some(user) = &m.mentioned.user {
            if let Some(uid) = user.id.as_deref().and_then(|i| UserId::new(i).ok()) {
                let display_name = if shown.is_empty() {
                    m.mention_text
                        .clone()
                        .or_else(|| user.display_name.clone())
                        .unwrap_or_default()
                } else {
                    shown
                };
                return vec![Inline::Mention {
                    mention: Mention::User {
                        id: uid,
                        display_name,
                    },
                }];
            }
        }
        if let Some(conv) = &m.mentioned.conversation {
            let t = conv.conversation_identity_type.as_deref().unwrap_or("");
            if t.eq_ignore_ascii_case("channel") || t.eq_ignore_ascii_case("team") {
                return vec![Inline::Mention {
                    mention: Mention::Everyone,
                }];
            }
        }
        fallback(&shown)
    }
}

fn text(t: &str) -> Inline {
    Inline::Text { text: collapse(t) }
}

/// HTML whitespace collapsing: every run of ASCII whitespace becomes one space.
fn collapse(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0c') {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

/// The verbatim text of an element (`<br>` and block boundaries as newlines), for code and
/// for content nested too deeply. Iterative, so any depth is fine.
fn raw_text(el: ElementRef<'_>) -> String {
    let mut out = String::new();
    let mut stack = vec![el.children()];
    let mut newline_after: Vec<bool> = Vec::new();
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(child) => {
                if let Some(t) = child.value().as_text() {
                    out.push_str(t);
                } else if let Some(c) = ElementRef::wrap(child) {
                    let name = c.value().name();
                    if is_dropped(name) {
                        continue;
                    }
                    if name == "br" {
                        out.push('\n');
                        continue;
                    }
                    stack.push(c.children());
                    newline_after.push(matches!(name, "p" | "div" | "li" | "tr"));
                }
            }
            None => {
                stack.pop();
                if newline_after.pop() == Some(true) && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn code_language(el: ElementRef<'_>) -> Option<String> {
    let from_class = |e: ElementRef<'_>| {
        e.value().classes().find_map(|c| {
            let l = c.strip_prefix("language-").unwrap_or(c);
            (!l.is_empty()
                && l.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+#-_".contains(ch)))
            .then(|| l.to_ascii_lowercase())
        })
    };
    from_class(el).or_else(|| {
        el.children()
            .filter_map(ElementRef::wrap)
            .find(|c| c.value().name() == "code")
            .and_then(from_class)
    })
}

/// Turns pending inline content into a paragraph (when it has any visible content).
fn flush(pending: &mut Vec<Inline>, out: &mut Vec<Block>) {
    let inlines = normalize(std::mem::take(pending));
    if !inlines.is_empty() {
        out.push(Block::Paragraph { inlines });
    }
}

/// Merges adjacent text, merges a user's split mention (`<at>Jane</at> <at>Smith</at>`),
/// trims whitespace at paragraph edges and around line breaks, and drops what is empty.
fn normalize(inlines: Vec<Inline>) -> Vec<Inline> {
    let mut out: Vec<Inline> = Vec::with_capacity(inlines.len());
    for i in inlines {
        match i {
            Inline::Text { text } if text.is_empty() => {}
            Inline::Text { text } => {
                if let Some(Inline::Text { text: prev }) = out.last_mut() {
                    join_text(prev, &text);
                } else {
                    out.push(Inline::Text { text });
                }
            }
            Inline::Mention {
                mention: Mention::User { id, display_name },
            } => {
                // Teams splits a name into one <at> per word, all for the same user
                let n = out.len();
                let merged = n >= 2
                    && matches!(&out[n - 1], Inline::Text { text } if text.trim().is_empty())
                    && matches!(&out[n - 2], Inline::Mention { mention: Mention::User { id: pid, .. } } if *pid == id);
                if merged {
                    out.pop();
                    if let Some(Inline::Mention {
                        mention:
                            Mention::User {
                                display_name: prev, ..
                            },
                    }) = out.last_mut()
                    {
                        prev.push(' ');
                        prev.push_str(&display_name);
                    }
                } else {
                    out.push(Inline::Mention {
                        mention: Mention::User { id, display_name },
                    });
                }
            }
            Inline::Bold { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Bold { inlines })
            }
            Inline::Italic { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Italic { inlines })
            }
            Inline::Strike { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Strike { inlines })
            }
            Inline::Link { url, inlines } => {
                let inlines = normalize_inner(inlines);
                out.push(Inline::Link { url, inlines });
            }
            other => out.push(other),
        }
    }
    // trim around line breaks and at the edges
    let len = out.len();
    for idx in 0..len {
        let after_break = idx == 0 || matches!(out[idx - 1], Inline::LineBreak);
        let before_break = idx + 1 == len || matches!(out[idx + 1], Inline::LineBreak);
        if let Inline::Text { text } = &mut out[idx] {
            if after_break {
                *text = text.trim_start().to_owned();
            }
            if before_break {
                *text = text.trim_end().to_owned();
            }
        }
    }
    out.retain(|i| !matches!(i, Inline::Text { text } if text.is_empty()));
    while matches!(out.last(), Some(Inline::LineBreak)) {
        out.pop();
    }
    while matches!(out.first(), Some(Inline::LineBreak)) {
        out.remove(0);
    }
    out
}

/// Normalizes nested content without trimming its edges (spaces inside `<b> x </b>` matter
/// to the words around it) except removing empties.
fn normalize_inner(inlines: Vec<Inline>) -> Vec<Inline> {
    let mut out: Vec<Inline> = Vec::with_capacity(inlines.len());
    for i in inlines {
        match i {
            Inline::Text { text } if text.is_empty() => {}
            Inline::Text { text } => {
                if let Some(Inline::Text { text: prev }) = out.last_mut() {
                    join_text(prev, &text);
                } else {
                    out.push(Inline::Text { text });
                }
            }
            Inline::Bold { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Bold { inlines })
            }
            Inline::Italic { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Italic { inlines })
            }
            Inline::Strike { inlines } => {
                push_nonempty(&mut out, inlines, |inlines| Inline::Strike { inlines })
            }
            Inline::Link { url, inlines } => out.push(Inline::Link {
                url,
                inlines: normalize_inner(inlines),
            }),
            other => out.push(other),
        }
    }
    out
}

/// Replaces every link in `inlines` (at any depth) by its content.
fn strip_links(inlines: Vec<Inline>) -> Vec<Inline> {
    let mut out = Vec::with_capacity(inlines.len());
    for i in inlines {
        match i {
            Inline::Link { inlines, .. } => out.extend(strip_links(inlines)),
            Inline::Bold { inlines } => out.push(Inline::Bold {
                inlines: strip_links(inlines),
            }),
            Inline::Italic { inlines } => out.push(Inline::Italic {
                inlines: strip_links(inlines),
            }),
            Inline::Strike { inlines } => out.push(Inline::Strike {
                inlines: strip_links(inlines),
            }),
            other => out.push(other),
        }
    }
    out
}

/// Appends collapsed text to collapsed text without creating a double space.
fn join_text(prev: &mut String, text: &str) {
    if prev.ends_with(' ') {
        prev.push_str(text.strip_prefix(' ').unwrap_or(text));
    } else {
        prev.push_str(text);
    }
}

fn push_nonempty(out: &mut Vec<Inline>, inlines: Vec<Inline>, f: fn(Vec<Inline>) -> Inline) {
    let inner = normalize_inner(inlines);
    let visible = inner
        .iter()
        .any(|i| !matches!(i, Inline::Text { text } if text.trim().is_empty()));
    if visible {
        out.push(f(inner));
        return;
    }
    // formatting around whitespace only: keep the whitespace, drop the formatting
    for i in inner {
        if let Inline::Text { text } = i {
            match out.last_mut() {
                Some(Inline::Text { text: prev }) => join_text(prev, &text),
                _ => out.push(Inline::Text { text }),
            }
        }
    }
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

/// Renders rich text as Teams HTML. User mentions become `<at>` elements with `mentions`
/// entries; channel mentions and `@everyone` are written as text (Graph's conversation
/// mentions need ids the portable model does not carry); custom emoji as `:name:`.
pub fn to_html(rt: &RichText) -> RenderedHtml {
    let mut w = Writer::default();
    for b in &rt.blocks {
        w.block(b);
    }
    RenderedHtml {
        html: w.html,
        mentions: w.mentions,
    }
}

/// Parses and re-renders untrusted HTML: only what the model expresses survives, escaped.
pub fn sanitize(html: &str, mentions: &[ChatMention]) -> RenderedHtml {
    to_html(&from_html(html, mentions))
}

#[derive(Default)]
struct Writer {
    html: String,
    mentions: Vec<ChatMention>,
    /// Inside an `<a>`: links cannot nest, inner ones are written as their text.
    in_link: bool,
}

impl Writer {
    fn block(&mut self, b: &Block) {
        match b {
            Block::Paragraph { inlines } => {
                self.html.push_str("<p>");
                self.inlines(inlines);
                self.html.push_str("</p>");
            }
            Block::CodeBlock { language, code } => {
                match language.as_deref().filter(|l| {
                    !l.is_empty()
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "+#-_".contains(c))
                }) {
                    Some(l) => {
                        self.html.push_str("<pre><code class=\"language-");
                        self.html.push_str(&escape(l));
                        self.html.push_str("\">");
                    }
                    None => self.html.push_str("<pre><code>"),
                }
                self.html.push_str(&escape(code));
                self.html.push_str("</code></pre>");
            }
            Block::Quote { blocks } => {
                self.html.push_str("<blockquote>");
                for b in blocks {
                    self.block(b);
                }
                self.html.push_str("</blockquote>");
            }
            Block::List { ordered, items, .. } => {
                self.html.push_str(if *ordered { "<ol>" } else { "<ul>" });
                for item in items {
                    self.html.push_str("<li>");
                    // a single paragraph item is written inline, as Teams does
                    match item.as_slice() {
                        [Block::Paragraph { inlines }] => self.inlines(inlines),
                        blocks => {
                            for b in blocks {
                                self.block(b);
                            }
                        }
                    }
                    self.html.push_str("</li>");
                }
                self.html.push_str(if *ordered { "</ol>" } else { "</ul>" });
            }
        }
    }

    fn inlines(&mut self, inlines: &[Inline]) {
        for i in inlines {
            self.inline(i);
        }
    }

    fn inline(&mut self, i: &Inline) {
        match i {
            Inline::Text { text } => {
                for (n, line) in text.split('\n').enumerate() {
                    if n > 0 {
                        self.html.push_str("<br>");
                    }
                    self.html.push_str(&escape(line));
                }
            }
            Inline::Bold { inlines } => self.wrap("b", inlines),
            Inline::Italic { inlines } => self.wrap("i", inlines),
            Inline::Strike { inlines } => self.wrap("s", inlines),
            Inline::Code { code } => {
                self.html.push_str("<code>");
                self.html.push_str(&escape(code));
                self.html.push_str("</code>");
            }
            Inline::Link { url, inlines } if self.in_link => {
                if inlines.is_empty() {
                    self.html.push_str(&escape(url));
                } else {
                    self.inlines(inlines);
                }
            }
            Inline::Link { url, inlines } => {
                if is_safe_url(url) {
                    self.html.push_str("<a href=\"");
                    self.html.push_str(&escape(url.trim()));
                    self.html.push_str("\">");
                    if inlines.is_empty() {
                        self.html.push_str(&escape(url.trim()));
                    } else {
                        self.in_link = true;
                        self.inlines(inlines);
                        self.in_link = false;
                    }
                    self.html.push_str("</a>");
                } else if inlines.is_empty() {
                    self.html.push_str(&escape(url));
                } else {
                    self.inlines(inlines);
                }
            }
            Inline::Mention { mention } => match mention {
                Mention::User { id, display_name } => {
                    let n = self.mentions.len() as i64;
                    let name = if display_name.trim().is_empty() {
                        id.as_str().to_owned()
                    } else {
                        display_name.trim().to_owned()
                    };
                    self.html
                        .push_str(&format!("<at id=\"{n}\">{}</at>", escape(&name)));
                    self.mentions.push(ChatMention {
                        id: n,
                        mention_text: Some(name.clone()),
                        mentioned: Mentioned {
                            user: Some(Identity {
                                id: Some(id.as_str().to_owned()),
                                display_name: Some(name),
                                user_identity_type: Some("aadUser".into()),
                            }),
                            ..Default::default()
                        },
                    });
                }
                Mention::Channel { display_name, .. } => {
                    self.html.push('#');
                    self.html.push_str(&escape(display_name));
                }
                Mention::Everyone => self.html.push_str("@everyone"),
                Mention::Here => self.html.push_str("@here"),
            },
            Inline::Emoji { emoji } => match emoji {
                Emoji::Unicode { value, .. } => self.html.push_str(&escape(value)),
                Emoji::Custom { name } => {
                    self.html.push(':');
                    self.html.push_str(&escape(name));
                    self.html.push(':');
                }
            },
            Inline::LineBreak => self.html.push_str("<br>"),
        }
    }

    fn wrap(&mut self, tag: &str, inlines: &[Inline]) {
        self.html.push('<');
        self.html.push_str(tag);
        self.html.push('>');
        self.inlines(inlines);
        self.html.push_str("</");
        self.html.push_str(tag);
        self.html.push('>');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn writes_mentions_with_the_mentions_array() {
        let rt = RichText {
            blocks: vec![para(vec![
                t("ping "),
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("u1").unwrap(),
                        display_name: "Ann <Admin>".into(),
                    },
                },
                t(" & "),
                Inline::Mention {
                    mention: Mention::User {
                        id: UserId::new("u2").unwrap(),
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
            serde_json::json!({"id":0,"mentionText":"Ann <Admin>","mentioned":{"user":{"id":"u1","displayName":"Ann <Admin>","userIdentityType":"aadUser"}}})
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
