//! A linear pre-pass over outside HTML that bounds what one tag can cost the tokenizer.
//!
//! html5ever checks every new attribute of a tag against all earlier ones (duplicate
//! detection), so a tag with k attributes costs k²: `<b a1 a2 … a50000>` would take seconds.
//! This pass follows the HTML5 tokenizer's tag, comment and raw-text states closely enough to
//! find attribute boundaries exactly as html5ever will, and drops every attribute after the
//! first [`MAX_ATTRS`] of a tag. Nothing else changes: text, comments and the first
//! attributes are copied byte for byte. It is one forward scan, O(n).
//!
//! Raw-text elements are skipped to their end tag exactly as the tree builder
//! ([`super::tree`]) tells the tokenizer to: `script`, `style`, `xmp`, `iframe`, `noembed`,
//! `noframes`, `noscript` (RAWTEXT), `title`, `textarea` (RCDATA), `plaintext` (to the end).

/// Attributes kept per tag; later ones are dropped before tokenizing.
pub(crate) const MAX_ATTRS: usize = 64;

/// Elements whose content the tokenizer reads as raw text up to `</name`.
pub(super) const RAW_TEXT: &[&str] = &[
    "script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "title", "textarea",
];

fn is_ws(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    TagName,
    BeforeAttrName,
    AttrName,
    AfterAttrName,
    BeforeAttrValue,
    Dq,
    Sq,
    Unquoted,
    AfterQuoted,
    SelfClosing,
}

/// Copies `html`, keeping at most [`MAX_ATTRS`] attributes per tag.
pub(super) fn bound_attributes(html: &str) -> String {
    let b = html.as_bytes();
    let n = b.len();
    let mut out = String::with_capacity(n);
    // `copied` is the end of what has been copied to `out`
    let mut copied = 0;
    let mut i = 0;
    while i < n {
        if b[i] != b'<' {
            // the next '<' (a linear skip of text)
            i += b[i..].iter().position(|&c| c == b'<').unwrap_or(n - i);
            continue;
        }
        let next = b.get(i + 1).copied();
        match next {
            Some(c) if c.is_ascii_alphabetic() => {}
            Some(b'/') if b.get(i + 2).is_some_and(u8::is_ascii_alphabetic) => {}
            Some(b'/') if b.get(i + 2) == Some(&b'>') => {
                i += 3;
                continue;
            }
            Some(b'/') | Some(b'?') => {
                i = bogus_comment_end(b, i + 2);
                continue;
            }
            Some(b'!') => {
                i = if b[i + 2..].starts_with(b"--") {
                    comment_end(b, i + 4)
                } else {
                    bogus_comment_end(b, i + 2)
                };
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        }
        // a start or end tag
        let end_tag = next == Some(b'/');
        let name_start = if end_tag { i + 2 } else { i + 1 };
        let tag = lex_tag(b, name_start);
        if let Some(cut) = tag.cut {
            out.push_str(&html[copied..cut]);
            copied = match tag.end {
                Some(e) => e - 1, // keep the closing '>'
                None => n,        // EOF inside the tag: html5ever drops it anyway
            };
        }
        let Some(end) = tag.end else {
            break;
        };
        i = end;
        if !end_tag {
            let name = html[name_start..tag.name_end].to_ascii_lowercase();
            if name == "plaintext" {
                break;
            }
            if RAW_TEXT.contains(&name.as_str()) {
                i = raw_text_end(b, i, name.as_bytes());
            }
        }
    }
    out.push_str(&html[copied..]);
    out
}

struct Lexed {
    /// Where the tag name ends.
    name_end: usize,
    /// Just past the tag's closing '>', or `None` at EOF.
    end: Option<usize>,
    /// Where the first attribute over the limit starts, if any.
    cut: Option<usize>,
}

/// Follows the HTML5 tokenizer from a tag name to the end of the tag.
fn lex_tag(b: &[u8], start: usize) -> Lexed {
    let n = b.len();
    let mut st = St::TagName;
    let mut name_end = n;
    let mut attrs = 0;
    let mut cut = None;
    let mut i = start;
    // a new attribute starts at `i`
    let mut begin_attr = |i: usize, cut: &mut Option<usize>| {
        attrs += 1;
        if attrs > MAX_ATTRS && cut.is_none() {
            *cut = Some(i);
        }
    };
    while i < n {
        let c = b[i];
        match st {
            St::TagName => {
                if is_ws(c) {
                    name_end = i;
                    st = St::BeforeAttrName;
                } else if c == b'/' {
                    name_end = i;
                    st = St::SelfClosing;
                } else if c == b'>' {
                    return Lexed {
                        name_end: i,
                        end: Some(i + 1),
                        cut,
                    };
                }
            }
            St::BeforeAttrName => {
                if is_ws(c) {
                } else if c == b'/' || c == b'>' {
                    st = St::AfterAttrName;
                    continue;
                } else {
                    begin_attr(i, &mut cut);
                    st = St::AttrName;
                }
            }
            St::AttrName => {
                if is_ws(c) || c == b'/' || c == b'>' {
                    st = St::AfterAttrName;
                    continue;
                } else if c == b'=' {
                    st = St::BeforeAttrValue;
                }
            }
            St::AfterAttrName => {
                if is_ws(c) {
                } else if c == b'/' {
                    st = St::SelfClosing;
                } else if c == b'=' {
                    st = St::BeforeAttrValue;
                } else if c == b'>' {
                    return Lexed {
                        name_end,
                        end: Some(i + 1),
                        cut,
                    };
                } else {
                    begin_attr(i, &mut cut);
                    st = St::AttrName;
                }
            }
            St::BeforeAttrValue => {
                if is_ws(c) {
                } else if c == b'"' {
                    st = St::Dq;
                } else if c == b'\'' {
                    st = St::Sq;
                } else if c == b'>' {
                    return Lexed {
                        name_end,
                        end: Some(i + 1),
                        cut,
                    };
                } else {
                    st = St::Unquoted;
                }
            }
            St::Dq | St::Sq => {
                let q = if st == St::Dq { b'"' } else { b'\'' };
                match b[i..].iter().position(|&x| x == q) {
                    Some(p) => {
                        i += p;
                        st = St::AfterQuoted;
                    }
                    None => break,
                }
            }
            St::Unquoted => {
                if is_ws(c) {
                    st = St::BeforeAttrName;
                } else if c == b'>' {
                    return Lexed {
                        name_end,
                        end: Some(i + 1),
                        cut,
                    };
                }
            }
            St::AfterQuoted => {
                if is_ws(c) {
                    st = St::BeforeAttrName;
                } else if c == b'/' {
                    st = St::SelfClosing;
                } else if c == b'>' {
                    return Lexed {
                        name_end,
                        end: Some(i + 1),
                        cut,
                    };
                } else {
                    st = St::BeforeAttrName;
                    continue;
                }
            }
            St::SelfClosing => {
                if c == b'>' {
                    return Lexed {
                        name_end,
                        end: Some(i + 1),
                        cut,
                    };
                }
                st = St::BeforeAttrName;
                continue;
            }
        }
        i += 1;
    }
    Lexed {
        name_end: name_end.min(n),
        end: None,
        cut,
    }
}

/// Just past the '>' ending a bogus comment (`<?…>`, `<!x…>`, `</1…>`), or the end.
fn bogus_comment_end(b: &[u8], from: usize) -> usize {
    let from = from.min(b.len());
    b[from..]
        .iter()
        .position(|&c| c == b'>')
        .map_or(b.len(), |p| from + p + 1)
}

/// Just past the end of a comment whose `<!--` ends at `from`: `>` or `->` right away
/// (abruptly closed), else `--` followed by any dashes and `>`, or `--!>`.
fn comment_end(b: &[u8], from: usize) -> usize {
    let n = b.len();
    if b.get(from) == Some(&b'>') {
        return from + 1;
    }
    if b[from.min(n)..].starts_with(b"->") {
        return from + 2;
    }
    let mut i = from;
    while i + 1 < n {
        if b[i] == b'-' && b[i + 1] == b'-' {
            let mut j = i + 2;
            while j < n && b[j] == b'-' {
                j += 1;
            }
            if j < n && b[j] == b'>' {
                return j + 1;
            }
            if b[j.min(n)..].starts_with(b"!>") {
                return j + 2;
            }
            i = j;
        } else {
            i += 1;
        }
    }
    n
}

/// Where the end tag `</name` closing a raw-text element starts (followed by whitespace,
/// `/` or `>`), or the end.
fn raw_text_end(b: &[u8], from: usize, name: &[u8]) -> usize {
    let n = b.len();
    let mut i = from;
    while i < n {
        let Some(p) = b[i..].iter().position(|&c| c == b'<') else {
            return n;
        };
        let at = i + p;
        let rest = &b[at..];
        if rest.len() >= 2 + name.len()
            && rest[1] == b'/'
            && rest[2..2 + name.len()].eq_ignore_ascii_case(name)
            && rest
                .get(2 + name.len())
                .is_some_and(|&c| is_ws(c) || c == b'/' || c == b'>')
        {
            return at;
        }
        i = at + 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_ordinary_markup_byte_for_byte() {
        for s in [
            "<p class=\"a\" id=x>hi <b>there</b></p>",
            "<!-- <b a a a> --><a href='x>y'>z</a>",
            "<script>if (a<b) { x = \"</p>\" }</script><p>after</p>",
            "a < b &amp; <3 </ > <?pi?> <!doctype html>",
            "<img src=x/>",
            "<p",
        ] {
            assert_eq!(bound_attributes(s), s);
        }
    }

    #[test]
    fn drops_attributes_over_the_limit() {
        let many: String = (0..200).map(|k| format!(" a{k}=\"v>{k}\"")).collect();
        let html = format!("<b{many}>x</b><i>y</i>");
        let out = bound_attributes(&html);
        let kept: String = (0..MAX_ATTRS).map(|k| format!(" a{k}=\"v>{k}\"")).collect();
        assert_eq!(out, format!("<b{kept} >x</b><i>y</i>"));
        // in a comment, attributes are text and stay
        let c = format!("<!--<b{many}>-->");
        assert_eq!(bound_attributes(&c), c);
        // end tags are bounded too
        let e = format!("</b{many}>");
        assert!(bound_attributes(&e).len() < e.len() / 2);
    }
}
