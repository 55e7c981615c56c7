//! The product crate's top-level modules form layers, and a module uses only modules of the
//! layers below its own: the graph reads downward and has no circles. This test derives the
//! graph from `src/` (every `crate::<module>` path, in code, `use` trees and macro input
//! alike, and `super::` paths that climb out of a top-level module) and checks it against
//! [`LAYERS`], the table `docs/architecture.md` explains.
//!
//! Within and across modules, no two files of `src/` import each other, directly or through
//! others: [`circles`] derives the graph of files (every path a file names, resolved to the
//! file that defines it, re-exports followed) and reports each cycle's files.

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// The module a file of `src/` defines, as its path below the crate root (`status/store.rs`:
/// `status::store`; `status/mod.rs`: `status`; `lib.rs`: the root), or `None` for `main.rs`
/// (the binary, another crate).
fn module_path(path: &str) -> Option<Vec<String>> {
    let stem = path.strip_suffix(".rs")?;
    if stem == "main" {
        return None;
    }
    let mut parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    Some(parts)
}

/// What one file names: the paths it depends on, and the names it re-exports (`pub use`),
/// each with the path it stands for. Paths are absolute (below the crate root).
#[derive(Default)]
struct Names {
    uses: Vec<Vec<String>>,
    exports: BTreeMap<String, Vec<String>>,
}

/// The crate-relative path `raw` stands for when named in `module`: `crate::`, `super::`,
/// `self::` and child-module paths; `None` for other crates' paths and local names.
fn absolute(
    raw: &[String],
    module: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let first = raw.first()?;
    match first.as_str() {
        "crate" => Some(raw[1..].to_vec()),
        "self" => Some([module, &raw[1..]].concat()),
        "super" => {
            let supers = raw.iter().take_while(|s| *s == "super").count();
            let base = module.get(..module.len().checked_sub(supers)?)?;
            Some([base, &raw[supers..]].concat())
        }
        _ => {
            let child = [module, &raw[..1]].concat();
            modules.contains(&child).then(|| [module, raw].concat())
        }
    }
}

/// The paths of the use tree at `tokens[i..]` (up to its `;`), each with the name it binds
/// (`*` for a glob), under `prefix`; returns the index after the tree.
fn use_tree(
    tokens: &[TokenTree],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let mut path = prefix.to_vec();
    if path_sep(tokens, i) {
        i += 2;
    }
    loop {
        match tokens.get(i) {
            Some(TokenTree::Ident(id)) if path_sep(tokens, i + 1) => {
                path.push(id.to_string());
                i += 3;
            }
            Some(TokenTree::Ident(id)) => {
                let segment = id.to_string();
                let (path, name) = if segment == "self" {
                    let name = path.last().cloned().unwrap_or_default();
                    (path, name)
                } else {
                    path.push(segment.clone());
                    (path, segment)
                };
                let name = match (tokens.get(i + 1), tokens.get(i + 2)) {
                    (Some(TokenTree::Ident(as_)), Some(TokenTree::Ident(alias))) if as_ == "as" => {
                        i += 2;
                        alias.to_string()
                    }
                    _ => name,
                };
                out.push((path, name));
                return i + 1;
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let mut j = 0;
                while j < inner.len() {
                    j = use_tree(&inner, j, &path, out);
                    while j < inner.len()
                        && !matches!(&inner[j], TokenTree::Punct(p) if p.as_char() == ',')
                    {
                        j += 1;
                    }
                    j += 1;
                }
                return i + 1;
            }
            Some(TokenTree::Punct(p)) if p.as_char() == '*' => {
                out.push((path, "*".to_owned()));
                return i + 1;
            }
            _ => return i + 1,
        }
    }
}

/// Collects what the tokens of `module` name into `names`; `top` tells whether they are the
/// file's own items (where a `pub use` re-exports) rather than an inline module's or a body's.
/// Items under `#[cfg(test)]` are left out: a file's tests may use the fixtures built on it.
fn names_of(
    tokens: TokenStream,
    module: &[String],
    top: bool,
    modules: &BTreeSet<Vec<String>>,
    names: &mut Names,
) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            TokenTree::Punct(p) if p.as_char() == '#' && cfg_test(tokens.get(i + 1)) => {
                i = item_end(&tokens, i + 2);
                continue;
            }
            TokenTree::Ident(id) if id == "use" => {
                let public = i >= 1
                    && match &tokens[i - 1] {
                        TokenTree::Ident(p) => p == "pub",
                        TokenTree::Group(g) => {
                            g.delimiter() == Delimiter::Parenthesis
                                && i >= 2
                                && matches!(&tokens[i - 2], TokenTree::Ident(p) if p == "pub")
                        }
                        _ => false,
                    };
                let mut tree = Vec::new();
                i = use_tree(&tokens, i + 1, &[], &mut tree);
                for (raw, name) in tree {
                    let Some(path) = absolute(&raw, module, modules) else {
                        continue;
                    };
                    if public && top && name != "*" {
                        names.exports.insert(name, path);
                    } else {
                        names.uses.push(path);
                    }
                }
                continue;
            }
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(g))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                    && g.delimiter() == Delimiter::Brace
                {
                    let inner = [module, &[name.to_string()]].concat();
                    names_of(g.stream(), &inner, false, modules, names);
                    i += 3;
                    continue;
                }
            }
            TokenTree::Ident(_) if path_sep(&tokens, i + 1) && !after_path_sep(&tokens, i) => {
                let mut raw = Vec::new();
                let mut j = i;
                while let Some(TokenTree::Ident(segment)) = tokens.get(j) {
                    raw.push(segment.to_string());
                    if !path_sep(&tokens, j + 1) {
                        break;
                    }
                    j += 3;
                }
                if let Some(path) = absolute(&raw, module, modules) {
                    names.uses.push(path);
                }
                i = j.max(i + 1);
                continue;
            }
            TokenTree::Group(g) => names_of(g.stream(), module, false, modules, names),
            _ => {}
        }
        i += 1;
    }
}

/// Whether `token` is the attribute group `[cfg(test)]`.
fn cfg_test(token: Option<&TokenTree>) -> bool {
    matches!(token, Some(TokenTree::Group(g))
        if g.delimiter() == Delimiter::Bracket
            && g.stream().to_string().replace(' ', "") == "cfg(test)")
}

/// The index after the item starting at `tokens[i]`: past its first `;` or braced body.
fn item_end(tokens: &[TokenTree], mut i: usize) -> usize {
    while let Some(token) = tokens.get(i) {
        i += 1;
        match token {
            TokenTree::Punct(p) if p.as_char() == ';' => break,
            TokenTree::Group(g) if g.delimiter() == Delimiter::Brace => break,
            _ => {}
        }
    }
    i
}

/// The file that defines what `path` names: the file of its longest module prefix, through
/// that file's re-exports.
fn defining_file<'a>(
    path: &[String],
    files: &'a BTreeMap<Vec<String>, String>,
    exports: &BTreeMap<&str, &BTreeMap<String, Vec<String>>>,
) -> Option<&'a String> {
    let mut path = path.to_vec();
    // A bound on re-export chains, so a re-export of itself cannot loop.
    for _ in 0..16 {
        let at = (0..=path.len())
            .rev()
            .find(|n| files.contains_key(&path[..*n]))?;
        let file = &files[&path[..at]];
        match path
            .get(at)
            .and_then(|item| exports.get(file.as_str())?.get(item))
        {
            Some(target) if *target != path[..=at] => {
                path = [target.as_slice(), &path[at + 1..]].concat();
            }
            _ => return Some(file),
        }
    }
    None
}

/// Which files of `src/` each file (path relative to `src/`, with its text) uses.
fn file_graph(files: &[(String, String)]) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let by_module: BTreeMap<Vec<String>, String> = files
        .iter()
        .filter_map(|(path, _)| Some((module_path(path)?, path.clone())))
        .collect();
    let modules: BTreeSet<Vec<String>> = by_module.keys().cloned().collect();
    let mut names = BTreeMap::new();
    for (path, text) in files {
        let Some(module) = module_path(path) else {
            continue;
        };
        let tokens: TokenStream = text
            .parse()
            .map_err(|e| format!("{path} does not tokenize: {e}"))?;
        let mut found = Names::default();
        names_of(tokens, &module, true, &modules, &mut found);
        names.insert(path.as_str(), found);
    }
    let exports = names.iter().map(|(f, n)| (*f, &n.exports)).collect();
    let mut graph = BTreeMap::new();
    for (file, found) in &names {
        let used: BTreeSet<String> = found
            .uses
            .iter()
            .filter_map(|path| defining_file(path, &by_module, &exports))
            .filter(|to| to.as_str() != *file)
            .cloned()
            .collect();
        graph.insert((*file).to_owned(), used);
    }
    Ok(graph)
}

/// The cycles of `graph`: for each file on one, the shortest cycle through it, starting at
/// its first file (in sort order); each cycle once, sorted.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // Breadth-first from `start`'s uses, back to `start`: the shortest cycle through it.
        let mut parent: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue: VecDeque<&String> = VecDeque::from([start]);
        let mut closed = None;
        while let Some(at) = queue.pop_front() {
            for next in graph.get(at).into_iter().flatten() {
                if next == start {
                    closed = Some(at);
                    break;
                }
                if !parent.contains_key(next) {
                    parent.insert(next, at);
                    queue.push_back(next);
                }
            }
            if closed.is_some() {
                break;
            }
        }
        let Some(mut at) = closed else {
            continue;
        };
        let mut cycle = vec![at.clone()];
        while at != start {
            at = parent[at];
            cycle.push(at.clone());
        }
        cycle.reverse();
        let first = (0..cycle.len()).min_by_key(|i| &cycle[*i]).unwrap_or(0);
        cycle.rotate_left(first);
        found.insert(cycle);
    }
    found.into_iter().collect()
}

/// The cycles among `files` (paths relative to `src/`, with their text).
fn circles(files: &[(String, String)]) -> Result<Vec<Vec<String>>, String> {
    Ok(cycles(&file_graph(files)?))
}

#[test]
fn no_two_files_of_the_product_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    let found: String = circles(&files)
        .unwrap()
        .iter()
        .map(|c| format!("  {} -> {}\n", c.join(" -> "), c[0]))
        .collect();
    assert!(
        found.is_empty(),
        "files of src/ that import each other (move what they share into the module it \
         belongs to):\n{found}"
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

// The cycle finder itself, on plain graphs and tiny crates.

fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges {
        graph
            .entry((*from).to_owned())
            .or_default()
            .insert((*to).to_owned());
        graph.entry((*to).to_owned()).or_default();
    }
    graph
}

fn cycle(files: &[&str]) -> Vec<String> {
    files.iter().map(|f| (*f).to_owned()).collect()
}

fn files(files: &[(&str, &str)]) -> Vec<Vec<String>> {
    let files: Vec<(String, String)> = files
        .iter()
        .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
        .collect();
    circles(&files).unwrap()
}

#[test]
fn cycles_of_a_graph_without_one_are_none() {
    let diamond = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]);
    assert_eq!(cycles(&diamond), Vec::<Vec<String>>::new());
}

#[test]
fn cycles_are_reported_once_from_their_first_file() {
    let graph = graph(&[("c", "a"), ("a", "b"), ("b", "c"), ("b", "d"), ("d", "e")]);
    assert_eq!(cycles(&graph), vec![cycle(&["a", "b", "c"])]);
}

#[test]
fn cycles_name_every_file_that_is_on_one() {
    // One tangle of two cycles through `b`, and a pair apart.
    let graph = graph(&[
        ("a", "b"),
        ("b", "a"),
        ("b", "c"),
        ("c", "b"),
        ("x", "y"),
        ("y", "x"),
    ]);
    assert_eq!(
        cycles(&graph),
        vec![cycle(&["a", "b"]), cycle(&["b", "c"]), cycle(&["x", "y"])]
    );
}

#[test]
fn cycles_are_the_shortest_through_each_file() {
    let graph = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("b", "a")]);
    assert_eq!(
        cycles(&graph),
        vec![cycle(&["a", "b"]), cycle(&["a", "b", "c"])]
    );
}

#[test]
fn circles_finds_a_pair_within_a_folder() {
    assert_eq!(
        files(&[
            ("m/mod.rs", "pub mod x; pub mod y;"),
            ("m/x.rs", "use super::y::T; pub struct U;"),
            (
                "m/y.rs",
                "pub struct T; fn f() -> crate::m::x::U { todo!() }"
            ),
        ]),
        vec![cycle(&["m/x.rs", "m/y.rs"])]
    );
}

#[test]
fn circles_finds_a_cycle_across_folders_in_groups_and_macros() {
    assert_eq!(
        files(&[
            ("a/mod.rs", "pub mod one;"),
            ("a/one.rs", "use crate::{b::two::{self, T}, d::D};"),
            ("d.rs", "pub struct D;"),
            ("b/mod.rs", "pub mod two;"),
            ("b/two.rs", "fn f() { tracing::info!(x = %crate::c::g()); }"),
            ("c.rs", "use std::fmt; fn g() { super::a::one::h() }"),
        ]),
        vec![cycle(&["a/one.rs", "b/two.rs", "c.rs"])]
    );
}

#[test]
fn circles_follow_re_exports_to_the_file_that_defines_the_item() {
    // `m/mod.rs` re-exports `x`'s and `y`'s items, and `x` uses a helper of `mod.rs`: no
    // cycle with the facade; but `x` and `y` reach each other through it.
    assert_eq!(
        files(&[
            (
                "m/mod.rs",
                "pub mod x; pub mod y; pub use x::X; pub use self::y::{Y as Why}; pub fn helper() {}"
            ),
            (
                "m/x.rs",
                "use super::helper; fn f() -> super::Why { todo!() }"
            ),
            ("m/y.rs", "pub struct Y; fn g() -> crate::m::X { todo!() }"),
            ("n.rs", "use crate::m::{X, Why};"),
        ]),
        vec![cycle(&["m/x.rs", "m/y.rs"])]
    );
}

#[test]
fn circles_count_a_module_file_using_its_child_in_code() {
    assert_eq!(
        files(&[
            (
                "m/mod.rs",
                "pub mod x; pub fn run() { x::go() } pub struct Config;"
            ),
            ("m/x.rs", "pub fn go() { let _ = super::Config; }"),
        ]),
        vec![cycle(&["m/mod.rs", "m/x.rs"])]
    );
}

#[test]
fn circles_leave_out_tests_comments_strings_and_other_crates() {
    assert_eq!(
        files(&[
            (
                "m/mod.rs",
                "pub mod x; pub mod y; #[cfg(test)] mod fixtures;"
            ),
            (
                "m/x.rs",
                "//! See [`super::y`].\nconst S: &str = \"crate::m::y\"; use y::Z; use kube::x;\n\
                 #[cfg(test)] mod tests { use super::*; use crate::m::y::T; }\n\
                 #[cfg(test)] fn helper() -> crate::m::y::T { todo!() }"
            ),
            ("m/y.rs", "pub struct T; use super::x::X;"),
            ("m/fixtures.rs", "use super::y::T;"),
        ]),
        Vec::<Vec<String>>::new()
    );
}

#[test]
fn circles_resolve_super_from_inline_modules_and_nested_folders() {
    assert_eq!(
        files(&[
            ("m/mod.rs", "pub mod deep;"),
            (
                "m/deep/mod.rs",
                "pub mod leaf; mod inner { use super::super::other::T; }"
            ),
            ("m/deep/leaf.rs", "pub struct L;"),
            ("m/other.rs", "use super::deep::leaf::L;"),
        ]),
        Vec::<Vec<String>>::new()
    );
    assert_eq!(
        files(&[
            ("m/mod.rs", "pub mod deep; pub mod other;"),
            ("m/deep/mod.rs", "pub mod leaf;"),
            (
                "m/deep/leaf.rs",
                "mod inner { use super::super::super::other::T; }"
            ),
            ("m/other.rs", "use super::deep::leaf::L;"),
        ]),
        vec![cycle(&["m/deep/leaf.rs", "m/other.rs"])]
    );
}
