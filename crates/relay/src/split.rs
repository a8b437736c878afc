//! Splitting a message longer than the target allows.
//!
//! Teams takes about 28 KB of HTML per message, Slack 40,000 characters of text. A longer
//! message is cut into parts, at block boundaries first, then at line breaks and spaces inside
//! a paragraph, and as a last resort inside a word (on a character boundary); every part is
//! posted and mapped to the one origin message, so edits and deletes reach all of them.
//!
//! The size of content is what the target's renderer makes of it, so the caller passes a
//! `measure` function (e.g. the length of the rendered HTML or mrkdwn of one block). The
//! splitter measures each block and inline once: the work is linear in the message.

use switchboard_core::{Block, Inline, RichText};

/// Measures rendered size of a one-block text on the target, in the unit `limit` uses.
pub type Measure<'a> = &'a dyn Fn(&RichText) -> usize;

fn one(block: Block) -> RichText {
    RichText {
        blocks: vec![block],
    }
}

/// Splits `text` into parts each measuring at most `limit` (blocks are measured one at a
/// time and summed with `separator` between them). Returns one part when it fits; never an
/// empty list for non-empty input. `limit` below 16 is raised to 16 so progress is possible.
pub fn split(
    text: &RichText,
    limit: usize,
    separator: usize,
    measure: Measure<'_>,
) -> Vec<RichText> {
    let limit = limit.max(16);
    let mut parts: Vec<RichText> = Vec::new();
    let mut current: Vec<Block> = Vec::new();
    let mut used = 0usize;
    let flush = |current: &mut Vec<Block>, used: &mut usize, parts: &mut Vec<RichText>| {
        if !current.is_empty() {
            parts.push(RichText {
                blocks: std::mem::take(current),
            });
        }
        *used = 0;
    };
    for block in &text.blocks {
        let size = measure(&one(block.clone()));
        let extra = if current.is_empty() { 0 } else { separator };
        if used + extra + size <= limit {
            used += extra + size;
            current.push(block.clone());
            continue;
        }
        flush(&mut current, &mut used, &mut parts);
        if size <= limit {
            used = size;
            current.push(block.clone());
            continue;
        }
        // A block that alone is too large.
        for piece in split_block(block, limit, measure) {
            parts.push(one(piece));
        }
    }
    flush(&mut current, &mut used, &mut parts);
    if parts.is_empty() {
        parts.push(text.clone());
    }
    parts
}

fn split_block(block: &Block, limit: usize, measure: Measure<'_>) -> Vec<Block> {
    match block {
        Block::Paragraph { inlines } => split_inlines(inlines, limit, measure)
            .into_iter()
            .map(|inlines| Block::Paragraph { inlines })
            .collect(),
        Block::CodeBlock { language, code } => {
            // Measure the overhead of an empty block, then cut the code into chunks.
            let overhead = measure(&one(Block::CodeBlock {
                language: language.clone(),
                code: String::new(),
            }));
            let budget = limit.saturating_sub(overhead).max(8);
            cut_text(code, budget, &|s| {
                measure(&one(Block::CodeBlock {
                    language: language.clone(),
                    code: s.to_owned(),
                }))
                .saturating_sub(overhead)
            })
            .into_iter()
            .map(|code| Block::CodeBlock {
                language: language.clone(),
                code,
            })
            .collect()
        }
        // Quotes and lists too large for one message lose their structure, not their text.
        other => {
            let plain = one(other.clone()).to_plain_text();
            split_inlines(&[Inline::Text { text: plain }], limit, measure)
                .into_iter()
                .map(|inlines| Block::Paragraph { inlines })
                .collect()
        }
    }
}

fn para_size(inlines: Vec<Inline>, measure: Measure<'_>) -> usize {
    measure(&one(Block::Paragraph { inlines }))
}

fn split_inlines(inlines: &[Inline], limit: usize, measure: Measure<'_>) -> Vec<Vec<Inline>> {
    let overhead = para_size(Vec::new(), measure);
    let budget = limit.saturating_sub(overhead).max(8);
    let mut out: Vec<Vec<Inline>> = Vec::new();
    let mut current: Vec<Inline> = Vec::new();
    let mut used = 0usize;
    for inline in inlines {
        let size = para_size(vec![inline.clone()], measure).saturating_sub(overhead);
        if used + size <= budget {
            used += size;
            current.push(inline.clone());
            continue;
        }
        if !current.is_empty() {
            out.push(std::mem::take(&mut current));
            used = 0;
        }
        if size <= budget {
            used = size;
            current.push(inline.clone());
            continue;
        }
        // One inline larger than a whole message: only text can be cut; formatting around
        // it is dropped for the pieces (the words are kept).
        let text = match inline {
            Inline::Text { text } => text.clone(),
            Inline::Code { code } => code.clone(),
            other => one(Block::Paragraph {
                inlines: vec![other.clone()],
            })
            .to_plain_text(),
        };
        let pieces = cut_text(&text, budget, &|s| {
            para_size(vec![Inline::Text { text: s.to_owned() }], measure).saturating_sub(overhead)
        });
        for piece in pieces {
            out.push(vec![Inline::Text { text: piece }]);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Cuts `text` into pieces whose `size` is at most `budget`, preferring line breaks, then
/// spaces, then any character boundary. Sizes are assumed to grow with the length (rendered
/// escapes may make a piece larger than its bytes), so pieces are sized by bytes first and
/// re-measured once.
fn cut_text(text: &str, budget: usize, size: &dyn Fn(&str) -> usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut take = budget.min(rest.len());
        loop {
            let mut end = take;
            while end > 0 && !rest.is_char_boundary(end) {
                end -= 1;
            }
            if end == 0 {
                // a single character larger than the budget in bytes: take it whole
                end = rest
                    .chars()
                    .next()
                    .map(char::len_utf8)
                    .unwrap_or(rest.len());
            }
            // Prefer a line break, then a space, in the second half of the piece.
            let window = &rest[..end];
            let cut = if end < rest.len() {
                window
                    .rfind('\n')
                    .filter(|&i| i >= end / 2)
                    .or_else(|| window.rfind(' ').filter(|&i| i >= end / 2))
                    .map(|i| i + 1)
                    .unwrap_or(end)
            } else {
                end
            };
            let piece = &rest[..cut];
            if size(piece) <= budget || take <= 8 {
                out.push(piece.to_owned());
                rest = &rest[cut..];
                break;
            }
            // escapes made it larger than its bytes: shrink and measure again
            take = (take * 3 / 4).max(8);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn len(t: &RichText) -> usize {
        t.to_plain_text().len()
    }

    fn para(text: &str) -> Block {
        Block::Paragraph {
            inlines: vec![Inline::Text { text: text.into() }],
        }
    }

    #[test]
    fn short_messages_stay_whole() {
        let t = RichText {
            blocks: vec![para("hello"), para("world")],
        };
        assert_eq!(split(&t, 100, 2, &len), vec![t]);
    }

    #[test]
    fn long_messages_split_at_blocks_then_words_and_lose_no_text() {
        let words = "lorem ipsum dolor sit amet ".repeat(400);
        let t = RichText {
            blocks: vec![
                para("first"),
                para(&words),
                Block::CodeBlock {
                    language: None,
                    code: "x = 1;\n".repeat(300),
                },
            ],
        };
        let parts = split(&t, 1000, 2, &len);
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut joined = String::new();
        for p in &parts {
            assert!(len(p) <= 1000, "a part measures {}", len(p));
            for b in &p.blocks {
                match b {
                    Block::Paragraph { inlines } => {
                        for i in inlines {
                            if let Inline::Text { text } = i {
                                joined.push_str(text)
                            }
                        }
                    }
                    Block::CodeBlock { code, .. } => joined.push_str(code),
                    other => panic!("{other:?}"),
                }
            }
        }
        assert_eq!(joined, format!("first{words}{}", "x = 1;\n".repeat(300)));
        // word boundaries are preferred
        match &parts[1].blocks[0] {
            Block::Paragraph { inlines } => match &inlines[0] {
                Inline::Text { text } => assert!(text.ends_with(' '), "{text:?}"),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn multibyte_text_is_cut_on_character_boundaries() {
        let t = RichText::plain("é".repeat(5000));
        let parts = split(&t, 301, 0, &len);
        let total: String = parts.iter().map(|p| p.to_plain_text()).collect();
        assert_eq!(total, "é".repeat(5000));
        assert!(parts.iter().all(|p| len(p) <= 301));
    }

    #[test]
    fn escapes_that_grow_the_rendering_are_accounted_for() {
        // a renderer that doubles every '<' (like HTML escaping makes it 4 bytes)
        let grow = |t: &RichText| {
            let s = t.to_plain_text();
            s.len() + 3 * s.matches('<').count()
        };
        let t = RichText::plain("<".repeat(10_000));
        let parts = split(&t, 1000, 0, &grow);
        assert!(parts.iter().all(|p| grow(p) <= 1000));
        let total: usize = parts.iter().map(|p| p.to_plain_text().len()).sum();
        assert_eq!(total, 10_000);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn len(t: &RichText) -> usize {
        t.to_plain_text().len()
    }

    fn text_of(parts: &[RichText]) -> String {
        let mut s = String::new();
        for p in parts {
            for b in &p.blocks {
                if let Block::Paragraph { inlines } = b {
                    for i in inlines {
                        if let Inline::Text { text } = i {
                            s.push_str(text);
                        }
                    }
                }
            }
        }
        s
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn no_text_is_lost_and_every_part_fits(
            paras in proptest::collection::vec("[a-zé \n<]{0,300}", 1..12),
            limit in 16usize..400,
        ) {
            let t = RichText {
                blocks: paras
                    .iter()
                    .map(|p| Block::Paragraph { inlines: vec![Inline::Text { text: p.clone() }] })
                    .collect(),
            };
            let parts = split(&t, limit, 2, &len);
            prop_assert!(!parts.is_empty());
            for p in &parts {
                prop_assert!(len(p) <= limit.max(16) || p.blocks.len() == 1 && len(p) <= 2);
            }
            prop_assert_eq!(text_of(&parts), paras.concat());
        }
    }
}
