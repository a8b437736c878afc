//! Linearity of the Teams HTML converters on the probe's worst inputs
//! (`cargo bench -p switchboard-msteams --bench converters`).
//!
//! `from_html_uncapped` (the reader without its 64 KiB input cap, so the growth of the cost
//! is visible) and `to_html` (of the model read) at 10 KB, 100 KB and 1 MB of each input:
//! the `<b id=N>` active-formatting reconstruction input, deep unclosed `<div>` / `<ul>` /
//! `<blockquote>`, many `<br>` then text (and between two words), and a tag with thousands
//! of attributes. Each 10× step of input should cost about 10× (the bar is 15×). Before
//! timing, each case runs once under a counting global allocator and its heap high-water
//! mark is printed as a markdown table; criterion's medians are in
//! `target/criterion/*/new/estimates.json`.

use std::time::Duration;

use criterion::{BenchmarkId, Criterion, black_box};
use peak_alloc::PeakAlloc;
use switchboard_msteams::html::{from_html_uncapped, to_html};

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const SIZES: &[(&str, usize)] = &[("10KB", 10_000), ("100KB", 100_000), ("1MB", 1_000_000)];

/// `<p>` + k `<b id=N>` + k × `</p><p>x`, about `n` bytes.
fn formatting(n: usize) -> String {
    let k = n / 20;
    let mut s = String::with_capacity(n + 64);
    s.push_str("<p>");
    for i in 0..k {
        s.push_str(&format!("<b id={i}>"));
    }
    s.push_str(&"</p><p>x".repeat(k));
    s
}

fn deep(tag: &str, n: usize) -> String {
    tag.repeat(n / tag.len()) + "deep text"
}

fn breaks(n: usize) -> String {
    "<br>".repeat(n / 4) + "text"
}

/// Breaks between two words: all of them are kept in the model (the most memory per byte).
fn breaks_between(n: usize) -> String {
    "a".to_owned() + &"<br>".repeat(n / 4) + "b"
}

fn attributes(n: usize) -> String {
    let mut s = String::from("<b");
    let mut i = 0;
    while s.len() < n {
        s.push_str(&format!(" a{i}=v"));
        i += 1;
    }
    s + ">bold</b>"
}

type Input = (&'static str, fn(usize) -> String);

const INPUTS: &[Input] = &[
    ("b_id_reconstruction", formatting),
    ("deep_div", |n| deep("<div>", n)),
    ("deep_ul", |n| deep("<ul>", n)),
    ("deep_blockquote", |n| deep("<blockquote>", n)),
    ("br_then_text", breaks),
    ("text_br_text", breaks_between),
    ("many_attributes", attributes),
];

fn peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let out = f();
    (out, HEAP.peak_usage().saturating_sub(base))
}

fn print_peaks() {
    println!(
        "\n| input | size | input bytes | from_html peak heap | to_html peak heap | output bytes |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (name, make) in INPUTS {
        for (label, n) in SIZES {
            let html = make(*n);
            let (rt, p_read) = peak(|| from_html_uncapped(&html, &[]));
            let (out, p_write) = peak(|| to_html(&rt));
            println!(
                "| {name} | {label} | {} | {} KiB | {} KiB | {} |",
                html.len(),
                p_read / 1024,
                p_write / 1024,
                out.html.len()
            );
        }
    }
    println!();
}

fn bench(c: &mut Criterion) {
    for (name, make) in INPUTS {
        let mut g = c.benchmark_group(format!("from_html/{name}"));
        for (label, n) in SIZES {
            let html = make(*n);
            g.bench_with_input(BenchmarkId::from_parameter(label), &html, |b, html| {
                b.iter(|| from_html_uncapped(black_box(html), &[]))
            });
        }
        g.finish();
        let mut g = c.benchmark_group(format!("to_html/{name}"));
        for (label, n) in SIZES {
            let rt = from_html_uncapped(&make(*n), &[]);
            g.bench_with_input(BenchmarkId::from_parameter(label), &rt, |b, rt| {
                b.iter(|| to_html(black_box(rt)))
            });
        }
        g.finish();
    }
}

fn main() {
    print_peaks();
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}
