//! The layers of docs/layers.json hold: no file of a part imports a part it must never
//! import (docs/architecture.md, "Layers").
//!
//! Why by hand: the module-graph tools for Rust (cargo-modules and the like) draw the
//! graph and find cycles but know nothing of our parts and rules, and building one in CI
//! costs minutes. This reads the sources as text: every `crate::a::b` path (and `super::`
//! path, resolved) in a node file names the file it reaches, and every `ringkv_x::` path
//! names a crate of the workspace. Comments are skipped; paths inside strings are rare
//! here and would only make the check stricter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Every `.rs` file under `dir`, as paths relative to the workspace root.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else { return };
    for e in entries.flatten() {
        let rel = dir.join(e.file_name());
        if e.path().is_dir() {
            if e.file_name() != "target" {
                rust_files(root, &rel, out);
            }
        } else if rel.extension().is_some_and(|x| x == "rs") {
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of a node source file: `node/src/raft_net/wire.rs` → `[raft_net, wire]`.
fn module_of(file: &str) -> Vec<String> {
    let rel = file.trim_start_matches("node/src/").trim_end_matches(".rs");
    let mut m: Vec<String> = rel.split('/').map(str::to_string).collect();
    if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        m.pop();
    }
    m
}

/// The node source file a module path reaches: the deepest existing one.
fn file_of(root: &Path, path: &[String]) -> Option<String> {
    for n in (1..=path.len()).rev() {
        let base = format!("node/src/{}", path[..n].join("/"));
        for candidate in [format!("{base}.rs"), format!("{base}/mod.rs")] {
            if root.join(&candidate).is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Every path a use tree starting at `s` names, `self` dropped:
/// `a::b::{c, d::{e, self}}` → `a::b::c`, `a::b::d::e`, `a::b::d`. A plain path
/// (`a::b::f(…)`) is a tree of one.
fn tree_paths(s: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    parse_tree(s, Vec::new(), &mut out);
    out
}

fn parse_tree<'a>(mut s: &'a str, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> &'a str {
    loop {
        s = s.trim_start();
        if let Some(mut rest) = s.strip_prefix('{') {
            loop {
                rest = rest.trim_start();
                if let Some(r) = rest.strip_prefix('}') {
                    return r;
                }
                rest = parse_tree(rest, prefix.clone(), out).trim_start();
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    return rest.strip_prefix('}').unwrap_or(rest);
                }
            }
        }
        let ident: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            out.push(prefix); // `*`, or the end of the path
            return s;
        }
        s = &s[ident.len()..];
        if ident != "self" {
            prefix.push(ident);
        }
        match s.trim_start().strip_prefix("::") {
            Some(r) => s = r,
            None => {
                out.push(prefix);
                return s;
            }
        }
    }
}

/// `text` without its `//` comments (a `//` right after `:`, as in `http://`, is kept).
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut cut = line.len();
        for (i, _) in line.match_indices("//") {
            if !line[..i].ends_with(':') {
                cut = i;
                break;
            }
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// What `file` imports: node files (for node sources) and workspace crates.
fn imports(root: &Path, file: &str) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(root.join(file)).expect("read source");
    imports_in(root, file, &text)
}

/// What source `text`, read as the file `file`, imports.
fn imports_in(root: &Path, file: &str, text: &str) -> (Vec<String>, Vec<String>) {
    let code = without_comments(text);
    let (mut files, mut crates) = (Vec::new(), Vec::new());
    for (i, _) in code.match_indices("ringkv_") {
        let name: String = code[i..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        crates.push(name);
    }
    if !file.starts_with("node/src/") {
        return (files, crates);
    }
    let here = module_of(file);
    for (i, _) in code.match_indices("crate::") {
        for segs in tree_paths(&code[i + "crate::".len()..]) {
            files.extend(file_of(root, &segs));
        }
    }
    for (i, _) in code.match_indices("super::") {
        if code[..i].ends_with("::") {
            continue; // `super::super::` is resolved from its first `super`
        }
        for mut segs in tree_paths(&code[i..]) {
            // A file `a/b.rs` is module `a::b` and `a/mod.rs` is `a`: either way `super`
            // is one module up. (Inside an inline `mod tests`, `super` is the file itself:
            // read as its parent, which stays inside the same part.)
            let mut base = here.clone();
            while segs.first().map(String::as_str) == Some("super") {
                segs.remove(0);
                base.pop();
            }
            base.extend(segs);
            files.extend(file_of(root, &base));
        }
    }
    (files, crates)
}

#[test]
fn no_part_imports_what_it_must_never_import() {
    let root = root();
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/layers.json")).expect("docs/layers.json"))
            .expect("layers.json is JSON");
    let parts: BTreeMap<String, Vec<String>> = doc["parts"]
        .as_object()
        .expect("parts")
        .iter()
        .map(|(name, p)| {
            let is = p["is"].as_array().expect("is").iter().map(|v| v.as_str().expect("path").to_string()).collect();
            (name.clone(), is)
        })
        .collect();
    let part_of = |file: &str| -> Option<&String> {
        parts
            .iter()
            .filter_map(|(name, is)| is.iter().filter(|p| file.starts_with(p.as_str())).map(|p| (p.len(), name)).max())
            .max()
            .map(|(_, name)| name)
    };
    // A workspace crate belongs to the part whose paths hold its directory.
    let crate_part = |name: &str| -> Option<&String> {
        let dir = match name {
            "ringkv_api" => "api/",
            "ringkv_plan" => "plan/",
            "ringkv_ctl" => "ctl/",
            "ringkv_operator" => "operator/",
            _ => return None,
        };
        part_of(dir)
    };
    let mut files = Vec::new();
    for dir in ["node/src", "api/src", "plan/src", "ctl/src", "operator/src"] {
        rust_files(&root, Path::new(dir), &mut files);
    }
    assert!(files.len() > 50, "sources not found under {}", root.display());
    let mut broken = Vec::new();
    let mut checked = 0;
    for rule in doc["never"].as_array().expect("never") {
        let (from, to) = (rule[0].as_str().expect("from"), rule[1].as_str().expect("to"));
        for file in files.iter().filter(|f| part_of(f).is_some_and(|p| p == from)) {
            let (to_files, to_crates) = imports(&root, file);
            checked += 1;
            for t in &to_files {
                if part_of(t).is_some_and(|p| p == to) {
                    broken.push(format!("{from} -> {to}: {file} imports {t} ({})", rule[2]));
                }
            }
            for c in &to_crates {
                if crate_part(c).is_some_and(|p| p == to) && part_of(file) != crate_part(c) {
                    broken.push(format!("{from} -> {to}: {file} uses {c} ({})", rule[2]));
                }
            }
        }
    }
    broken.dedup();
    assert!(checked > 20, "the rules matched too few files ({checked}): are the parts' paths right?");
    assert!(broken.is_empty(), "layer rules broken:\n{}", broken.join("\n"));
}

/// Grouped, nested and multi-line imports are all seen, comments are not, and a
/// transport file importing the core is what the Transport -> Core rule names.
#[test]
fn grouped_and_multi_line_imports_are_seen() {
    let root = root();
    let text = "// use crate::api::admin::router;\nuse crate::{api::internal, node::{self, Node}};\nuse super::{\n    wire,\n    call::Call,\n};\nlet u = \"http://x\"; crate::router::calls::Get;\n";
    let (files, _) = imports_in(&root, "node/src/raft_net/listener.rs", text);
    for want in [
        "node/src/api/internal.rs",
        "node/src/node.rs",
        "node/src/raft_net/wire.rs",
        "node/src/raft_net/call.rs",
        "node/src/router/calls.rs",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not seen in {files:?}");
    }
    assert!(!files.iter().any(|f| f == "node/src/api/admin.rs"), "a commented-out import counts: {files:?}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("docs/layers.json")).expect("layers.json"))
            .expect("JSON");
    let never = doc["never"].as_array().expect("never");
    assert!(never.iter().any(|r| r[0] == "Transport" && r[1] == "Core"), "the rule this test stands for is gone");
}

/// The checker itself sees an import that breaks a rule: the transport reaching into the
/// core (what raft_net/server.rs did before the transport was layered).
#[test]
fn the_checker_sees_a_broken_rule() {
    let root = root();
    let (files, _) = imports(&root, "node/src/api/internal.rs");
    assert!(files.iter().any(|f| f == "node/src/node.rs"), "api/internal.rs reaches node.rs: {files:?}");
    assert!(files.iter().any(|f| f == "node/src/api/admin.rs"), "`super::admin` resolves: {files:?}");
    let (files, _) = imports(&root, "node/src/node/inbound.rs");
    assert!(files.iter().any(|f| f == "node/src/node.rs"), "`super::Node` resolves to node.rs: {files:?}");
    assert!(files.iter().any(|f| f == "node/src/raft_net/listener.rs"), "{files:?}");
}
