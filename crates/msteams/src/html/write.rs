//! Writing: the portable model into Teams HTML plus its `mentions` array.

use switchboard_core::{Block, Emoji, Inline, Mention, RichText};

use super::{MAX_DEPTH, RenderedHtml, escape, is_safe_url};
use crate::wire::{ChatMention, Identity, Mentioned};

/// Renders rich text as Teams HTML, escaped by construction: every text and attribute value
/// goes through [`escape`], links only keep `http`, `https` and `mailto` targets, and list
/// start numbers and code languages are checked to be a number and a word.
///
/// User mentions become `<at>` elements with `mentions` entries only when the id is a Graph
/// user id (a GUID, the user's Entra object id); any other id is written as the text
/// `@Name`. Channel mentions, [`Mention::Everyone`] and [`Mention::Here`] are written as text
/// (Graph's conversation mentions need ids the portable model does not carry), so the output
/// never holds a mass mention. A Unicode emoji the emoji table does not know is written as
/// escaped text; custom emoji as `:name:`. Nesting deeper than [`MAX_DEPTH`] is written as
/// its text.
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

#[derive(Default)]
struct Writer {
    html: String,
    mentions: Vec<ChatMention>,
    /// Inside an `<a>`: links cannot nest, inner ones are written as their text.
    in_link: bool,
    /// How deeply nested the element being written is.
    depth: usize,
}

impl Writer {
    fn block(&mut self, b: &Block) {
        if self.depth >= MAX_DEPTH {
            let mut text = String::new();
            block_text(b, &mut text);
            self.html.push_str("<p>");
            self.text(&text);
            self.html.push_str("</p>");
            return;
        }
        self.depth += 1;
        self.block_at_depth(b);
        self.depth -= 1;
    }

    fn block_at_depth(&mut self, b: &Block) {
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
            Block::List {
                ordered,
                start,
                items,
            } => {
                match start.filter(|n| *ordered && *n != 1) {
                    // a u64 formats as digits only: nothing to escape
                    Some(n) => self.html.push_str(&format!("<ol start=\"{n}\">")),
                    None => self.html.push_str(if *ordered { "<ol>" } else { "<ul>" }),
                }
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

    /// Escaped text, newlines as `<br>`.
    fn text(&mut self, text: &str) {
        for (n, line) in text.split('\n').enumerate() {
            if n > 0 {
                self.html.push_str("<br>");
            }
            self.html.push_str(&escape(line));
        }
    }

    fn inline(&mut self, i: &Inline) {
        if self.depth >= MAX_DEPTH {
            let mut text = String::new();
            inline_text(i, &mut text);
            self.text(&text);
            return;
        }
        self.depth += 1;
        self.inline_at_depth(i);
        self.depth -= 1;
    }

    fn inline_at_depth(&mut self, i: &Inline) {
        match i {
            Inline::Text { text } => self.text(text),
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
                Mention::User { id, display_name } if !is_graph_user_id(id.as_str()) => {
                    // not a Graph user: never an <at>, never a mentions entry
                    let name = display_name.trim();
                    self.html.push('@');
                    self.html
                        .push_str(&escape(if name.is_empty() { id.as_str() } else { name }));
                }
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
                Emoji::Unicode { value, name } => match emojis::get(value) {
                    // as given (skin tone and qualification kept), escaped all the same
                    Some(_) => self.html.push_str(&escape(value)),
                    // not an emoji the table knows: by its shortcode if that is one, else
                    // the value as escaped text
                    None => match name.as_deref().and_then(emojis::get_by_shortcode) {
                        Some(e) => self.html.push_str(&escape(e.as_str())),
                        None => self.html.push_str(&escape(value)),
                    },
                },
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

/// Whether `id` is a Graph user id: a GUID (`8-4-4-4-12` hex digits), the form of an Entra
/// object id.
pub(crate) fn is_graph_user_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The text of a block, iteratively (any depth), for content nested too deeply to write.
fn block_text(b: &Block, out: &mut String) {
    let mut stack: Vec<Node<'_>> = vec![Node::Block(b)];
    walk_text(&mut stack, out);
}

/// The text of an inline, iteratively (any depth).
fn inline_text(i: &Inline, out: &mut String) {
    let mut stack: Vec<Node<'_>> = vec![Node::Inline(i)];
    walk_text(&mut stack, out);
}

enum Node<'a> {
    Block(&'a Block),
    Inline(&'a Inline),
    Sep(&'static str),
}

fn walk_text(stack: &mut Vec<Node<'_>>, out: &mut String) {
    while let Some(n) = stack.pop() {
        match n {
            Node::Sep(s) => out.push_str(s),
            Node::Block(b) => match b {
                Block::Paragraph { inlines } => {
                    stack.push(Node::Sep("\n"));
                    stack.extend(inlines.iter().rev().map(Node::Inline));
                }
                Block::CodeBlock { code, .. } => {
                    out.push_str(code);
                    out.push('\n');
                }
                Block::Quote { blocks } => stack.extend(blocks.iter().rev().map(Node::Block)),
                Block::List { items, .. } => {
                    for item in items.iter().rev() {
                        stack.extend(item.iter().rev().map(Node::Block));
                    }
                }
            },
            Node::Inline(i) => match i {
                Inline::Text { text } => out.push_str(text),
                Inline::Code { code } => out.push_str(code),
                Inline::Bold { inlines }
                | Inline::Italic { inlines }
                | Inline::Strike { inlines } => {
                    stack.extend(inlines.iter().rev().map(Node::Inline))
                }
                Inline::Link { url, inlines } if inlines.is_empty() => out.push_str(url),
                Inline::Link { inlines, .. } => {
                    stack.extend(inlines.iter().rev().map(Node::Inline))
                }
                Inline::Mention { mention } => match mention {
                    Mention::User { display_name, .. } => {
                        out.push('@');
                        out.push_str(display_name.trim());
                    }
                    Mention::Channel { display_name, .. } => {
                        out.push('#');
                        out.push_str(display_name);
                    }
                    Mention::Everyone => out.push_str("@everyone"),
                    Mention::Here => out.push_str("@here"),
                },
                Inline::Emoji { emoji } => match emoji {
                    Emoji::Unicode { value, .. } => out.push_str(value),
                    Emoji::Custom { name } => {
                        out.push(':');
                        out.push_str(name);
                        out.push(':');
                    }
                },
                Inline::LineBreak => out.push('\n'),
            },
        }
    }
}
