//! A bounded document tree built from html5ever's tokenizer.
//!
//! html5ever's tokenizer decides what is a tag, an attribute, a comment or text and decodes
//! character references, exactly as a browser does. The tree is built here rather than by
//! html5ever's tree builder, whose HTML5 algorithms cost more than linear time on hostile
//! input: rebuilding the list of active formatting elements after every block (`<b id=N>`
//! ×k then `</p><p>x` ×k makes k² elements) and scanning a deep stack of open elements on
//! every tag (`<div>` ×n). The rules here are the subset of HTML5 tree construction that
//! matters to message content, each O(1) per token:
//!
//! - the stack of open elements is at most [`MAX_TREE_DEPTH`] deep; start tags beyond it add
//!   no element (their content lands in the deepest one, so the text survives, flattened);
//! - scope lookups stop at HTML5's scope boundaries and never look further than the
//!   (bounded) stack;
//! - implied end tags: a block closes an open `<p>`, `<li>` closes the previous item,
//!   `<dt>`/`<dd>`, table rows and cells, headings, and a link closes an open link;
//! - formatting elements are not reconstructed across blocks: `<p><b>x</p>y` leaves `y`
//!   plain (a browser would make it bold). Teams writes well-formed HTML, so this only
//!   changes the rendering of markup that was broken to begin with;
//! - elements whose content is dropped ([`super::DROPPED`]) keep no nodes at all;
//! - only the attributes the reader uses are kept.
//!
//! Every token adds at most one node, so the tree has at most as many nodes as the input has
//! tokens.

use std::cell::RefCell;

use html5ever::LocalName;
use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};

use super::lex::{RAW_TEXT, bound_attributes};

/// The deepest nesting of elements kept; deeper start tags are flattened.
pub(crate) const MAX_TREE_DEPTH: usize = 64;

/// The attributes the reader looks at, per element; all others are discarded while
/// building.
fn kept_attr(element: &str, attr: &str) -> Option<&'static str> {
    let keep: &[&'static str] = match element {
        "a" => &["href"],
        "img" => &["src", "alt", "itemtype"],
        "emoji" => &["alt", "title"],
        "at" => &["id"],
        "ol" => &["start"],
        "pre" | "code" | "codeblock" => &["class"],
        _ => &[],
    };
    keep.iter().copied().find(|k| *k == attr)
}

/// Elements that never have content (not pushed on the stack).
const VOID: &[&str] = &[
    "area", "base", "basefont", "bgsound", "br", "col", "embed", "frame", "hr", "img", "input",
    "keygen", "link", "meta", "param", "source", "track", "wbr",
];

/// Start tags that close an open `<p>` (HTML5 "close a p element").
const CLOSES_P: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "listing",
    "main",
    "menu",
    "nav",
    "ol",
    "p",
    "plaintext",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
    "li",
    "dd",
    "dt",
    "xmp",
];

/// HTML5's "has an element in scope" boundaries.
const SCOPE: &[&str] = &[
    "applet", "caption", "html", "table", "td", "th", "marquee", "object", "template",
];

/// Tags that are ignored in a fragment (their content is not).
const IGNORED: &[&str] = &["html", "head", "body"];

/// What an open element is, as bits, so that scope lookups compare integers.
mod flag {
    pub const P: u16 = 1;
    pub const BUTTON: u16 = 1 << 1;
    pub const LI: u16 = 1 << 2;
    pub const LIST: u16 = 1 << 3;
    pub const DD_DT: u16 = 1 << 4;
    pub const DL: u16 = 1 << 5;
    pub const A: u16 = 1 << 6;
    pub const TR: u16 = 1 << 7;
    pub const CELL: u16 = 1 << 8;
    pub const TABLE: u16 = 1 << 9;
    pub const SECTION: u16 = 1 << 10;
    pub const OPTION: u16 = 1 << 11;
    pub const SCOPE: u16 = 1 << 12;
    pub const HEADING: u16 = 1 << 13;
}

fn flags_of(name: &str) -> u16 {
    use flag::*;
    match name {
        "p" => P,
        "button" => BUTTON,
        "li" => LI,
        "ul" | "ol" => LIST,
        "dd" | "dt" => DD_DT,
        "dl" => DL,
        "a" => A,
        "tr" => TR,
        "td" | "th" => CELL | SCOPE,
        "table" => TABLE | SCOPE,
        "thead" | "tbody" | "tfoot" => SECTION,
        "option" => OPTION,
        "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => HEADING,
        n if self::SCOPE.contains(&n) => flag::SCOPE,
        _ => 0,
    }
}

/// A node id in [`Tree`].
pub(super) type NodeId = usize;

/// What a node is.
#[derive(Debug)]
pub(super) enum Data {
    /// The fragment root.
    Root,
    /// An element with its kept attributes.
    Element {
        name: LocalName,
        attrs: Vec<(&'static str, String)>,
    },
    /// Decoded text.
    Text(String),
}

#[derive(Debug)]
pub(super) struct Node {
    pub data: Data,
    pub children: Vec<NodeId>,
}

/// The parsed fragment: an arena, node 0 is the root.
#[derive(Debug)]
pub(super) struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Tokenizes `html` (after bounding attributes per tag) and builds the tree.
    pub(super) fn parse(html: &str) -> Tree {
        let html = bound_attributes(html);
        let sink = Sink(RefCell::new(Builder::new()));
        let tok = Tokenizer::new(sink, TokenizerOpts::default());
        let input = BufferQueue::default();
        input.push_back(StrTendril::from_slice(&html));
        let _ = tok.feed(&input);
        tok.end();
        tok.sink.0.into_inner().tree
    }

    /// The root.
    pub(super) fn root(&self) -> El<'_> {
        El { tree: self, id: 0 }
    }

    /// How many nodes the tree has.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.nodes.len()
    }
}

/// A child of an element: text or an element.
#[derive(Clone, Copy)]
pub(super) enum Child<'t> {
    Text(&'t str),
    Element(El<'t>),
}

impl<'t> Child<'t> {
    pub(super) fn as_text(self) -> Option<&'t str> {
        match self {
            Child::Text(t) => Some(t),
            Child::Element(_) => None,
        }
    }

    pub(super) fn as_element(self) -> Option<El<'t>> {
        match self {
            Child::Element(e) => Some(e),
            Child::Text(_) => None,
        }
    }
}

/// An element (or the root, named `""`) of a [`Tree`].
#[derive(Clone, Copy)]
pub(super) struct El<'t> {
    tree: &'t Tree,
    id: NodeId,
}

impl<'t> El<'t> {
    /// The lower-case tag name (`""` for the root).
    pub(super) fn name(self) -> &'t str {
        match &self.tree.nodes[self.id].data {
            Data::Element { name, .. } => name,
            _ => "",
        }
    }

    /// A kept attribute's value.
    pub(super) fn attr(self, name: &str) -> Option<&'t str> {
        match &self.tree.nodes[self.id].data {
            Data::Element { attrs, .. } => attrs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }

    /// The classes of `class`.
    pub(super) fn classes(self) -> impl Iterator<Item = &'t str> {
        self.attr("class").unwrap_or("").split_ascii_whitespace()
    }

    /// The children, in order.
    pub(super) fn children(self) -> impl Iterator<Item = Child<'t>> + 't {
        let tree = self.tree;
        tree.nodes[self.id]
            .children
            .iter()
            .map(move |&c| match &tree.nodes[c].data {
                Data::Text(t) => Child::Text(t),
                _ => Child::Element(El { tree, id: c }),
            })
    }
}

struct Sink(RefCell<Builder>);

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        self.0.borrow_mut().token(token)
    }
}

struct Open {
    name: LocalName,
    /// [`flags_of`] the name.
    flags: u16,
    /// `None` inside a dropped element.
    node: Option<NodeId>,
}

struct Builder {
    tree: Tree,
    stack: Vec<Open>,
    /// Start tags not pushed because the stack was full, whose end tags are still to come
    /// (conceptually open above the top of the stack).
    overflow: usize,
}

fn kind_of(name: &str) -> TokenSinkResult<()> {
    match name {
        "title" | "textarea" => TokenSinkResult::RawData(RawKind::Rcdata),
        "plaintext" => TokenSinkResult::Plaintext,
        // script as RAWTEXT too: its content is dropped, and the pre-pass (`lex`) mirrors
        // exactly this
        n if RAW_TEXT.contains(&n) => TokenSinkResult::RawData(RawKind::Rawtext),
        _ => TokenSinkResult::Continue,
    }
}

impl Builder {
    fn new() -> Builder {
        Builder {
            tree: Tree {
                nodes: vec![Node {
                    data: Data::Root,
                    children: Vec::new(),
                }],
            },
            stack: Vec::new(),
            overflow: 0,
        }
    }

    /// Where content goes now; `None` inside a dropped element.
    fn current(&self) -> Option<NodeId> {
        match self.stack.last() {
            None => Some(0),
            Some(o) => o.node,
        }
    }

    fn token(&mut self, token: Token) -> TokenSinkResult<()> {
        match token {
            Token::CharacterTokens(t) => self.text(&t),
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => {
                    let attrs = tag
                        .attrs
                        .iter()
                        .filter_map(|a| {
                            kept_attr(&tag.name, &a.name.local).map(|k| (k, a.value.to_string()))
                        })
                        .collect();
                    let kind = kind_of(&tag.name);
                    self.start(tag.name, attrs);
                    return kind;
                }
                TagKind::EndTag => self.end(&tag.name),
            },
            _ => {}
        }
        TokenSinkResult::Continue
    }

    fn text(&mut self, t: &str) {
        let Some(parent) = self.current() else {
            return;
        };
        let nodes = &mut self.tree.nodes;
        if let Some(&last) = nodes[parent].children.last() {
            if let Data::Text(prev) = &mut nodes[last].data {
                prev.push_str(t);
                return;
            }
        }
        self.append(parent, Data::Text(t.to_owned()));
    }

    fn append(&mut self, parent: NodeId, data: Data) -> NodeId {
        let id = self.tree.nodes.len();
        self.tree.nodes.push(Node {
            data,
            children: Vec::new(),
        });
        self.tree.nodes[parent].children.push(id);
        id
    }

    /// The index in the stack of the topmost element with a `target` flag, looking down no
    /// further than a scope boundary or an element with a `stop` flag. At most
    /// [`MAX_TREE_DEPTH`] integer tests.
    fn in_scope(&self, target: u16, stop: u16) -> Option<usize> {
        for (i, o) in self.stack.iter().enumerate().rev() {
            if o.flags & target != 0 {
                return Some(i);
            }
            if o.flags & (flag::SCOPE | stop) != 0 {
                return None;
            }
        }
        None
    }

    /// The same for an element by name (compared as atoms).
    fn named_in_scope(&self, name: &LocalName) -> Option<usize> {
        for (i, o) in self.stack.iter().enumerate().rev() {
            if o.name == *name {
                return Some(i);
            }
            if o.flags & flag::SCOPE != 0 {
                return None;
            }
        }
        None
    }

    /// Pops the element at `i` and everything above it, including the elements not pushed
    /// because of the depth cap (they were above the top).
    fn pop_to(&mut self, i: usize) {
        self.stack.truncate(i);
        self.overflow = 0;
    }

    fn start(&mut self, local: LocalName, attrs: Vec<(&'static str, String)>) {
        let local = if &*local == "image" {
            LocalName::from("img")
        } else {
            local
        };
        let name: &str = &local;
        if IGNORED.contains(&name) {
            return;
        }
        let flags = flags_of(name);
        // implied end tags
        if CLOSES_P.contains(&name) {
            if let Some(i) = self.in_scope(flag::P, flag::BUTTON) {
                self.pop_to(i);
            }
        }
        if flags & flag::HEADING != 0
            && self.overflow == 0
            && self
                .stack
                .last()
                .is_some_and(|o| o.flags & flag::HEADING != 0)
        {
            let top = self.stack.len() - 1;
            self.pop_to(top);
        }
        let found = match name {
            "li" => self.in_scope(flag::LI, flag::LIST),
            "dd" | "dt" => self.in_scope(flag::DD_DT, flag::DL),
            "a" => self.in_scope(flag::A, 0),
            "option" => self.in_scope(flag::OPTION, 0),
            // a cell is itself a scope boundary: the nearest cell, row or table decides
            "td" | "th" => self
                .stack
                .iter()
                .rposition(|o| o.flags & (flag::CELL | flag::TR | flag::TABLE) != 0)
                .filter(|&i| self.stack[i].flags & flag::CELL != 0),
            // rows and sections: look down to the nearest table
            "tr" => self
                .stack
                .iter()
                .rposition(|o| o.flags & (flag::TR | flag::TABLE) != 0)
                .filter(|&i| self.stack[i].flags & flag::TABLE == 0),
            "thead" | "tbody" | "tfoot" => self
                .stack
                .iter()
                .rposition(|o| o.flags & (flag::SECTION | flag::TABLE) != 0)
                .filter(|&i| self.stack[i].flags & flag::TABLE == 0),
            _ => None,
        };
        if let Some(i) = found {
            self.pop_to(i);
        }
        let void = VOID.contains(&name);
        let parent = self.current();
        if !void && self.stack.len() >= MAX_TREE_DEPTH {
            self.overflow += 1;
            return;
        }
        let node = match parent {
            Some(p) if !super::is_dropped(name) => Some(self.append(
                p,
                Data::Element {
                    name: local.clone(),
                    attrs,
                },
            )),
            _ => None,
        };
        if !void {
            self.stack.push(Open {
                name: local.clone(),
                flags,
                node,
            });
        }
    }

    fn end(&mut self, name: &LocalName) {
        if &**name == "br" {
            // `</br>` is a line break in HTML5
            self.start(LocalName::from("br"), Vec::new());
            return;
        }
        if IGNORED.contains(&&**name) || VOID.contains(&&**name) {
            return;
        }
        if self.overflow > 0 {
            self.overflow -= 1;
            return;
        }
        let found = match &**name {
            "p" => self.in_scope(flag::P, flag::BUTTON),
            "li" => self.in_scope(flag::LI, flag::LIST),
            // closing a boundary itself: the nearest one of that name
            n if SCOPE.contains(&n) => self.stack.iter().rposition(|o| o.name == *name),
            _ => self.named_in_scope(name),
        };
        if let Some(i) = found {
            self.pop_to(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(el: El<'_>, out: &mut String) {
        for c in el.children() {
            match c {
                Child::Text(t) => out.push_str(t),
                Child::Element(e) => {
                    out.push('<');
                    out.push_str(e.name());
                    out.push('>');
                    shape(e, out);
                    out.push_str("</");
                    out.push_str(e.name());
                    out.push('>');
                }
            }
        }
    }

    fn tree(html: &str) -> String {
        let t = Tree::parse(html);
        let mut s = String::new();
        shape(t.root(), &mut s);
        s
    }

    #[test]
    fn builds_the_usual_shapes() {
        assert_eq!(tree("<p>a<p>b"), "<p>a</p><p>b</p>");
        assert_eq!(tree("<p>a<div>b</div>c</p>"), "<p>a</p><div>b</div>c");
        assert_eq!(
            tree("<ul><li>a<li>b<ul><li>c</ul></ul>"),
            "<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul>"
        );
        assert_eq!(
            tree("<table><tr><td>a<td>b<tr><td>c</table>x"),
            "<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>x"
        );
        assert_eq!(tree("<a href=x>1<a href=y>2</a>"), "<a>1</a><a>2</a>");
        assert_eq!(tree("a</br>b"), "a<br></br>b");
        assert_eq!(tree("<b>x<script>if(a<b)</b></script>y</b>z"), "<b>xy</b>z");
        assert_eq!(tree("<svg><g><b>x</b></g></svg>y"), "y");
        assert_eq!(tree("x&lt;&amp;&eacute;<!-- c --><!doctype html>"), "x<&é");
        assert_eq!(tree("<h1>a<h2>b</h2>"), "<h1>a</h1><h2>b</h2>");
        assert_eq!(tree("<td>a</td><b>b</b>"), "<td>a</td><b>b</b>");
    }

    #[test]
    fn depth_is_bounded_and_nodes_are_linear() {
        let html = "<div>".repeat(10_000) + "x" + &"</div>".repeat(10_000) + "after";
        let t = Tree::parse(&html);
        assert!(t.len() <= MAX_TREE_DEPTH + 4, "{}", t.len());
        let s = tree(&html);
        assert!(s.contains('x') && s.ends_with("after"), "{s}");
        // the active formatting elements attack: no reconstruction, so no k² nodes
        let k = 1400;
        let attack = "<p>".to_owned()
            + &(0..k).map(|i| format!("<b id={i}>")).collect::<String>()
            + &"</p><p>x".repeat(k);
        let t = Tree::parse(&attack);
        assert!(t.len() <= 4 * k, "{} nodes", t.len());
    }
}
