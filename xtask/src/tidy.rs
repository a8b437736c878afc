//! The tidy test: the architecture's dependency invariants and the docs' file references,
//! checked on every `cargo test` (as rust-analyzer's `xtask/src/tidy.rs` does).
//!
//! Dependency rules (ARCHITECTURE.md, "Invariants"), read from every member's `Cargo.toml`:
//!
//! - an adapter (`switchboard-msteams`, `switchboard-slack`) has no normal or build
//!   dependency on the other adapter, on `switchboard-storage` or on `switchboard-relay`;
//! - `switchboard-sandbox` depends on no `switchboard-*` crate, of any kind;
//! - `switchboard-sandbox` is a normal dependency only of the crates that ship it (the CLI,
//!   the planned server, the embedding examples); everyone else takes it as a dev-dependency;
//! - `switchboard-core` depends on no HTTP stack or database (any kind), nor on an async
//!   runtime outside its dev-dependencies;
//! - `switchboard-relay` (planned) depends on no project crate but `switchboard-core`
//!   (normal and build dependencies);
//! - every `[workspace.dependencies]` entry is used by some member.
//!
//! Docs rule: every repo-relative path named in an inline code span or a link of
//! `README.md`, `ARCHITECTURE.md`, `crates/*/README.md` and `crates/sandbox/docs/*.md` exists,
//! except the planned paths of [`PLANNED`], which the test prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

// ------------------------------------------------------------------------------------------
// The dependency graph

/// The section of a manifest a dependency is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Normal,
    Build,
    Dev,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Normal => "dependencies",
            Kind::Build => "build-dependencies",
            Kind::Dev => "dev-dependencies",
        })
    }
}

/// One declared dependency of a member.
#[derive(Debug, Clone)]
struct Dep {
    /// The real package name (after `package = "…"` renames).
    package: String,
    kind: Kind,
    /// The `[workspace.dependencies]` key it inherits (`foo.workspace = true`), if any.
    workspace_key: Option<String>,
}

/// A workspace member.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    deps: Vec<Dep>,
}

/// The workspace as the checks see it.
#[derive(Debug, Clone)]
struct Workspace {
    members: Vec<Member>,
    /// `[workspace.dependencies]`: key → real package name.
    workspace_deps: BTreeMap<String, String>,
}

impl Workspace {
    fn is_member(&self, package: &str) -> bool {
        self.members.iter().any(|m| m.name == package)
    }
}

/// A broken dependency rule, naming the crate and the dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Violation {
    krate: String,
    dependency: String,
    why: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {}: {}", self.krate, self.dependency, self.why)
    }
}

const CORE: &str = "switchboard-core";
const SANDBOX: &str = "switchboard-sandbox";
const STORAGE: &str = "switchboard-storage";
const RELAY: &str = "switchboard-relay";
const ADAPTERS: [&str; 2] = ["switchboard-msteams", "switchboard-slack"];
/// Crates that ship the sandbox (`switchboard sandbox`, `serve --sandbox`, the examples).
const SHIPS_SANDBOX: [&str; 2] = ["switchboard-cli", "switchboard-server"];
/// HTTP clients, servers and stacks core must not see.
const HTTP_CRATES: &[&str] = &[
    "reqwest",
    "hyper",
    "hyper-util",
    "h2",
    "http-body-util",
    "axum",
    "actix-web",
    "warp",
    "rocket",
    "poem",
    "tide",
    "tower-http",
    "tonic",
    "ureq",
    "isahc",
    "surf",
    "attohttpc",
    "curl",
    "tokio-tungstenite",
    "tungstenite",
    "wiremock",
];
/// Database drivers and layers core must not see.
const DATABASE_CRATES: &[&str] = &[
    "sqlx",
    "rusqlite",
    "libsqlite3-sys",
    "diesel",
    "sea-orm",
    "postgres",
    "tokio-postgres",
    "deadpool-postgres",
    "mysql",
    "mysql_async",
    "redis",
    "mongodb",
    "sled",
    "rocksdb",
];
/// Async runtimes core may use only in tests.
const RUNTIME_CRATES: &[&str] = &["tokio", "async-std", "smol", "async-executor", "actix-rt"];

fn is_project_crate(name: &str) -> bool {
    name.starts_with("switchboard-")
}

/// Every dependency rule broken by `ws`, in a stable order.
fn check_dependencies(ws: &Workspace) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut bad = |m: &Member, d: &Dep, why: String| {
        out.push(Violation {
            krate: m.name.clone(),
            dependency: d.package.clone(),
            why: format!("{why} (in [{}])", d.kind),
        })
    };
    for m in &ws.members {
        for d in &m.deps {
            let shipped = d.kind != Kind::Dev;
            let name = m.name.as_str();
            let dep = d.package.as_str();
            if ADAPTERS.contains(&name)
                && shipped
                && (ADAPTERS.contains(&dep) || dep == STORAGE || dep == RELAY)
            {
                bad(
                    m,
                    d,
                    "adapters never depend on each other, nor on storage or relay".into(),
                );
            }
            if name == SANDBOX && is_project_crate(dep) {
                bad(
                    m,
                    d,
                    "the sandbox depends on none of the project's crates".into(),
                );
            }
            if dep == SANDBOX
                && shipped
                && !SHIPS_SANDBOX.contains(&name)
                && !name.starts_with("example-")
            {
                bad(
                    m,
                    d,
                    "the sandbox is only a dev-dependency outside the CLI, server and examples"
                        .into(),
                );
            }
            if name == CORE {
                if HTTP_CRATES.contains(&dep) {
                    bad(m, d, "core has no I/O: no HTTP client or server".into());
                }
                if DATABASE_CRATES.contains(&dep) {
                    bad(m, d, "core has no I/O: no database".into());
                }
                if RUNTIME_CRATES.contains(&dep) && shipped {
                    bad(
                        m,
                        d,
                        "core has no I/O: an async runtime only in dev-dependencies".into(),
                    );
                }
            }
            if name == RELAY && shipped && is_project_crate(dep) && dep != CORE {
                bad(
                    m,
                    d,
                    "the relay depends on core only among the project's crates".into(),
                );
            }
        }
    }
    let used: BTreeSet<&str> = ws
        .members
        .iter()
        .flat_map(|m| m.deps.iter())
        .filter_map(|d| d.workspace_key.as_deref())
        .collect();
    // Entries naming the workspace's own crates are the catalog members inherit from, not
    // third-party dependencies that can go stale.
    for (key, package) in &ws.workspace_deps {
        if !used.contains(key.as_str()) && !ws.is_member(package) {
            out.push(Violation {
                krate: "[workspace.dependencies]".into(),
                dependency: key.clone(),
                why: "used by no member: remove the entry".into(),
            });
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Reading manifests

fn table<'a>(v: &'a toml::Table, key: &str) -> Option<&'a toml::Table> {
    v.get(key).and_then(toml::Value::as_table)
}

/// `[workspace.dependencies]` of the root manifest: key → real package name.
fn workspace_deps(root: &toml::Table) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let Some(deps) = table(root, "workspace").and_then(|w| table(w, "dependencies")) else {
        return Ok(out);
    };
    for (key, value) in deps {
        out.insert(key.clone(), package_name(key, value)?);
    }
    Ok(out)
}

fn package_name(key: &str, value: &toml::Value) -> Result<String, String> {
    match value.get("package") {
        None => Ok(key.to_owned()),
        Some(toml::Value::String(p)) => Ok(p.clone()),
        Some(other) => Err(format!(
            "dependency {key}: `package` is not a string: {other:?}"
        )),
    }
}

/// Parses one member manifest. `label` names it in errors.
fn parse_member(
    text: &str,
    label: &str,
    workspace_deps: &BTreeMap<String, String>,
) -> Result<Member, String> {
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{label}: not valid TOML: {e}"))?;
    let name = table(&doc, "package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .ok_or_else(|| format!("{label}: no [package] name"))?
        .to_owned();
    let mut sections: Vec<&toml::Table> = vec![&doc];
    if let Some(targets) = table(&doc, "target") {
        sections.extend(targets.values().filter_map(toml::Value::as_table));
    }
    let mut deps = Vec::new();
    for section in sections {
        for (key, kind) in [
            ("dependencies", Kind::Normal),
            ("build-dependencies", Kind::Build),
            ("build_dependencies", Kind::Build),
            ("dev-dependencies", Kind::Dev),
            ("dev_dependencies", Kind::Dev),
        ] {
            let Some(entries) = table(section, key) else {
                continue;
            };
            for (dep_key, value) in entries {
                let inherited = value
                    .get("workspace")
                    .and_then(toml::Value::as_bool)
                    .unwrap_or(false);
                let dep = if inherited {
                    let package = workspace_deps.get(dep_key).ok_or_else(|| {
                        format!(
                            "{label}: {dep_key}.workspace = true, but [workspace.dependencies] \
                             has no {dep_key}"
                        )
                    })?;
                    Dep {
                        package: package.clone(),
                        kind,
                        workspace_key: Some(dep_key.clone()),
                    }
                } else {
                    Dep {
                        package: package_name(dep_key, value)
                            .map_err(|e| format!("{label}: {e}"))?,
                        kind,
                        workspace_key: None,
                    }
                };
                deps.push(dep);
            }
        }
    }
    Ok(Member { name, deps })
}

/// Expands `[workspace] members` (literal paths and `dir/*` globs) minus `exclude`.
fn member_dirs(root_dir: &Path, root: &toml::Table) -> Result<Vec<PathBuf>, String> {
    let ws = table(root, "workspace").ok_or("the root Cargo.toml has no [workspace]")?;
    let strings = |key: &str| -> Vec<String> {
        ws.get(key)
            .and_then(toml::Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let exclude: BTreeSet<PathBuf> = strings("exclude")
        .iter()
        .map(|e| root_dir.join(e))
        .collect();
    let mut dirs = Vec::new();
    for pattern in strings("members") {
        if let Some(parent) = pattern.strip_suffix("/*") {
            let parent = root_dir.join(parent);
            let entries = std::fs::read_dir(&parent)
                .map_err(|e| format!("members glob {pattern}: {}: {e}", parent.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("Cargo.toml").is_file())
                .collect();
            found.sort();
            dirs.extend(found);
        } else if pattern.contains('*') {
            return Err(format!(
                "members pattern {pattern}: only `dir/*` globs are understood"
            ));
        } else {
            dirs.push(root_dir.join(pattern));
        }
    }
    dirs.retain(|d| !exclude.contains(d));
    Ok(dirs)
}

/// Reads the workspace rooted at `root_dir`.
fn read_workspace(root_dir: &Path) -> Result<Workspace, String> {
    let path = root_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let root: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
    let workspace_deps = workspace_deps(&root)?;
    let mut members = Vec::new();
    for dir in member_dirs(root_dir, &root)? {
        let manifest = dir.join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| format!("{}: {e}", manifest.display()))?;
        members.push(parse_member(
            &text,
            &manifest.display().to_string(),
            &workspace_deps,
        )?);
    }
    Ok(Workspace {
        members,
        workspace_deps,
    })
}

// ------------------------------------------------------------------------------------------
// Paths named in the docs

/// Planned paths the docs may name before they exist. Keep it short; an entry whose path
/// exists fails the test (it is not planned any more).
const PLANNED: &[&str] = &["fuzz"];

/// Findings in files the tidy test's owner may not edit, each with the exact fix, so the
/// test stays green until they are fixed. An entry that no longer matches a finding fails
/// the test: delete it. `(crate, dependency, fix)` and `(document, path, fix)`.
const KNOWN_DEPENDENCY_DRIFT: &[(&str, &str, &str)] = &[];

/// See [`KNOWN_DEPENDENCY_DRIFT`].
const KNOWN_DOC_DRIFT: &[(&str, &str, &str)] = &[];

/// Removes the findings listed in `known` from `findings` (`(where, what, text)`), printing
/// them; returns the entries of `known` that matched nothing.
fn drop_known_drift(
    findings: &mut Vec<(String, String, String)>,
    known: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut stale = Vec::new();
    for (place, what, fix) in known {
        let before = findings.len();
        findings.retain(|(p, w, _)| !(p == place && w == what));
        if findings.len() == before {
            stale.push(format!("{place}: {what}"));
        } else {
            println!("known drift, not this owner's file: {place}: {what} — {fix}");
        }
    }
    stale
}

/// Extensions that make a code span a file name.
const FILE_EXTENSIONS: &[&str] = &[
    "rs", "md", "toml", "py", "sql", "json", "sh", "yml", "yaml", "lock", "txt",
];

/// First segments that make a slash-separated code span a repo path.
const TOP_LEVEL: &[&str] = &[
    "crates",
    "xtask",
    "examples",
    "specs",
    "tests",
    "benches",
    "docs",
    "src",
    ".ci",
    "migrations",
];

/// A path-like reference found in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DocRef {
    /// As written, without a `#fragment`.
    path: String,
    /// 1-based line.
    line: usize,
    /// The crate directory the enclosing heading names (`### \`crates/storage\``), if any.
    section: Option<String>,
}

/// The span looks like a repo-relative path (not a route, URL, flag, type or glob).
fn looks_like_path(s: &str) -> bool {
    if s.is_empty()
        || s.starts_with('/')
        || s.starts_with('-')
        || s.contains("..")
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
    {
        return false;
    }
    let trimmed = s.trim_end_matches('/');
    let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
    let has_extension = last
        .rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && FILE_EXTENSIONS.contains(&ext));
    let first = trimmed.split('/').next().unwrap_or_default();
    has_extension || (trimmed.contains('/') || s.ends_with('/')) && TOP_LEVEL.contains(&first)
}

/// Inline code spans and link targets of `markdown` that look like repo paths, skipping
/// fenced code blocks.
fn doc_refs(markdown: &str) -> Vec<DocRef> {
    let mut out = Vec::new();
    let mut fenced = false;
    let mut section = None;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let spans = code_spans(line);
        if line.starts_with('#') {
            section = spans
                .iter()
                .find(|s| s.starts_with("crates/") && looks_like_path(s))
                .map(|s| s.trim_end_matches('/').to_owned());
        }
        let mut push = |raw: &str| {
            let path = raw.split('#').next().unwrap_or_default();
            if looks_like_path(path) {
                out.push(DocRef {
                    path: path.to_owned(),
                    line: i + 1,
                    section: section.clone(),
                });
            }
        };
        for span in &spans {
            push(span);
        }
        for target in link_targets(line) {
            if !target.contains("://") && !target.starts_with("mailto:") {
                push(target);
            }
        }
    }
    out
}

/// The contents of single-backtick code spans on one line.
fn code_spans(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        let ticks = rest[start..].chars().take_while(|&c| c == '`').count();
        let after = &rest[start + ticks..];
        let fence = &rest[start..start + ticks];
        match after.find(fence) {
            Some(end) => {
                out.push(after[..end].trim());
                rest = &after[end + ticks..];
            }
            None => break,
        }
    }
    out
}

/// The targets of `[text](target)` links on one line.
fn link_targets(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(end) => {
                let target = after[..end].split_whitespace().next().unwrap_or_default();
                out.push(target);
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    out
}

/// The outcome of checking one document's references.
#[derive(Debug, Default, PartialEq, Eq)]
struct DocReport {
    /// How many path references the document has.
    checked: usize,
    /// `doc:line: path` for every reference that resolves nowhere.
    missing: Vec<String>,
    /// `doc:line: path` for references allowed as planned.
    planned: Vec<String>,
}

fn is_planned(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    PLANNED
        .iter()
        .any(|a| p == *a || p.strip_prefix(a).is_some_and(|r| r.starts_with('/')))
}

/// Names of the files in the tree at `root` (outside `.git` and `target`), for references
/// that give a bare file name (`web_api_openapi_v2.json`).
fn file_names(root: &Path) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(ty) = e.file_type() else { continue };
            if ty.is_dir() {
                if name != ".git" && name != "target" {
                    stack.push(e.path());
                }
            } else {
                names.insert(name);
            }
        }
    }
    names
}

/// Checks the references of the document at `doc` (repo-relative) against the tree at
/// `root`. A path resolves against the repo root, the document's directory, the crate the
/// document belongs to (and its `src/`), or the crate its section heading names (and its
/// `src/`), so a code map may say `sql/imp.rs` under `crates/storage`. A bare file name
/// (no `/`) also resolves when a file of that name is anywhere in the tree.
fn check_doc(root: &Path, doc: &str, markdown: &str) -> DocReport {
    check_doc_with(root, doc, markdown, &file_names(root))
}

fn check_doc_with(
    root: &Path,
    doc: &str,
    markdown: &str,
    tree_names: &BTreeSet<String>,
) -> DocReport {
    let doc_dir = Path::new(doc).parent().unwrap_or(Path::new(""));
    let doc_crate = doc_dir
        .ancestors()
        .find(|a| !a.as_os_str().is_empty() && root.join(a).join("Cargo.toml").is_file());
    let mut report = DocReport::default();
    for r in doc_refs(markdown) {
        report.checked += 1;
        let mut bases: Vec<PathBuf> = vec![PathBuf::new(), doc_dir.to_path_buf()];
        for c in doc_crate
            .map(Path::to_path_buf)
            .into_iter()
            .chain(r.section.as_deref().map(PathBuf::from))
        {
            bases.push(c.join("src"));
            bases.push(c);
        }
        let want_dir = r.path.ends_with('/');
        let found = bases.iter().any(|b| {
            let p = root.join(b).join(r.path.trim_end_matches('/'));
            if want_dir { p.is_dir() } else { p.exists() }
        }) || (!r.path.contains('/') && tree_names.contains(&r.path));
        let at = format!("{doc}:{}: {}", r.line, r.path);
        if found {
            continue;
        }
        if is_planned(&r.path) {
            report.planned.push(at);
        } else {
            report.missing.push(at);
        }
    }
    report
}

/// The documents whose references are checked, repo-relative.
fn docs_to_check(root: &Path) -> Vec<String> {
    let mut docs = vec!["README.md".to_owned(), "ARCHITECTURE.md".to_owned()];
    let mut listed = |dir: &str, only: Option<&str>| {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            return;
        };
        let mut found: Vec<String> = Vec::new();
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            match only {
                Some(file) => {
                    if path.join(file).is_file() {
                        found.push(format!("{dir}/{}/{file}", e.file_name().to_string_lossy()));
                    }
                }
                None => {
                    if path.extension().is_some_and(|x| x == "md") {
                        found.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
                    }
                }
            }
        }
        found.sort();
        docs.extend(found);
    };
    listed("crates", Some("README.md"));
    listed("crates/sandbox/docs", None);
    docs
}

// ------------------------------------------------------------------------------------------
// The tests: the real workspace, then the checks on fixtures

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace root")
        .to_path_buf()
}

#[test]
fn workspace_dependencies_follow_the_architecture() {
    let ws = read_workspace(&repo_root()).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ws.members.iter().any(|m| m.name == CORE),
        "the workspace was not read: no {CORE} among {:?}",
        ws.members.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    let mut findings: Vec<(String, String, String)> = check_dependencies(&ws)
        .into_iter()
        .map(|v| (v.krate.clone(), v.dependency.clone(), v.to_string()))
        .collect();
    let stale = drop_known_drift(&mut findings, KNOWN_DEPENDENCY_DRIFT);
    assert!(
        findings.is_empty(),
        "dependency rules broken (see ARCHITECTURE.md, Invariants):\n  {}",
        findings
            .iter()
            .map(|f| f.2.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "fixed, so delete from KNOWN_DEPENDENCY_DRIFT in xtask/src/tidy.rs: {stale:?}"
    );
}

#[test]
fn docs_name_only_existing_paths() {
    let root = repo_root();
    let mut missing = Vec::new();
    let mut planned = Vec::new();
    let mut checked = 0;
    let docs = docs_to_check(&root);
    let names = file_names(&root);
    for doc in &docs {
        let text = std::fs::read_to_string(root.join(doc))
            .unwrap_or_else(|e| panic!("cannot read {doc}: {e}"));
        let report = check_doc_with(&root, doc, &text, &names);
        checked += report.checked;
        for m in report.missing {
            // `doc:line: path`
            let path = m.split_once(": ").map_or("", |(_, p)| p).to_owned();
            missing.push((doc.clone(), path, m));
        }
        planned.extend(report.planned);
    }
    let stale = drop_known_drift(&mut missing, KNOWN_DOC_DRIFT);
    println!("checked {checked} path references in {}", docs.join(", "));
    assert!(
        checked > 10,
        "the docs named only {checked} paths: is the extraction broken?"
    );
    println!("allowed as planned ({}):", PLANNED.join(", "));
    for p in &planned {
        println!("  {p}");
    }
    for p in PLANNED {
        assert!(
            !root.join(p).exists(),
            "{p} exists now: remove it from PLANNED in xtask/src/tidy.rs"
        );
    }
    assert!(
        missing.is_empty(),
        "docs name paths that do not exist (fix the doc, or add a planned path to PLANNED):\n  {}",
        missing
            .iter()
            .map(|m| m.2.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "fixed, so delete from KNOWN_DOC_DRIFT in xtask/src/tidy.rs: {stale:?}"
    );
}

mod fixtures {
    use super::*;

    const ROOT_DEPS: &str = r#"
        [workspace]
        members = ["crates/*"]
        [workspace.dependencies]
        switchboard-core = { path = "crates/core" }
        switchboard-slack = { path = "crates/slack" }
        switchboard-msteams = { path = "crates/msteams" }
        switchboard-storage = { path = "crates/storage" }
        switchboard-sandbox = { path = "crates/sandbox" }
        tokio = { version = "1", features = ["rt"] }
        http-client = { version = "0.12", package = "reqwest" }
        serde = "1"
    "#;

    fn ws_deps() -> BTreeMap<String, String> {
        workspace_deps(&ROOT_DEPS.parse().unwrap()).unwrap()
    }

    fn member(text: &str) -> Member {
        parse_member(text, "fixture", &ws_deps()).unwrap()
    }

    /// Every workspace dependency is used by a filler member, so only the rule under test
    /// can fire.
    fn workspace(members: &[&str]) -> Workspace {
        let mut members: Vec<Member> = members.iter().map(|m| member(m)).collect();
        members.push(Member {
            name: "example-filler".into(),
            deps: ws_deps()
                .into_iter()
                .map(|(k, p)| Dep {
                    package: p,
                    kind: Kind::Dev,
                    workspace_key: Some(k),
                })
                .collect(),
        });
        Workspace {
            members,
            workspace_deps: ws_deps(),
        }
    }

    fn pairs(v: &[Violation]) -> Vec<(&str, &str)> {
        v.iter()
            .map(|v| (v.krate.as_str(), v.dependency.as_str()))
            .collect()
    }

    #[test]
    fn an_adapter_depending_on_the_other_adapter_or_storage_fails() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-slack"
            [dependencies]
            switchboard-core.workspace = true
            switchboard-msteams.workspace = true
            [build-dependencies]
            switchboard-storage = { path = "../storage" }
        "#]);
        let v = check_dependencies(&ws);
        assert_eq!(
            pairs(&v),
            [
                ("switchboard-slack", "switchboard-msteams"),
                ("switchboard-slack", "switchboard-storage")
            ]
        );
        assert!(
            v[0].to_string()
                .contains("switchboard-slack -> switchboard-msteams")
        );
        assert!(
            v[1].to_string().contains("[build-dependencies]"),
            "{}",
            v[1]
        );
    }

    #[test]
    fn an_adapter_may_test_against_the_sandbox_and_storage() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-msteams"
            [dependencies]
            switchboard-core.workspace = true
            [dev-dependencies]
            switchboard-sandbox.workspace = true
            switchboard-storage.workspace = true
        "#]);
        assert_eq!(check_dependencies(&ws), []);
    }

    #[test]
    fn the_sandbox_depending_on_any_project_crate_fails() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-sandbox"
            [dependencies]
            serde.workspace = true
            [dev-dependencies]
            switchboard-core.workspace = true
        "#]);
        assert_eq!(
            pairs(&check_dependencies(&ws)),
            [("switchboard-sandbox", "switchboard-core")]
        );
    }

    #[test]
    fn the_sandbox_as_a_normal_dependency_outside_the_cli_fails() {
        let ws = workspace(&[
            r#"
            [package]
            name = "switchboard-storage"
            [dependencies]
            switchboard-sandbox.workspace = true
            "#,
            r#"
            [package]
            name = "switchboard-cli"
            [dependencies]
            switchboard-sandbox.workspace = true
            "#,
        ]);
        assert_eq!(
            pairs(&check_dependencies(&ws)),
            [("switchboard-storage", "switchboard-sandbox")]
        );
    }

    #[test]
    fn core_with_http_a_database_or_a_runtime_fails_even_renamed() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-core"
            [dependencies]
            http-client.workspace = true
            db = { version = "0.8", package = "sqlx" }
            tokio.workspace = true
            [target.'cfg(unix)'.dependencies]
            hyper = "1"
        "#]);
        let v = check_dependencies(&ws);
        let mut got = pairs(&v);
        got.sort();
        assert_eq!(
            got,
            [
                ("switchboard-core", "hyper"),
                ("switchboard-core", "reqwest"),
                ("switchboard-core", "sqlx"),
                ("switchboard-core", "tokio"),
            ]
        );
    }

    #[test]
    fn core_may_test_with_tokio() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-core"
            [dependencies]
            serde.workspace = true
            [dev-dependencies]
            tokio.workspace = true
        "#]);
        assert_eq!(check_dependencies(&ws), []);
    }

    #[test]
    fn the_relay_depends_on_core_only() {
        let ws = workspace(&[r#"
            [package]
            name = "switchboard-relay"
            [dependencies]
            switchboard-core.workspace = true
            switchboard-storage.workspace = true
            tokio.workspace = true
            [dev-dependencies]
            switchboard-sandbox.workspace = true
        "#]);
        assert_eq!(
            pairs(&check_dependencies(&ws)),
            [("switchboard-relay", "switchboard-storage")]
        );
    }

    #[test]
    fn an_unused_workspace_dependency_fails_by_name() {
        let ws = Workspace {
            members: vec![member(
                r#"
                [package]
                name = "switchboard-core"
                [dependencies]
                serde.workspace = true
                [dev-dependencies]
                tokio.workspace = true
                "#,
            )],
            workspace_deps: ws_deps(),
        };
        let v = check_dependencies(&ws);
        let unused: Vec<&str> = v.iter().map(|v| v.dependency.as_str()).collect();
        assert_eq!(
            unused,
            [
                "http-client",
                "switchboard-msteams",
                "switchboard-sandbox",
                "switchboard-slack",
                "switchboard-storage"
            ]
        );
        assert!(v.iter().all(|v| v.krate == "[workspace.dependencies]"));
        // switchboard-core is a member: its entry is the catalog, not a stale dependency.
    }

    #[test]
    fn a_missing_workspace_entry_is_a_clear_error() {
        let err = parse_member(
            "[package]\nname = \"x\"\n[dependencies]\nnope.workspace = true\n",
            "crates/x/Cargo.toml",
            &ws_deps(),
        )
        .unwrap_err();
        assert!(
            err.contains("crates/x/Cargo.toml") && err.contains("nope"),
            "{err}"
        );
    }

    #[test]
    fn the_members_glob_is_expanded_and_excludes_honoured() {
        let dir = std::env::temp_dir().join(format!("tidy-ws-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in [
            (
                "Cargo.toml",
                "[workspace]\nmembers = [\"crates/*\", \"tool\"]\nexclude = [\"crates/old\"]\n\
                 [workspace.dependencies]\nserde = \"1\"\n",
            ),
            (
                "crates/a/Cargo.toml",
                "[package]\nname = \"switchboard-sandbox\"\n[dependencies]\n\
                 switchboard-core = { path = \"../core\" }\nserde.workspace = true\n",
            ),
            (
                "crates/old/Cargo.toml",
                "[package]\nname = \"old\"\n[dependencies]\nnope.workspace = true\n",
            ),
            ("tool/Cargo.toml", "[package]\nname = \"tool\"\n"),
        ] {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::create_dir_all(dir.join("crates/not-a-crate")).unwrap();
        let ws = read_workspace(&dir).unwrap();
        let names: Vec<&str> = ws.members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["switchboard-sandbox", "tool"]);
        assert_eq!(
            pairs(&check_dependencies(&ws)),
            [("switchboard-sandbox", "switchboard-core")]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn doc_refs_are_code_spans_and_links_that_look_like_paths() {
        let md = "\
# Title
See `crates/slack/src/events.rs`, [the map](ARCHITECTURE.md#code-map) and `tests/conformance/`.
Not paths: `/slack/api/{method}`, `--ready-file`, `application/json`, `cargo xtask ci`,
`msteams:<team>/<channel>`, `crates/*/README.md`, [site](https://example.com/a.md), `v1.0`.
```sh
cat crates/missing/in/a/fence.rs `crates/fenced.rs`
```
### `crates/storage` — switchboard-storage
`sql/imp.rs` and ``Cargo.toml``
";
        let refs = doc_refs(md);
        let got: Vec<(&str, usize, Option<&str>)> = refs
            .iter()
            .map(|r| (r.path.as_str(), r.line, r.section.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("crates/slack/src/events.rs", 2, None),
                ("tests/conformance/", 2, None),
                ("ARCHITECTURE.md", 2, None),
                ("crates/storage", 8, Some("crates/storage")),
                ("sql/imp.rs", 9, Some("crates/storage")),
                ("Cargo.toml", 9, Some("crates/storage")),
            ]
        );
    }

    #[test]
    fn a_missing_path_is_reported_with_its_line_and_planned_paths_are_allowed() {
        let root = repo_root();
        let md = "\
`xtask/src/tidy.rs` exists; `crates/slack/src/nope.rs` does not.
`fuzz/fuzz_targets/mrkdwn.rs` is planned; `xtask/src/main.rs/` is a file, not a directory.
### `crates/sandbox`
`ratelimit.rs`, `docs/slack.md` and `gone.rs`
";
        let report = check_doc(&root, "README.md", md);
        assert_eq!(
            report,
            DocReport {
                checked: 8,
                missing: vec![
                    "README.md:1: crates/slack/src/nope.rs".into(),
                    "README.md:2: xtask/src/main.rs/".into(),
                    "README.md:4: gone.rs".into(),
                ],
                planned: vec!["README.md:2: fuzz/fuzz_targets/mrkdwn.rs".into()],
            }
        );
    }

    #[test]
    fn known_drift_is_dropped_and_stale_entries_returned() {
        let mut findings = vec![
            ("a".to_owned(), "x".to_owned(), "a -> x".to_owned()),
            ("b".to_owned(), "y".to_owned(), "b -> y".to_owned()),
        ];
        let stale = drop_known_drift(&mut findings, &[("a", "x", "fix"), ("c", "z", "fix")]);
        assert_eq!(
            findings,
            [("b".to_owned(), "y".to_owned(), "b -> y".to_owned())]
        );
        assert_eq!(stale, ["c: z"]);
    }

    #[test]
    fn crate_docs_resolve_against_their_crate() {
        let root = repo_root();
        let report = check_doc(
            &root,
            "crates/sandbox/docs/msteams.md",
            "`src/lib.rs`, `lib.rs`, `slack.md`, `docs/slack.md`, `tests/it/slack_sdk.rs`, \
             `web_api_openapi_v2.json`",
        );
        assert_eq!(
            report,
            DocReport {
                checked: 6,
                ..DocReport::default()
            }
        );
    }
}
