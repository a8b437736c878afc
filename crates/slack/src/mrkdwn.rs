//! Slack mrkdwn ⇄ the portable [`RichText`].
//!
//! Understood when reading: `<@U…>` / `<@U…|name>` user mentions, `<#C…|name>` channel
//! mentions, `<!here>` / `<!channel>` / `<!everyone>`, `<!subteam^…|@group>` and
//! `<!date^…|fallback>` (as their text), `<url>` / `<url|text>` links, `*bold*`, `_italic_`,
//! `~strike~`, `` `code` ``, ```` ```code blocks``` ````, `>` / `&gt;` quotes (and `>>>` to the
//! end), `•` and `1.` list lines, `:emoji:` (with `::skin-tone-N`), and the `&amp;` `&lt;`
//! `&gt;` escapes. Written: the same constructs, with `&`, `<` and `>` escaped in text.
//!
//! Neither direction panics or fails: input that is not well-formed mrkdwn is kept as text.

use switchboard_core::{Block, ChannelId, Emoji, Inline, Mention, RichText, UserId};

use crate::emoji;

/// Escapes `&`, `<` and `>` (the only characters Slack requires escaped).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape`]. Other `&…;` sequences are left as they are.
pub fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------

/// Renders portable rich text as Slack mrkdwn.
pub fn to_mrkdwn(text: &RichText) -> String {
    let mut out = String::new();
    render_blocks(&text.blocks, &mut out);
    out
}

fn render_blocks(blocks: &[Block], out: &mut String) {
    let mut first = true;
    for b in blocks {
        let mut s = String::new();
        render_block(b, &mut s);
        if s.is_empty() {
            continue;
        }
        if !first {
            out.push_str("\n\n");
        }
        first = false;
        out.push_str(&s);
    }
}

fn render_block(block: &Block, out: &mut String) {
    match block {
        Block::Paragraph { inlines } => render_inlines(inlines, out),
        Block::CodeBlock { code, .. } => {
            out.push_str("```\n");
            out.push_str(&escape(code));
            out.push_str("\n```");
        }
        Block::Quote { blocks } => {
            let mut inner = String::new();
            render_blocks(blocks, &mut inner);
            for (i, line) in inner.split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if line.is_empty() {
                    out.push('>');
                } else {
                    out.push_str("> ");
                    out.push_str(line);
                }
            }
        }
        Block::List { ordered, items, .. } => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                if *ordered {
                    out.push_str(&format!("{}. ", i + 1));
                } else {
                    out.push_str("• ");
                }
                let mut s = String::new();
                for (j, b) in item.iter().enumerate() {
                    if j > 0 {
                        s.push(' ');
                    }
                    render_block(b, &mut s);
                }
                out.push_str(&s.replace('\n', " "));
            }
        }
    }
}

fn render_inlines(inlines: &[Inline], out: &mut String) {
    for inline in inlines {
        render_inline(inline, out);
    }
}

fn wrap(marker: char, inlines: &[Inline], out: &mut String) {
    let mut inner = String::new();
    render_inlines(inlines, &mut inner);
    if inner.trim().is_empty() {
        out.push_str(&inner);
        return;
    }
    // Slack only formats when the markers hug the text: move outer spaces outside.
    let lead = inner.len() - inner.trim_start().len();
    let trail = inner.len() - inner.trim_end().len();
    out.push_str(&inner[..lead]);
    out.push(marker);
    out.push_str(inner.trim());
    out.push(marker);
    out.push_str(&inner[inner.len() - trail..]);
}

fn plain(inlines: &[Inline]) -> String {
    RichText {
        blocks: vec![Block::Paragraph {
            inlines: inlines.to_vec(),
        }],
    }
    .to_plain_text()
}

fn render_inline(inline: &Inline, out: &mut String) {
    match inline {
        Inline::Text { text } => out.push_str(&escape(text)),
        Inline::Bold { inlines } => wrap('*', inlines, out),
        Inline::Italic { inlines } => wrap('_', inlines, out),
        Inline::Strike { inlines } => wrap('~', inlines, out),
        Inline::Code { code } => {
            if code.is_empty() {
                return;
            }
            out.push('`');
            out.push_str(&escape(&code.replace('`', "'")));
            out.push('`');
        }
        Inline::Link { url, inlines } => {
            let url_escaped = escape(url).replace('|', "%7C");
            let label = plain(inlines);
            out.push('<');
            out.push_str(&url_escaped);
            if !label.is_empty() && label != *url {
                out.push('|');
                out.push_str(&escape(&label).replace('\n', " "));
            }
            out.push('>');
        }
        Inline::Mention { mention } => match mention {
            Mention::User { id, .. } => {
                out.push_str("<@");
                out.push_str(id.as_str());
                out.push('>');
            }
            Mention::Channel { id, .. } => {
                out.push_str("<#");
                out.push_str(id.as_str());
                out.push('>');
            }
            Mention::Everyone => out.push_str("<!channel>"),
            Mention::Here => out.push_str("<!here>"),
        },
        Inline::Emoji { emoji } => match emoji {
            Emoji::Unicode { value, name } => {
                let known = name
                    .as_deref()
                    .map(|n| n.trim_matches(':'))
                    .filter(|n| emoji::is_valid_name(n))
                    .filter(|n| matches!(emoji::from_slack_name(n), Emoji::Unicode { value: ref v, .. } if v == value));
                match known {
                    Some(n) => {
                        out.push(':');
                        out.push_str(n);
                        out.push(':');
                    }
                    None => out.push_str(value),
                }
            }
            Emoji::Custom { name } => {
                let name = name.trim_matches(':');
                if emoji::is_valid_name(name) {
                    out.push(':');
                    out.push_str(name);
                    out.push(':');
                } else {
                    out.push_str(&escape(name));
                }
            }
        },
        Inline::LineBreak => out.push('\n'),
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// The most nesting the reader follows (quotes in quotes, bold in italic …); deeper input
/// is kept as text, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 16;

/// Parses Slack mrkdwn (as found in a message's `text`) into portable rich text.
pub fn from_mrkdwn(text: &str) -> RichText {
    let text = text.replace("\r\n", "\n");
    let mut blocks = Vec::new();
    parse_blocks(&text, &mut blocks, 0);
    RichText { blocks }
}

fn parse_blocks(text: &str, blocks: &mut Vec<Block>, depth: usize) {
    let mut rest = text;
    loop {
        let Some(open) = rest.find("```") else {
            parse_lines(rest, blocks, depth);
            return;
        };
        let after = &rest[open + 3..];
        let Some(close) = after.find("```") else {
            parse_lines(rest, blocks, depth);
            return;
        };
        parse_lines(&rest[..open], blocks, depth);
        let mut code = &after[..close];
        code = code.strip_prefix('\n').unwrap_or(code);
        code = code.strip_suffix('\n').unwrap_or(code);
        blocks.push(Block::CodeBlock {
            language: None,
            code: unescape(code),
        });
        rest = after[close + 3..]
            .strip_prefix('\n')
            .unwrap_or(&after[close + 3..]);
    }
}

enum QuoteMarker<'a> {
    Line(&'a str),
    ToEnd(&'a str),
}

fn quote_marker(line: &str) -> Option<QuoteMarker<'_>> {
    for triple in ["&gt;&gt;&gt;", ">>>"] {
        if let Some(rest) = line.strip_prefix(triple) {
            return Some(QuoteMarker::ToEnd(rest.strip_prefix(' ').unwrap_or(rest)));
        }
    }
    for single in ["&gt;", ">"] {
        if let Some(rest) = line.strip_prefix(single) {
            return Some(QuoteMarker::Line(rest.strip_prefix(' ').unwrap_or(rest)));
        }
    }
    None
}

fn list_marker(line: &str) -> Option<(bool, &str)> {
    for bullet in ["• ", "◦ ", "▪ "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return Some((false, rest));
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) && line[digits..].starts_with(". ") {
        return Some((true, &line[digits + 2..]));
    }
    None
}

fn parse_lines(text: &str, blocks: &mut Vec<Block>, depth: usize) {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut paragraph: Vec<&str> = Vec::new();
    let flush = |paragraph: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if paragraph.is_empty() {
            return;
        }
        let joined = paragraph.join("\n");
        paragraph.clear();
        let inlines = parse_inlines(&joined, depth);
        if !inlines.is_empty() {
            blocks.push(Block::Paragraph { inlines });
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if depth < MAX_DEPTH
            && let Some(marker) = quote_marker(line)
        {
            flush(&mut paragraph, blocks);
            let mut inner: Vec<String> = Vec::new();
            match marker {
                QuoteMarker::ToEnd(first) => {
                    inner.push(first.to_owned());
                    inner.extend(lines[i + 1..].iter().map(|l| (*l).to_owned()));
                    i = lines.len();
                }
                QuoteMarker::Line(first) => {
                    inner.push(first.to_owned());
                    i += 1;
                    while i < lines.len() {
                        match quote_marker(lines[i]) {
                            Some(QuoteMarker::Line(l)) => {
                                inner.push(l.to_owned());
                                i += 1;
                            }
                            _ => break,
                        }
                    }
                }
            }
            let mut quoted = Vec::new();
            parse_blocks(&inner.join("\n"), &mut quoted, depth + 1);
            if !quoted.is_empty() {
                blocks.push(Block::Quote { blocks: quoted });
            }
            continue;
        }
        if let Some((ordered, _)) = list_marker(line) {
            flush(&mut paragraph, blocks);
            let mut items = Vec::new();
            while i < lines.len() {
                match list_marker(lines[i]) {
                    Some((o, content)) if o == ordered => {
                        let inlines = parse_inlines(content, depth);
                        items.push(if inlines.is_empty() {
                            vec![]
                        } else {
                            vec![Block::Paragraph { inlines }]
                        });
                        i += 1;
                    }
                    _ => break,
                }
            }
            blocks.push(Block::List {
                ordered,
                start: None,
                items,
            });
            continue;
        }
        if line.trim().is_empty() {
            flush(&mut paragraph, blocks);
        } else {
            paragraph.push(line);
        }
        i += 1;
    }
    flush(&mut paragraph, blocks);
}

fn prev_char(s: &str, i: usize) -> Option<char> {
    s[..i].chars().next_back()
}

fn next_char(s: &str, i: usize) -> Option<char> {
    s[i..].chars().next()
}

/// Whether the marker at `i` may open formatting: at a word start, followed by non-space.
fn opens(s: &str, i: usize, marker: char) -> bool {
    let before_ok = prev_char(s, i).is_none_or(|c| !c.is_alphanumeric() && c != marker);
    let after_ok = next_char(s, i + 1).is_some_and(|c| !c.is_whitespace() && c != marker);
    before_ok && after_ok
}

/// Where the formatting opened at `open` closes, if it does on the same line.
fn find_close(s: &str, open: usize, marker: char) -> Option<usize> {
    let mut k = open + 1;
    while k < s.len() {
        let c = next_char(s, k)?;
        match c {
            '\n' => return None,
            '<' => {
                // Skip over <…> so markers inside links and mentions do not count.
                match s[k + 1..].find(['>', '\n']) {
                    Some(j) if s.as_bytes()[k + 1 + j] == b'>' => {
                        k = k + 1 + j + 1;
                        continue;
                    }
                    _ => {}
                }
            }
            '`' if marker != '`' => {
                if let Some(j) = s[k + 1..].find('`') {
                    k = k + 1 + j + 1;
                    continue;
                }
            }
            c if c == marker && k > open + 1 => {
                let before = prev_char(s, k).is_some_and(|p| !p.is_whitespace());
                let after = next_char(s, k + 1).is_none_or(|n| !n.is_alphanumeric());
                if before && after {
                    return Some(k);
                }
            }
            _ => {}
        }
        k += c.len_utf8();
    }
    None
}

/// An emoji code `:name:` starting at `i`: its name and where it ends.
fn emoji_at(s: &str, i: usize) -> Option<(&str, usize)> {
    if prev_char(s, i).is_some_and(|c| c.is_alphanumeric() || c == ':') {
        return None;
    }
    let body = &s[i + 1..];
    let len = body
        .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_+-'".contains(c)))
        .unwrap_or(body.len());
    if len == 0 || !body[len..].starts_with(':') {
        return None;
    }
    let mut end = i + 1 + len + 1;
    // Slack's skin tone suffix: `:wave::skin-tone-3:`.
    if let Some(tone) = s[end..].strip_prefix(":skin-tone-")
        && let Some(d) = tone.chars().next().filter(char::is_ascii_digit)
        && tone[d.len_utf8()..].starts_with(':')
    {
        end += ":skin-tone-".len() + d.len_utf8() + 1;
    }
    if next_char(s, end).is_some_and(char::is_alphanumeric) {
        return None;
    }
    Some((&s[i + 1..end - 1], end))
}

fn push_text(out: &mut Vec<Inline>, buf: &mut String) {
    if buf.is_empty() {
        return;
    }
    let text = std::mem::take(buf);
    if let Some(Inline::Text { text: prev }) = out.last_mut() {
        prev.push_str(&text);
    } else {
        out.push(Inline::Text { text });
    }
}

fn parse_inlines(s: &str, depth: usize) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut i = 0;
    while i < s.len() {
        let Some(c) = next_char(s, i) else { break };
        match c {
            '<' => {
                if let Some(j) = s[i + 1..].find(['>', '\n'])
                    && s.as_bytes()[i + 1 + j] == b'>'
                    && j > 0
                {
                    push_text(&mut out, &mut buf);
                    match parse_angle(&s[i + 1..i + 1 + j]) {
                        Inline::Text { text } => {
                            buf.push_str(&text);
                        }
                        other => out.push(other),
                    }
                    i += j + 2;
                    continue;
                }
            }
            '`' => {
                if let Some(j) = s[i + 1..].find(['`', '\n'])
                    && s.as_bytes()[i + 1 + j] == b'`'
                    && j > 0
                {
                    push_text(&mut out, &mut buf);
                    out.push(Inline::Code {
                        code: unescape(&s[i + 1..i + 1 + j]),
                    });
                    i += j + 2;
                    continue;
                }
            }
            '*' | '_' | '~' if depth < MAX_DEPTH && opens(s, i, c) => {
                if let Some(close) = find_close(s, i, c) {
                    push_text(&mut out, &mut buf);
                    let inlines = parse_inlines(&s[i + 1..close], depth + 1);
                    out.push(match c {
                        '*' => Inline::Bold { inlines },
                        '_' => Inline::Italic { inlines },
                        _ => Inline::Strike { inlines },
                    });
                    i = close + 1;
                    continue;
                }
            }
            ':' => {
                if let Some((name, end)) = emoji_at(s, i) {
                    push_text(&mut out, &mut buf);
                    out.push(Inline::Emoji {
                        emoji: emoji::from_slack_name(name),
                    });
                    i = end;
                    continue;
                }
            }
            '&' => {
                let rest = &s[i..];
                let entity = [("&amp;", '&'), ("&lt;", '<'), ("&gt;", '>')]
                    .into_iter()
                    .find(|(e, _)| rest.starts_with(e));
                if let Some((e, ch)) = entity {
                    buf.push(ch);
                    i += e.len();
                    continue;
                }
            }
            '\n' => {
                push_text(&mut out, &mut buf);
                out.push(Inline::LineBreak);
                i += 1;
                continue;
            }
            _ => {}
        }
        buf.push(c);
        i += c.len_utf8();
    }
    push_text(&mut out, &mut buf);
    out
}

/// The inside of `<…>`.
fn parse_angle(inner: &str) -> Inline {
    let (target, label) = match inner.split_once('|') {
        Some((t, l)) => (t, Some(unescape(l))),
        None => (inner, None),
    };
    let label = label.filter(|l| !l.is_empty());
    if let Some(id) = target.strip_prefix('@') {
        if let Ok(user) = UserId::new(id) {
            return Inline::Mention {
                mention: Mention::User {
                    display_name: label.unwrap_or_else(|| id.to_owned()),
                    id: user,
                },
            };
        }
    } else if let Some(id) = target.strip_prefix('#') {
        if let Ok(channel) = ChannelId::new(id) {
            return Inline::Mention {
                mention: Mention::Channel {
                    display_name: label.unwrap_or_else(|| id.to_owned()),
                    id: channel,
                },
            };
        }
    } else if let Some(cmd) = target.strip_prefix('!') {
        return match cmd {
            "here" => Inline::Mention {
                mention: Mention::Here,
            },
            "channel" | "everyone" => Inline::Mention {
                mention: Mention::Everyone,
            },
            c if c.starts_with("subteam^") => Inline::Text {
                text: label.unwrap_or_else(|| "@group".to_owned()),
            },
            _ => Inline::Text {
                text: label.unwrap_or_else(|| format!("@{}", unescape(cmd))),
            },
        };
    } else if !target.trim().is_empty() {
        let url = unescape(target);
        return Inline::Link {
            inlines: match label {
                Some(l) if l != url => vec![Inline::Text { text: l }],
                _ => vec![],
            },
            url,
        };
    }
    Inline::Text {
        text: label.unwrap_or_else(|| unescape(inner)),
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
    fn user(id: &str) -> Inline {
        Inline::Mention {
            mention: Mention::User {
                id: UserId::new(id).unwrap(),
                display_name: id.into(),
            },
        }
    }

    #[test]
    fn escaping_round_trips() {
        let s = "a & b < c > d &amp;";
        assert_eq!(escape(s), "a &amp; b &lt; c &gt; d &amp;amp;");
        assert_eq!(unescape(&escape(s)), s);
        assert_eq!(
            from_mrkdwn("1 &lt; 2 &amp;&amp; 3 &gt; 2").blocks,
            vec![para(vec![t("1 < 2 && 3 > 2")])]
        );
    }

    #[test]
    fn mentions_links_and_specials() {
        let rt = from_mrkdwn(
            "hi <@U123> and <@W9|jane> in <#C42|general> <!here> <https://x.test/a?b=1&amp;c=2|the docs> <https://y.test> <mailto:a@b.test|a@b.test> <!subteam^S1|@eng> <!date^1392734382^{date}|Feb 18>",
        );
        let Block::Paragraph { inlines } = &rt.blocks[0] else {
            panic!("{rt:?}")
        };
        assert_eq!(inlines[0], t("hi "));
        assert_eq!(inlines[1], user("U123"));
        assert_eq!(
            inlines[3],
            Inline::Mention {
                mention: Mention::User {
                    id: UserId::new("W9").unwrap(),
                    display_name: "jane".into()
                }
            }
        );
        assert_eq!(
            inlines[5],
            Inline::Mention {
                mention: Mention::Channel {
                    id: ChannelId::new("C42").unwrap(),
                    display_name: "general".into()
                }
            }
        );
        assert_eq!(
            inlines[7],
            Inline::Mention {
                mention: Mention::Everyone
            }
        );
        assert_eq!(
            inlines[9],
            Inline::Link {
                url: "https://x.test/a?b=1&c=2".into(),
                inlines: vec![t("the docs")]
            }
        );
        assert_eq!(
            inlines[11],
            Inline::Link {
                url: "https://y.test".into(),
                inlines: vec![]
            }
        );
        assert_eq!(inlines.last().unwrap(), &t(" @eng Feb 18"));
    }

    #[test]
    fn formatting_nests_and_respects_word_boundaries() {
        let rt = from_mrkdwn("*bold _both_* and ~gone~ `a*b*c` snake_case_name 2*3*4");
        assert_eq!(
            rt.blocks,
            vec![para(vec![
                Inline::Bold {
                    inlines: vec![
                        t("bold "),
                        Inline::Italic {
                            inlines: vec![t("both")]
                        }
                    ]
                },
                t(" and "),
                Inline::Strike {
                    inlines: vec![t("gone")]
                },
                t(" "),
                Inline::Code {
                    code: "a*b*c".into()
                },
                t(" snake_case_name 2*3*4"),
            ])]
        );
        // Unclosed markers stay text.
        assert_eq!(
            from_mrkdwn("* not bold*  *open").blocks,
            vec![para(vec![t("* not bold*  *open")])]
        );
    }

    #[test]
    fn code_blocks_quotes_lists_and_lines() {
        let rt = from_mrkdwn(
            "intro\nsecond line\n\n```\nlet x = a &lt; b;\n```\n&gt; quoted *text*\n&gt; more\n• one\n• two\n1. first\n2. second",
        );
        assert_eq!(
            rt.blocks,
            vec![
                para(vec![t("intro"), Inline::LineBreak, t("second line")]),
                Block::CodeBlock {
                    language: None,
                    code: "let x = a < b;".into()
                },
                Block::Quote {
                    blocks: vec![para(vec![
                        t("quoted "),
                        Inline::Bold {
                            inlines: vec![t("text")]
                        },
                        Inline::LineBreak,
                        t("more")
                    ])]
                },
                Block::List {
                    ordered: false,
                    start: None,
                    items: vec![vec![para(vec![t("one")])], vec![para(vec![t("two")])]]
                },
                Block::List {
                    ordered: true,
                    start: None,
                    items: vec![vec![para(vec![t("first")])], vec![para(vec![t("second")])]]
                },
            ]
        );
        let rest = from_mrkdwn("a\n&gt;&gt;&gt; all\nof this");
        assert_eq!(
            rest.blocks[1],
            Block::Quote {
                blocks: vec![para(vec![t("all"), Inline::LineBreak, t("of this")])]
            }
        );
    }

    #[test]
    fn emoji_codes() {
        let rt = from_mrkdwn("nice :thumbsup: :partyparrot: :wave::skin-tone-2: at 10:30:00");
        let Block::Paragraph { inlines } = &rt.blocks[0] else {
            panic!()
        };
        assert!(
            matches!(&inlines[1], Inline::Emoji { emoji: Emoji::Unicode { value, .. } } if value == "👍")
        );
        assert_eq!(
            inlines[3],
            Inline::Emoji {
                emoji: Emoji::Custom {
                    name: "partyparrot".into()
                }
            }
        );
        assert!(
            matches!(&inlines[5], Inline::Emoji { emoji: Emoji::Unicode { name: Some(n), .. } } if n == "wave::skin-tone-2")
        );
        assert_eq!(inlines.last().unwrap(), &t(" at 10:30:00"));
    }

    #[test]
    fn writing_escapes_and_formats() {
        let rt = RichText {
            blocks: vec![
                para(vec![
                    t("a < b & c > d "),
                    Inline::Bold {
                        inlines: vec![t("bold ")],
                    },
                    Inline::Italic {
                        inlines: vec![t("it")],
                    },
                    t(" "),
                    Inline::Strike {
                        inlines: vec![t("s")],
                    },
                    t(" "),
                    Inline::Code { code: "x<y".into() },
                    t(" "),
                    user("U1"),
                    t(" "),
                    Inline::Mention {
                        mention: Mention::Channel {
                            id: ChannelId::new("C1").unwrap(),
                            display_name: "gen".into(),
                        },
                    },
                    t(" "),
                    Inline::Mention {
                        mention: Mention::Everyone,
                    },
                    t(" "),
                    Inline::Link {
                        url: "https://x.test/?a=1&b=2".into(),
                        inlines: vec![t("docs")],
                    },
                    Inline::LineBreak,
                    Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: "🎉".into(),
                            name: Some("tada".into()),
                        },
                    },
                    Inline::Emoji {
                        emoji: Emoji::Unicode {
                            value: "🎉".into(),
                            name: None,
                        },
                    },
                    Inline::Emoji {
                        emoji: Emoji::Custom {
                            name: "partyparrot".into(),
                        },
                    },
                ]),
                Block::CodeBlock {
                    language: Some("rust".into()),
                    code: "fn f() -> u8 {}".into(),
                },
                Block::Quote {
                    blocks: vec![para(vec![t("q1")]), para(vec![t("q2")])],
                },
            ],
        };
        assert_eq!(
            to_mrkdwn(&rt),
            "a &lt; b &amp; c &gt; d *bold* _it_ ~s~ `x&lt;y` <@U1> <#C1> <!channel> <https://x.test/?a=1&amp;b=2|docs>\n:tada:🎉:partyparrot:\n\n```\nfn f() -&gt; u8 {}\n```\n\n> q1\n>\n> q2"
        );
    }

    #[test]
    fn portable_round_trips_through_mrkdwn() {
        let cases = vec![
            RichText::plain("just text with <angle> & ampersand"),
            RichText {
                blocks: vec![
                    para(vec![
                        t("Hi "),
                        user("U42"),
                        t(", "),
                        Inline::Bold {
                            inlines: vec![t("look")],
                        },
                        t(" at "),
                        Inline::Link {
                            url: "https://a.test/x?y=1&z=2".into(),
                            inlines: vec![t("this")],
                        },
                        t(" "),
                        Inline::Emoji {
                            emoji: Emoji::Unicode {
                                value: "👍".into(),
                                name: Some("thumbsup".into()),
                            },
                        },
                    ]),
                    Block::Quote {
                        blocks: vec![para(vec![t("quoted")])],
                    },
                    Block::CodeBlock {
                        language: None,
                        code: "a < b\n  c".into(),
                    },
                    Block::List {
                        ordered: true,
                        start: None,
                        items: vec![vec![para(vec![t("x")])], vec![para(vec![t("y")])]],
                    },
                    Block::List {
                        ordered: false,
                        start: None,
                        items: vec![vec![para(vec![Inline::Italic {
                            inlines: vec![t("z")],
                        }])]],
                    },
                ],
            },
        ];
        for rt in cases {
            let m = to_mrkdwn(&rt);
            assert_eq!(from_mrkdwn(&m), rt, "via {m:?}");
        }
    }

    #[test]
    fn mrkdwn_round_trips_through_portable() {
        for s in [
            "*bold* _it_ ~st~ `code` <@U1> <#C1> <!channel> <https://x.test|x> :tada: :custom_one:",
            "line one\nline two\n\nnext paragraph",
            "> quoted\n>\n> again",
            "```\ncode &lt;here&gt;\n```",
            "• a\n• b",
            "1. a\n2. b",
            "a &amp; b &lt;c&gt;",
        ] {
            assert_eq!(to_mrkdwn(&from_mrkdwn(s)), s);
        }
    }

    #[test]
    fn hostile_input_neither_panics_nor_recurses_without_bound() {
        let deep = format!("{}x{}", "*_~".repeat(2000), "~_*".repeat(2000));
        let _ = from_mrkdwn(&deep);
        let quotes = format!("{}x", "> ".repeat(5000));
        let _ = from_mrkdwn(&quotes);
        for s in [
            "<",
            ">",
            "<>",
            "<|>",
            "<@>",
            "<#|>",
            "<!>",
            "```",
            "``````",
            "`",
            "::",
            ":a",
            "&",
            "&am",
            "*",
            "_*_",
            "~~~",
            "<@U1",
            "é*ü*ß",
            "🎉:🎉:",
            "\u{0}<\u{0}>",
        ] {
            let rt = from_mrkdwn(s);
            let _ = to_mrkdwn(&rt);
        }
        // A pseudo-random sweep over the mrkdwn alphabet.
        let alphabet: Vec<char> = "*_~`<>|@#!:&;ab \n>•1.éU🎉".chars().collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let len = (seed % 40) as usize;
            let mut s = String::new();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let rt = from_mrkdwn(&s);
            // Writing what was read and reading it again is stable.
            let once = to_mrkdwn(&rt);
            let twice = to_mrkdwn(&from_mrkdwn(&once));
            assert_eq!(once, twice, "input {s:?}");
        }
    }
}
