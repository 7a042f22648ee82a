//! `docs/functions.md` is generated from the documentation on each function's struct
//! (`udfs/src/semantic/*.rs`, `udfs/src/vector/*.rs`). This test fails when the file is out of date; to regenerate it:
//! `SEMSQL_WRITE_DOCS=1 cargo test -p semsql-udfs --test functions_doc`.

use std::path::Path;

/// The `///` block right above `pub struct` in a source file, without the markers.
fn struct_doc(source: &str) -> Option<String> {
    let lines: Vec<&str> = source.lines().collect();
    let at = lines
        .iter()
        .position(|line| line.starts_with("pub struct "))?;
    let mut start = at;
    while start > 0 && (lines[start - 1].starts_with("///") || lines[start - 1].starts_with("#[")) {
        start -= 1;
    }
    let doc: Vec<&str> = lines[start..at]
        .iter()
        .filter(|line| line.starts_with("///"))
        .map(|line| {
            line.trim_start_matches("///")
                .strip_prefix(' ')
                .unwrap_or(line.trim_start_matches("///"))
        })
        .collect();
    (!doc.is_empty()).then(|| doc.join("\n"))
}

fn generate(root: &Path) -> String {
    let mut out = String::from(
        "# SQL functions\n\n\
         Generated from the documentation on each function's struct in `udfs/src/semantic/` and \
         `udfs/src/vector/` (`SEMSQL_WRITE_DOCS=1 cargo test -p semsql-udfs --test functions_doc`); \
         edit it there.\n\
         How the LM functions are planned and batched: [llm.md](llm.md); vectors and indexes: \
         [vectors.md](vectors.md).\n",
    );
    for (folder, title) in [
        ("semantic", "Functions that ask a language model"),
        ("vector", "Vector functions"),
    ] {
        out.push_str(&format!("\n# {title}\n"));
        let mut files: Vec<_> = std::fs::read_dir(root.join("udfs/src").join(folder))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.file_name().unwrap() != "mod.rs")
            .collect();
        files.sort();
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            let Some(doc) = struct_doc(&source) else {
                continue;
            };
            let name = file.file_stem().unwrap().to_string_lossy();
            out.push_str(&format!("\n## {name}\n\n{doc}\n"));
        }
    }
    out
}

#[test]
fn functions_md_matches_the_struct_docs() {
    // The folder at run time (cargo sets it for tests): a test binary reused from a build in
    // another clone of the repository (CI's, in a shared target folder) has that clone's
    // path compiled in.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let root = Path::new(&manifest_dir).parent().unwrap();
    let generated = generate(root);
    let path = root.join("docs/functions.md");
    if std::env::var_os("SEMSQL_WRITE_DOCS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == generated,
        "docs/functions.md is out of date: run SEMSQL_WRITE_DOCS=1 cargo test -p semsql-udfs --test functions_doc"
    );
}
