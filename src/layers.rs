//! The architecture's rules, checked on the sources (docs/DESIGN.md § Layers):
//! each top-level module uses only the modules below it, and inside a folder no two
//! files use each other, even through a third. Each file is read whole, less its
//! comments, literals and `#[cfg(test)]` items: a use far down a file counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom; a module may use the modules of later rows only.
const LAYERS: &[&[&str]] = &[
    &["commands"],
    &["cli", "pipeline"],
    &["calls"],
    &["services"],
    &["context"],
    &["shell", "plugins", "ui"],
    &["openstack", "system"],
    &["config"],
    &["ini", "state"],
    &["env_vars", "timing"],
];

fn rank(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|row| row.contains(&module))
        .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
}

/// A source file's code: comments gone, every string and char literal left as `""`
/// (a `{` or `crate::` inside one is not code), lifetimes kept.
fn strip_comments_and_literals(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let ident = |i: usize| i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_');
    let peek = |j: usize| c.get(j).copied().unwrap_or('\0');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        if peek(i) == '/' && peek(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if peek(i) == '/' && peek(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if peek(i) == '/' && peek(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if peek(i) == '*' && peek(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if peek(i) == 'r'
            && (peek(i + 1) == '"' || peek(i + 1) == '#')
            && (!ident(i) || (c[i - 1] == 'b' && !ident(i - 1)))
        {
            // r"...", r#"..."#, br"...": ends at a quote followed by as many #.
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push('r');
                i += 1;
                continue;
            }
            i += hashes + 2;
            let closes = |j: usize| c[j] == '"' && (1..=hashes).all(|k| c.get(j + k) == Some(&'#'));
            while i < c.len() && !closes(i) {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if peek(i) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if peek(i) == '\'' && (peek(i + 1) == '\\' || peek(i + 2) == '\'') {
            // A char literal ('x', '\n', '\'', '\u{1F600}'); a lifetime has no closing quote.
            i += if peek(i + 1) == '\\' { 3 } else { 2 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `code` without its `#[cfg(test)]` items (a test module, a test-only fn or impl).
fn without_test_items(mut code: String) -> String {
    const MARK: &str = "#[cfg(test)]";
    while let Some(start) = code.find(MARK) {
        let mut depth = 0_i32;
        let mut end = code.len();
        for (i, ch) in code[start + MARK.len()..].char_indices() {
            let i = start + MARK.len() + i;
            match ch {
                '{' | '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        code.replace_range(start..end, "");
    }
    code
}

/// The names a path prefix reaches in `code`: `prefix::name` and every first name
/// of a group `prefix::{a, b::c, self}`.
fn names_after(code: &str, prefix: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let preceded = code[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if preceded {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        if !rest.starts_with('{') {
            names.insert(word(rest));
            continue;
        }
        let mut depth = 0;
        let mut first = true;
        for (k, ch) in rest.char_indices() {
            match ch {
                '{' => {
                    depth += 1;
                    first = depth == 1;
                }
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                ',' if depth == 1 => first = true,
                c if first && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                    names.insert(word(&rest[k..]));
                    first = false;
                }
                _ => {}
            }
        }
    }
    names.remove("");
    names
}

/// Every `.rs` file under `src` but the test-only ones (`#[cfg(test)] mod name;`),
/// with its code (no comments, literals or tests).
fn sources() -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut test_only = BTreeSet::new();
    let mut todo = vec![src.clone()];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            for entry in fs_err::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            let code = strip_comments_and_literals(&fs_err::read_to_string(&path).unwrap());
            let dir = path.parent().unwrap();
            let words: Vec<&str> = code.split_whitespace().collect();
            for w in words.windows(3) {
                if w[0] == "#[cfg(test)]" && w[1] == "mod" && w[2].ends_with(';') {
                    test_only.insert(dir.join(format!("{}.rs", w[2].trim_end_matches(';'))));
                }
            }
            files.push((path, code));
        }
    }
    let mut out: Vec<(PathBuf, String)> = files
        .into_iter()
        .filter(|(path, _)| !test_only.contains(path))
        .map(|(path, code)| {
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            (rel, without_test_items(code))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let mut offences = Vec::new();
    let mut seen = 0;
    for (rel, code) in sources() {
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if ["lib", "main", "layers"].contains(&top) {
            continue;
        }
        seen += 1;
        let mine = rank(top);
        for used in names_after(&code, "crate::") {
            if used != top && rank(&used) <= mine {
                offences.push(format!("{} uses crate::{used}", rel.display()));
            }
        }
    }
    assert!(seen > 40, "the scan found the sources ({seen} files)");
    assert!(
        offences.is_empty(),
        "layering broken:\n{}",
        offences.join("\n")
    );
}

/// The files of one folder each file uses (`crate::folder::file`, `super::file`);
/// `mod.rs`, which declares them all, is the folder's root and left out. (`super::`
/// inside an inline module would name the file itself, not the folder: there is no
/// such module outside tests.)
fn folder_graphs() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let files = sources();
    let mut graphs: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    let stem = |p: &Path| p.file_stem().unwrap().to_string_lossy().into_owned();
    for (rel, code) in &files {
        let Some(dir) = rel.parent().filter(|d| !d.as_os_str().is_empty()) else {
            continue;
        };
        if stem(rel) == "mod" {
            continue;
        }
        let siblings: BTreeSet<String> = files
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir) && stem(p) != "mod")
            .map(|(p, _)| stem(p))
            .collect();
        let folder = dir.to_string_lossy().replace('/', "::");
        let mut used = names_after(code, &format!("crate::{folder}::"));
        used.extend(names_after(code, "super::"));
        used.retain(|u| siblings.contains(u) && *u != stem(rel));
        graphs.entry(folder).or_default().insert(stem(rel), used);
    }
    graphs
}

fn walk(
    graph: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
    visited: &mut BTreeSet<String>,
) -> bool {
    let here = path.last().unwrap().clone();
    for next in graph.get(&here).into_iter().flatten() {
        if next == start {
            return true;
        }
        if visited.insert(next.clone()) {
            path.push(next.clone());
            if walk(graph, start, path, visited) {
                return true;
            }
            path.pop();
        }
    }
    false
}

/// One circle through `start`, as the files in order, when there is one.
fn circle_through(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut path = vec![start.to_owned()];
    walk(graph, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_two_files_of_a_folder_use_each_other() {
    let mut circles = BTreeSet::new();
    for (folder, graph) in folder_graphs() {
        for file in graph.keys() {
            if let Some(mut circle) = circle_through(&graph, file) {
                // One line per circle, whichever file it was found from.
                let first = circle.iter().enumerate().min_by_key(|(_, f)| *f).unwrap().0;
                circle.rotate_left(first);
                circle.push(circle[0].clone());
                circles.insert(format!(
                    "src/{}: {}",
                    folder.replace("::", "/"),
                    circle.join(" -> ")
                ));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "files that use each other (move the helper that closes the circle down):\n{}",
        circles.into_iter().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_scan_sees_uses_below_tests_and_in_groups_but_not_in_comments_or_strings() {
    let text = r##"
use crate::system::{process::Cmd, packages};
// crate::pipeline in a comment
const S: &str = "crate::commands";
const R: &str = r#"crate::calls { "#;
fn f<'a>(c: char) -> bool { c == '{' || c == '\'' }
#[cfg(test)]
mod tests { use crate::ui; fn g() { let _ = "}"; } }
fn late() { crate::state::hex(&[]); super::oslo::x(); }
"##;
    let code = without_test_items(strip_comments_and_literals(text));
    assert_eq!(
        names_after(&code, "crate::"),
        ["state".to_owned(), "system".to_owned()].into()
    );
    assert_eq!(
        names_after(&code, "crate::system::"),
        ["packages".to_owned(), "process".to_owned()].into()
    );
    assert_eq!(names_after(&code, "super::"), ["oslo".to_owned()].into());
}

#[test]
fn services_use_the_runs_registry_not_one_of_their_own() {
    let own: Vec<String> = sources()
        .into_iter()
        .filter(|(rel, _)| rel.starts_with("services") && !rel.ends_with("mod.rs"))
        .filter(|(_, code)| code.contains("Registry::builtin("))
        .map(|(rel, _)| rel.display().to_string())
        .collect();
    assert!(
        own.is_empty(),
        "services make a registry of their own (ask the run: ServiceCtx::catalog): {own:?}"
    );
}
