//! The module graph of `core/src` runs one way, in the order of the flow
//! (`docs/architecture.md`, "Module graph"). This test reads the source, finds every
//! reference from one top-level module to another (`use crate::…`, `crate::…` paths and
//! `super::` chains that leave the module), and fails, naming the file, line and path, when
//! one runs against the layers below or closes a cycle. Test code (`tests.rs`,
//! `#[cfg(test)]` modules) is left out: tests may look anywhere.
//!
//! A new top-level module must be placed in `LAYERS`; a new edge upwards means the code wants
//! a seam (a trait defined below and implemented above, as `journal::Routes` is) or a move.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `core/src`, bottom first. A module may use modules of its own layer
/// or below, never above; within a layer, no two modules may use each other.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "helpers and pure rules",
        &["out", "lograte", "time", "verify", "respond"],
    ),
    ("telemetry", &["metrics", "tap", "internal_events"]),
    ("configuration as data", &["config"]),
    ("stores and plugin hosts", &["journal", "wasm"]),
    ("the engine", &["runtime"]),
    (
        "the flow's entry and wiring",
        &["ingest", "storage", "reload", "rerun"],
    ),
    // `admin` includes its web console (`admin/ui.rs`), which uses nothing of the crate.
    ("serving", &["listener", "admin"]),
    (
        "processes",
        &[
            "server",
            "dlq",
            "events_cmd",
            "tail_cmd",
            "pipelines_cmd",
            "pipetest",
            "send",
            "init",
            "scaffold",
            "fuzzing",
            "verify_cmd",
        ],
    ),
    ("command line", &["cli"]),
];

#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    file: PathBuf,
    line: usize,
    path: String,
}

#[test]
fn core_modules_depend_one_way_along_the_flow() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(
        edges.len() > 20,
        "found only {} edges in {}: the scanner is broken",
        edges.len(),
        src.display()
    );
    let problems = check(&edges, &top_level_modules(&src));
    assert!(
        problems.is_empty(),
        "core/src's module graph must run one way (see LAYERS in tests/architecture.rs):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_a_back_edge_and_a_cycle() {
    let edge = |from: &str, to: &str| Edge {
        from: from.into(),
        to: to.into(),
        file: PathBuf::from(format!("core/src/{from}.rs")),
        line: 7,
        path: format!("crate::{to}::Thing"),
    };
    let modules: BTreeSet<String> = ["journal", "runtime", "ingest", "storage", "config"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let back = check(&[edge("journal", "runtime")], &modules);
    assert!(
        back.iter()
            .any(|p| p.contains("core/src/journal.rs:7") && p.contains("crate::runtime::Thing")),
        "{back:?}"
    );
    let cycle = check(
        &[edge("ingest", "storage"), edge("storage", "ingest")],
        &modules,
    );
    assert!(cycle.iter().any(|p| p.contains("cycle")), "{cycle:?}");
    let unplaced = check(&[], &["brand_new".to_string()].into_iter().collect());
    assert!(
        unplaced.iter().any(|p| p.contains("brand_new")),
        "{unplaced:?}"
    );
    // The scanner sees grouped imports, qualified paths and `super` chains, and skips
    // comments, strings and test modules.
    let code = r#"
        use crate::{config::Config, journal::{Journal, Route}};
        // use crate::cli::Nothing;
        fn f() { let s = "crate::admin::Nope"; crate::metrics::count(); }
        #[cfg(test)]
        mod tests { use crate::cli::Test; }
    "#;
    let found: Vec<String> = references(code, &["runtime".into(), "pipeline".into()])
        .into_iter()
        .map(|(_, to, _)| to)
        .collect();
    assert_eq!(found, ["config", "journal", "metrics"]);
    let up = references(
        "use super::super::journal::Delivery;",
        &["runtime".into(), "a".into()],
    );
    assert_eq!(up.first().map(|r| r.1.as_str()), Some("journal"));
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// Every rule broken, one line each.
fn check(edges: &[Edge], modules: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for m in modules {
        if layer_of(m).is_none() {
            problems.push(format!(
                "`{m}` is a top-level module of core/src that LAYERS does not place"
            ));
        }
    }
    for e in edges {
        if let (Some(from), Some(to)) = (layer_of(&e.from), layer_of(&e.to))
            && to > from
        {
            problems.push(format!(
                "{}:{}: `{}` ({}) uses `{}` ({}), a layer above it",
                e.file.display(),
                e.line,
                e.from,
                LAYERS[from].0,
                e.path,
                LAYERS[to].0
            ));
        }
    }
    // Cycles within a layer: any strongly connected set of more than one module.
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
    }
    for cycle in cycles(&graph) {
        let named: Vec<String> = edges
            .iter()
            .filter(|e| cycle.contains(&e.from.as_str()) && cycle.contains(&e.to.as_str()))
            .map(|e| format!("    {}:{}: {}", e.file.display(), e.line, e.path))
            .collect();
        problems.push(format!(
            "a cycle between {}:\n{}",
            cycle.join(", "),
            named.join("\n")
        ));
    }
    problems
}

/// The strongly connected sets of more than one node (Tarjan).
fn cycles<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in g.get(v).into_iter().flatten() {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut set = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                set.push(w);
                if w == v {
                    break;
                }
            }
            if set.len() > 1 {
                set.sort();
                s.out.push(set);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !s.index.contains_key(v) {
            visit(v, graph, &mut s);
        }
    }
    s.out
}

fn top_level_modules(src: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(src).expect("read core/src").flatten() {
        let path = entry.path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir()
            || (path.extension().is_some_and(|e| e == "rs") && name != "lib" && name != "main")
        {
            out.insert(name);
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every edge between two top-level modules in non-test code.
fn edges(src: &Path) -> Vec<Edge> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let mut module: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        if module.last().is_some_and(|m| m == "mod") {
            module.pop();
        }
        // The crate root and the binary (which uses the library by name), and test files.
        if module.is_empty()
            || module == ["lib"]
            || module == ["main"]
            || module.last().is_some_and(|m| m == "tests")
        {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        for (line, to, path) in references(&text, &module) {
            if to != module[0] {
                out.push(Edge {
                    from: module[0].clone(),
                    to,
                    file: Path::new("core/src").join(rel),
                    line,
                    path,
                });
            }
        }
    }
    out
}

/// `(line, top-level module, path as written)` for each reference that leaves `module` by
/// an absolute (`crate::`) or relative (`super::`) path, in code that is not a test module.
fn references(text: &str, module: &[String]) -> Vec<(usize, String, String)> {
    let code = without_tests(&code_only(text));
    let bytes = code.as_bytes();
    let line_at = |i: usize| bytes[..i].iter().filter(|&&b| b == b'\n').count() + 1;
    let text_at = |i: usize| String::from_utf8_lossy(&bytes[i..]).into_owned();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b':'));
        if starts_word && bytes[i..].starts_with(b"crate::") {
            i += "crate::".len();
            let rest = text_at(i);
            for first in first_segments(&rest) {
                out.push((line_at(i), first, format!("crate::{}", shown(&rest))));
            }
        } else if starts_word && bytes[i..].starts_with(b"super::") {
            let line = line_at(i);
            let mut depth = 0;
            while bytes[i..].starts_with(b"super::") {
                depth += 1;
                i += "super::".len();
            }
            let rest = text_at(i);
            let written = format!("{}{}", "super::".repeat(depth), shown(&rest));
            // `super` of a file's module is its parent.
            if depth < module.len() {
                out.push((line, module[0].clone(), written));
            } else if depth == module.len() {
                for first in first_segments(&rest) {
                    out.push((line, first, written.clone()));
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The path as written, up to the end of the item or group (for messages).
fn shown(rest: &str) -> String {
    let end = rest
        .find([';', '(', ' ', '\n', ',', ')', '<', '!'])
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

/// `a::b` → `[a]`; `{a::b, c::{d}}` → `[a, c]`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        let first = ident(rest);
        return if first.is_empty() {
            vec![]
        } else {
            vec![first]
        };
    };
    let mut out = Vec::new();
    let mut depth = 0;
    let mut at_item_start = true;
    for (k, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item_start = true,
            c if c.is_whitespace() => {}
            _ if at_item_start && depth == 0 => {
                let first = ident(&group[k..]);
                if !first.is_empty() && first != "self" {
                    out.push(first);
                }
                at_item_start = false;
            }
            _ => {}
        }
    }
    out
}

/// The source with comments, strings and character literals blanked (newlines kept, so
/// line numbers hold).
fn code_only(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('#') || next == Some('"'))
            && (i == 0 || !chars[i - 1].is_alphanumeric())
        {
            // Raw string: r#*"…"#*.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body: String = chars[j + 1..].iter().collect();
            let len = body
                .find(&close)
                .map(|k| body[..k].chars().count())
                .unwrap_or(body.chars().count());
            let end = (j + 1 + len + 1 + hashes).min(chars.len());
            for &ch in &chars[i..end] {
                out.push(blank(ch));
            }
            i = end;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A character literal ('x', '\n', '\''), or a lifetime ('a).
            let escaped = next == Some('\\');
            let is_char = escaped || chars.get(i + 2) == Some(&'\'');
            if is_char {
                let mut j = i + if escaped { 3 } else { 2 };
                while j < chars.len() && chars[j] != '\'' {
                    j += 1;
                }
                for _ in i..=j.min(chars.len() - 1) {
                    out.push(' ');
                }
                i = j + 1;
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The code without `#[cfg(test)]` items (blanked to the end of their braces or `;`).
fn without_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let brace = item.find('{');
        let semi = item.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = item.len();
                for (k, c) in item[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, Some(s)) => s + 1,
            (None, None) => item.len(),
        };
        out.extend(
            item[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}
