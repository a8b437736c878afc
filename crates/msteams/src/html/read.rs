//! Reading: Teams HTML (or a plain-text body) into the portable model.

use std::collections::HashMap;

use switchboard_core::{Block, Emoji, Inline, Mention, RichText, UserId};

use super::tree::{Child, El, Tree};
use super::{MAX_DEPTH, MAX_HTML_BYTES, TRUNCATION_MARKER, is_block, is_dropped, is_safe_url};
use crate::wire::ChatMention;

/// The longest display name taken from a `mentions` entry (Graph's `displayName` limit), so
/// an `<at>` of a few bytes can never expand into much more output.
const MAX_NAME_CHARS: usize = 256;

/// Parses Teams message HTML into rich text, resolving `<at id>` through `mentions`.
///
/// Outside HTML over [`MAX_HTML_BYTES`] is cut there (before a tag the cut would split) and
/// [`TRUNCATION_MARKER`] is appended, so nothing is lost silently. Time and memory are linear
/// in the input (see [`from_html_uncapped`]).
pub fn from_html(html: &str, mentions: &[ChatMention]) -> RichText {
    if html.len() <= MAX_HTML_BYTES {
        return from_html_uncapped(html, mentions);
    }
    let mut rt = from_html_uncapped(cut(html, MAX_HTML_BYTES), mentions);
    rt.blocks.push(Block::Paragraph {
        inlines: vec![Inline::Text {
            text: TRUNCATION_MARKER.to_owned(),
        }],
    });
    rt
}

/// [`from_html`] without the input cap, for callers that bound the input themselves and for
/// measuring that the conversion is linear (`benches/converters.rs`). Every input of length
/// n costs O(n) time and memory: attributes per tag are capped before tokenizing, the tree
/// is built without HTML5's quadratic algorithms and with bounded depth, and the reader
/// visits each node a bounded number of times.
pub fn from_html_uncapped(html: &str, mentions: &[ChatMention]) -> RichText {
    let tree = Tree::parse(html);
    let reader = Reader {
        mentions: mentions.iter().map(|m| (m.id, m)).collect(),
    };
    let mut blocks = Vec::new();
    reader.blocks_of(tree.root(), 0, &mut blocks);
    RichText { blocks }
}

/// `html` cut to at most `max` bytes on a character boundary, and before a tag the cut
/// would leave open (so the cut never turns half a tag into text).
fn cut(html: &str, max: usize) -> &str {
    let mut end = max.min(html.len());
    while !html.is_char_boundary(end) {
        end -= 1;
    }
    let head = &html[..end];
    match (head.rfind('<'), head.rfind('>')) {
        (Some(lt), Some(gt)) if lt > gt => &head[..lt],
        (Some(lt), None) => &head[..lt],
        _ => head,
    }
}

/// Converts plain text (a `text` body) into rich text: one paragraph per blank-line
/// separated chunk, single newlines kept as line breaks. Like [`from_html`], text over
/// [`MAX_HTML_BYTES`] is cut there and ends with [`TRUNCATION_MARKER`].
pub fn from_plain_text(text: &str) -> RichText {
    let mut end = text.len().min(MAX_HTML_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut blocks = Vec::new();
    for chunk in text[..end].replace("\r\n", "\n").split("\n\n") {
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
    if end < text.len() {
        blocks.push(Block::Paragraph {
            inlines: vec![Inline::Text {
                text: TRUNCATION_MARKER.to_owned(),
            }],
        });
    }
    RichText { blocks }
}

struct Reader<'m> {
    mentions: HashMap<i64, &'m ChatMention>,
}

impl Reader<'_> {
    /// Appends the blocks made of `el`'s children to `out`.
    fn blocks_of(&self, el: El<'_>, depth: usize, out: &mut Vec<Block>) {
        let mut pending: Vec<Inline> = Vec::new();
        for child in el.children() {
            if let Some(t) = child.as_text() {
                pending.push(text(t));
                continue;
            }
            let Some(c) = child.as_element() else {
                continue;
            };
            let name = c.name();
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
                // a break before any content would be trimmed by `flush` anyway: never
                // collect it (`<br>` ×n then text costs no memory per break)
                if !pending.is_empty() {
                    pending.push(Inline::LineBreak);
                }
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
                        match item.as_element() {
                            Some(li) if li.name() == "li" => {
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
                            Some(other) if !is_dropped(other.name()) => {
                                loose.extend(self.inline(other, depth + 1));
                            }
                            Some(_) => {}
                            None => {
                                if let Some(t) = item.as_text() {
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
                        let ordered = name == "ol";
                        out.push(Block::List {
                            ordered,
                            start: if ordered { list_start(c) } else { None },
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
                    for cell in c.children().filter_map(Child::as_element) {
                        if !matches!(cell.name(), "td" | "th") {
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

    fn children_inline(&self, el: El<'_>, depth: usize) -> Vec<Inline> {
        let mut out = Vec::new();
        for child in el.children() {
            if let Some(t) = child.as_text() {
                out.push(text(t));
            } else if let Some(c) = child.as_element() {
                if depth >= MAX_DEPTH {
                    if !is_dropped(c.name()) {
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
    fn inline(&self, el: El<'_>, depth: usize) -> Vec<Inline> {
        let name = el.name();
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
                match el.attr("href").map(str::trim) {
                    Some(href) if is_safe_url(href) => vec![Inline::Link {
                        url: href.to_owned(),
                        inlines: inner,
                    }],
                    _ => inner,
                }
            }
            "at" => self.mention(el),
            "emoji" => {
                let alt = el.attr("alt").unwrap_or("").trim();
                if is_emoji(alt) {
                    vec![Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: alt.to_owned(),
                            name: None,
                        },
                    }]
                } else if !alt.is_empty() {
                    // not a Unicode emoji the table knows: plain text, never an emoji
                    vec![Inline::Text {
                        text: collapse(alt),
                    }]
                } else {
                    let title = el.attr("title").unwrap_or("").trim();
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
                let v = el;
                let alt = v.attr("alt").unwrap_or("").trim();
                let is_emoji = v
                    .attr("itemtype")
                    .is_some_and(|t| t.to_ascii_lowercase().ends_with("/emoji"));
                if is_emoji && self::is_emoji(alt) {
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

    fn mention(&self, el: El<'_>) -> Vec<Inline> {
        let shown = collapse(&raw_text(el)).trim().to_owned();
        let id = el.attr("id").and_then(|s| s.trim().parse::<i64>().ok());
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
                    let name = m
                        .mention_text
                        .as_deref()
                        .or(user.display_name.as_deref())
                        .unwrap_or_default();
                    collapse(name).trim().chars().take(MAX_NAME_CHARS).collect()
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

/// Whether `s` is a Unicode emoji the emoji table knows (any qualification, any skin tone).
fn is_emoji(s: &str) -> bool {
    !s.is_empty() && emojis::get(s).is_some()
}

/// The start number of `<ol start="N">` when it is not 1 (the model's default). Values that
/// are not a plain non-negative integer (`-3`, `1e3`, `x`) are ignored, as HTML would
/// mostly do for a list the model can express.
fn list_start(ol: El<'_>) -> Option<u64> {
    let v = ol.attr("start")?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>().ok().filter(|n| *n != 1)
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
fn raw_text(el: El<'_>) -> String {
    let mut out = String::new();
    let mut stack = vec![el.children()];
    let mut newline_after: Vec<bool> = Vec::new();
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(child) => {
                if let Some(t) = child.as_text() {
                    out.push_str(t);
                } else if let Some(c) = child.as_element() {
                    let name = c.name();
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

fn code_language(el: El<'_>) -> Option<String> {
    let from_class = |e: El<'_>| {
        e.classes().find_map(|c| {
            let l = c.strip_prefix("language-").unwrap_or(c);
            (!l.is_empty()
                && l.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+#-_".contains(ch)))
            .then(|| l.to_ascii_lowercase())
        })
    };
    from_class(el).or_else(|| {
        el.children()
            .filter_map(Child::as_element)
            .find(|c| c.name() == "code")
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
    // leading breaks go in one O(n) drain, never one `remove(0)` at a time
    let leading = out
        .iter()
        .take_while(|i| matches!(i, Inline::LineBreak))
        .count();
    out.drain(..leading);
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
