//! mrkdwn conversion on the probe's worst inputs (issue 11), at 10 KB, 100 KB and 1 MB:
//! `from_mrkdwn` without the message cap (`Limits::UNBOUNDED`, so linearity shows at 1 MB)
//! and `to_mrkdwn` of the same text as a plain model (the Teams → Slack direction).
//!
//! Bar: each 10× step in size costs at most 15× in time. After the timings the bench prints
//! the peak memory of one run of each case: the kernel's resident high-water mark, reset
//! before the run (`/proc/self/clear_refs`), above the resident memory at its start (the
//! workspace forbids `unsafe`, so no counting allocator).
//!
//! `cargo bench -p switchboard-slack --bench converters` (medians are in
//! `target/criterion/<group>/<case>/new/estimates.json`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use switchboard_core::RichText;
use switchboard_slack::mrkdwn::{Limits, from_mrkdwn_with, to_mrkdwn};

/// A `kB` field of `/proc/self/status`.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Peak resident memory (kB) of `f` above the resident memory when it started: the
/// kernel's high-water mark (`VmHWM`) is reset first by writing 5 to
/// `/proc/self/clear_refs` (Linux). `None` where that is not available. Run in a fresh
/// process (see [`peak_memory`]) so freed heap from earlier work does not hide the peak.
fn peak_kb_of<R>(f: impl FnOnce() -> R) -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let base = status_kb("VmRSS:")?;
    let r = f();
    let peak = status_kb("VmHWM:")?;
    drop(black_box(r));
    Some(peak.saturating_sub(base))
}

fn kb(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |k| format!("{k} kB"))
}

const PATTERNS: [(&str, &str); 7] = [
    ("star_a_lt", "*a<"),
    ("star_a_space", "*a "),
    ("star_a_tick", "*a`"),
    ("lt", "<"),
    ("lt_at", "<@"),
    ("lt_bang", "<!"),
    ("lt_hash", "<#"),
];

const SIZES: [(&str, usize); 3] = [("10KB", 10_000), ("100KB", 100_000), ("1MB", 1_000_000)];

fn input(pattern: &str, size: usize) -> String {
    pattern.repeat(size / pattern.len())
}

fn converters(c: &mut Criterion) {
    for (name, pattern) in PATTERNS {
        let mut group = c.benchmark_group(format!("from_mrkdwn/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(1));
        for (label, size) in SIZES {
            let text = input(pattern, size);
            group.throughput(Throughput::Bytes(text.len() as u64));
            group.bench_with_input(BenchmarkId::from_parameter(label), &text, |b, t| {
                b.iter(|| from_mrkdwn_with(black_box(t), Limits::UNBOUNDED))
            });
        }
        group.finish();

        let mut group = c.benchmark_group(format!("to_mrkdwn/{name}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_secs(1));
        for (label, size) in SIZES {
            let model = RichText::plain(input(pattern, size));
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(BenchmarkId::from_parameter(label), &model, |b, m| {
                b.iter(|| to_mrkdwn(black_box(m)))
            });
        }
        group.finish();
    }
}

/// The environment variable a child process measuring one case is started with.
const PEAK_CASE: &str = "SWITCHBOARD_CONVERTERS_PEAK_CASE";

/// In a child process: measure one case (`pattern index:size index:read|write`) and print
/// its peak in kB.
fn measure_case(spec: &str) {
    let mut parts = spec.split(':');
    let (Some(p), Some(z), Some(dir)) = (parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (Ok(p), Ok(z)) = (p.parse::<usize>(), z.parse::<usize>()) else {
        return;
    };
    let (Some((_, pattern)), Some((_, size))) = (PATTERNS.get(p), SIZES.get(z)) else {
        return;
    };
    let text = input(pattern, *size);
    let peak = if dir == "read" {
        peak_kb_of(|| from_mrkdwn_with(&text, Limits::UNBOUNDED))
    } else {
        let model = RichText::plain(text.clone());
        peak_kb_of(|| to_mrkdwn(&model))
    };
    println!("{}", kb(peak));
}

/// The peak of each case, each measured in a fresh process of this binary.
fn peak_memory() {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let run = |spec: String| -> String {
        std::process::Command::new(&exe)
            .env(PEAK_CASE, spec)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "n/a".to_owned())
    };
    println!(
        "\npeak resident memory of one run (fresh process), above the resident memory before it:"
    );
    println!("| case | size | from_mrkdwn | to_mrkdwn |");
    println!("|---|---|---|---|");
    for (p, (_, pattern)) in PATTERNS.iter().enumerate() {
        for (z, (label, _)) in SIZES.iter().enumerate() {
            let read = run(format!("{p}:{z}:read"));
            let write = run(format!("{p}:{z}:write"));
            println!("| `{pattern}` | {label} | {read} | {write} |");
        }
    }
}

criterion_group!(benches, converters);

fn main() {
    if let Ok(spec) = std::env::var(PEAK_CASE) {
        measure_case(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    peak_memory();
}
