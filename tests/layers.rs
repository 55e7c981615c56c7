//! The product crate's top-level modules form layers, and a module uses only modules of the
//! layers below its own: the graph reads downward and has no circles. This test derives the
//! graph from `src/` (every `crate::<module>` path, in code, `use` trees and macro input
//! alike, and `super::` paths that climb out of a top-level module) and checks it against
//! [`LAYERS`], the table `docs/architecture.md` explains.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::BTreeSet;
use std::path::Path;

/// The layers, top to bottom. A module may use the modules of any row below its own; a
/// module of its own row or of a row above is an error, and so is a module of `src/` that
/// no row names (or a row naming one that does not exist).
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["service", "demo"],
    &["http"],
    &["preflight"],
    &["runner"],
    &["events", "auth", "request_timeout", "steplog", "tethers"],
    &["metrics"],
    &["render", "migrate"],
    &["status", "step"],
    &["pivot"],
    &["contract", "retry", "telemetry", "sanitize"],
];

/// One use of a module by another that the table forbids.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Violation {
    /// `from` uses `to`, which is not in a layer below `from`'s.
    NotDownward {
        file: String,
        from: String,
        to: String,
    },
    /// A top-level module of `src/` (or one a path names) that no layer declares.
    Undeclared { module: String },
    /// A layer declares a module that `src/` does not hold.
    Missing { module: String },
}

/// The row of `module` in `layers`.
fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|row| row.contains(&module))
}

/// The top-level module a file of `src/` belongs to and its module depth below the crate
/// root (`a.rs` and `a/mod.rs`: 1; `a/b.rs`: 2), or `None` for the crate roots.
fn module_of(path: &str) -> Option<(String, usize)> {
    let parts: Vec<&str> = path.split('/').collect();
    let file = parts.last()?;
    if parts.len() == 1 && (*file == "lib.rs" || *file == "main.rs") {
        return None;
    }
    let top = parts[0].trim_end_matches(".rs").to_owned();
    let depth = if *file == "mod.rs" {
        parts.len() - 1
    } else {
        parts.len()
    };
    Some((top, depth))
}

/// Every top-level module the tokens of one file name outside their own: `crate::x`,
/// `crate::{x, y::z}`, and `super::` chains that reach the crate root. `depth` is the module
/// depth of the tokens (inline `mod name { }` blocks add one).
fn used_modules(tokens: TokenStream, depth: usize, out: &mut BTreeSet<String>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Ident(id) if id == "crate" && path_sep(&tokens, i + 1) => {
                match tokens.get(i + 3) {
                    Some(TokenTree::Ident(next)) => {
                        out.insert(next.to_string());
                    }
                    Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                        group_heads(g.stream(), out);
                    }
                    _ => {}
                }
                i += 3;
                continue;
            }
            TokenTree::Ident(id) if id == "super" && !after_path_sep(&tokens, i) => {
                let mut supers = 0;
                let mut j = i;
                while matches!(&tokens.get(j), Some(TokenTree::Ident(s)) if s == "super")
                    && path_sep(&tokens, j + 1)
                {
                    supers += 1;
                    j += 3;
                }
                if supers >= depth {
                    match tokens.get(j) {
                        Some(TokenTree::Ident(next)) => {
                            out.insert(next.to_string());
                        }
                        Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                            group_heads(g.stream(), out);
                        }
                        _ => {}
                    }
                }
                i = j.max(i + 1);
                continue;
            }
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(_)), Some(TokenTree::Group(g))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                    && g.delimiter() == Delimiter::Brace
                {
                    used_modules(g.stream(), depth + 1, out);
                    i += 3;
                    continue;
                }
            }
            TokenTree::Group(g) => used_modules(g.stream(), depth, out),
            _ => {}
        }
        i += 1;
    }
}

/// Whether `tokens[i..]` starts with `::`.
fn path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b))) if a.as_char() == ':' && b.as_char() == ':'
    )
}

/// Whether the token at `i` follows a `::` (so it is not the start of a path).
fn after_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2 && path_sep(tokens, i - 2)
}

/// The first identifier of each comma-separated item of a `use` group: `{a, b::c}` names
/// `a` and `b`.
fn group_heads(stream: TokenStream, out: &mut BTreeSet<String>) {
    let mut at_start = true;
    for token in stream {
        match token {
            TokenTree::Ident(id) if at_start => {
                if id != "self" {
                    out.insert(id.to_string());
                }
                at_start = false;
            }
            TokenTree::Punct(p) if p.as_char() == ',' => at_start = true,
            _ => at_start = false,
        }
    }
}

/// Checks `files` (paths relative to `src/`, with their text) against `layers`.
fn check(layers: &[&[&str]], files: &[(String, String)]) -> Result<Vec<Violation>, String> {
    let mut found = BTreeSet::new();
    let mut violations = BTreeSet::new();
    for (path, text) in files {
        let Some((from, depth)) = module_of(path) else {
            continue;
        };
        found.insert(from.clone());
        let tokens: TokenStream = text
            .parse()
            .map_err(|e| format!("{path} does not tokenize: {e}"))?;
        let mut used = BTreeSet::new();
        used_modules(tokens, depth, &mut used);
        used.remove(&from);
        for to in used {
            match (layer_of(layers, &from), layer_of(layers, &to)) {
                (Some(a), Some(b)) if b > a => {}
                (Some(_), Some(_)) => {
                    violations.insert(Violation::NotDownward {
                        file: path.clone(),
                        from: from.clone(),
                        to,
                    });
                }
                (_, None) => {
                    violations.insert(Violation::Undeclared { module: to });
                }
                (None, Some(_)) => {}
            }
        }
    }
    for module in &found {
        if layer_of(layers, module).is_none() {
            violations.insert(Violation::Undeclared {
                module: module.clone(),
            });
        }
    }
    for module in layers.iter().flat_map(|row| row.iter()) {
        if !found.contains(*module) {
            violations.insert(Violation::Missing {
                module: (*module).to_owned(),
            });
        }
    }
    Ok(violations.into_iter().collect())
}

/// Every `.rs` file under `dir`, as (path relative to `root`, text).
fn sources(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let rel = path.strip_prefix(root).unwrap().to_string_lossy();
            out.push((rel.replace('\\', "/"), text));
        }
    }
}

#[test]
fn the_product_crate_uses_only_the_layers_below_each_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let violations = check(LAYERS, &files).unwrap();
    assert!(
        violations.is_empty(),
        "the layer order (tests/layers.rs LAYERS, docs/architecture.md) is broken:\n{violations:#?}"
    );
}

// The checker itself, on tiny crates.

const TINY: &[&[&str]] = &[&["high"], &["mid", "side"], &["low"]];

fn tiny(files: &[(&str, &str)]) -> Vec<Violation> {
    let mut all: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    for module in ["high.rs", "mid/mod.rs", "side.rs", "low.rs"] {
        if !all.iter().any(|(p, _)| p == module) {
            all.push((module.to_owned(), String::new()));
        }
    }
    check(TINY, &all).unwrap()
}

fn upward(file: &str, from: &str, to: &str) -> Violation {
    Violation::NotDownward {
        file: file.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
    }
}

#[test]
fn checker_accepts_downward_uses() {
    assert_eq!(
        tiny(&[
            (
                "high.rs",
                "use crate::mid::Thing; fn f() { crate::low::g() }"
            ),
            ("mid/mod.rs", "pub mod part; use crate::low;"),
            ("mid/part.rs", "use super::Thing; use crate::mid::other;"),
        ]),
        vec![]
    );
}

#[test]
fn checker_refuses_an_upward_use() {
    assert_eq!(
        tiny(&[("low.rs", "use crate::high::Thing;")]),
        vec![upward("low.rs", "low", "high")]
    );
}

#[test]
fn checker_refuses_a_use_within_the_same_layer() {
    assert_eq!(
        tiny(&[("mid/part.rs", "fn f() -> crate::side::T { todo!() }")]),
        vec![upward("mid/part.rs", "mid", "side")]
    );
}

#[test]
fn checker_finds_uses_in_groups_macros_and_inline_modules() {
    assert_eq!(
        tiny(&[
            ("low.rs", "use crate::{self as me, mid::X, side};"),
            (
                "mid/part.rs",
                "fn f() { tracing::info!(x = %crate::high::name()); }",
            ),
        ]),
        vec![
            upward("low.rs", "low", "mid"),
            upward("low.rs", "low", "side"),
            upward("mid/part.rs", "mid", "high"),
        ]
    );
}

#[test]
fn checker_follows_super_out_of_a_top_level_module() {
    assert_eq!(
        tiny(&[
            (
                "mid/part.rs",
                "#[cfg(test)] mod tests { use super::super::super::high; }"
            ),
            (
                "low.rs",
                "mod inner { use super::super::side::X; use super::y; }"
            ),
        ]),
        vec![
            upward("low.rs", "low", "side"),
            upward("mid/part.rs", "mid", "high"),
        ]
    );
}

#[test]
fn checker_ignores_comments_and_strings() {
    assert_eq!(
        tiny(&[(
            "low.rs",
            "//! Used by [`crate::high`].\n// crate::high\nconst S: &str = \"crate::high\";"
        )]),
        vec![]
    );
}

#[test]
fn checker_refuses_undeclared_and_missing_modules() {
    let files = vec![
        ("high.rs".to_owned(), "use crate::ghost::X;".to_owned()),
        ("stray.rs".to_owned(), String::new()),
        ("lib.rs".to_owned(), "pub mod high;".to_owned()),
    ];
    assert_eq!(
        check(&[&["high"], &["low"]], &files).unwrap(),
        vec![
            Violation::Undeclared {
                module: "ghost".to_owned()
            },
            Violation::Undeclared {
                module: "stray".to_owned()
            },
            Violation::Missing {
                module: "low".to_owned()
            },
        ]
    );
}
