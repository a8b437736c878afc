//! Micro-benchmarks of the HTML ⇄ rich text conversion (`cargo bench -p switchboard-msteams
//! --bench html`).

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use switchboard_msteams::html::{from_html, sanitize, to_html};
use switchboard_msteams::wire::{ChatMention, Identity, Mentioned};

const MESSAGE: &str = "<div><p>Hi <at id=\"0\">Jane</at> <at id=\"1\">Smith</at>, the <b>deploy</b> of \
<a href=\"https://ci.example/run/42?x=1&amp;y=2\">run 42</a> is <i>green</i> &#x2705;</p>\
<ul><li>api: <code>v1.2.3</code></li><li>web: <s>v0.9</s> v1.0</li></ul>\
<blockquote><p>ship it</p></blockquote>\
<pre><code class=\"language-rust\">fn main() {\n    println!(\"&lt;hello&gt;\");\n}</code></pre>\
<p><emoji id=\"smile\" alt=\"😄\" title=\"Smile\"></emoji> thanks!</p></div>";

fn mentions() -> Vec<ChatMention> {
    (0..2)
        .map(|i| ChatMention {
            id: i,
            mention_text: Some(if i == 0 { "Jane" } else { "Smith" }.into()),
            mentioned: Mentioned {
                user: Some(Identity {
                    id: Some("0b9e3b7f-0000-4000-8000-00000000a11c".into()),
                    display_name: Some("Jane Smith".into()),
                    user_identity_type: Some("aadUser".into()),
                }),
                ..Default::default()
            },
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let m = mentions();
    let rt = from_html(MESSAGE, &m);
    c.bench_function("from_html/typical message", |b| {
        b.iter(|| from_html(black_box(MESSAGE), black_box(&m)))
    });
    c.bench_function("to_html/typical message", |b| {
        b.iter(|| to_html(black_box(&rt)))
    });
    let hostile = format!(
        "{}<script>alert(1)</script><img src=x onerror=alert(2)>{}",
        "<div><b>".repeat(200),
        "</b></div>".repeat(200)
    );
    c.bench_function("sanitize/hostile nesting", |b| {
        b.iter(|| sanitize(black_box(&hostile), &[]))
    });
    let big = MESSAGE.repeat(30);
    c.bench_function("from_html/28 KB message", |b| {
        b.iter(|| from_html(black_box(&big), black_box(&m)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
