//! The documentation's commands are real: every `portcullis …` command line in a ```sh
//! block of the README, docs/ and the examples' READMEs parses with the CLI's own clap
//! definitions (so a renamed flag or subcommand fails here, not in a reader's terminal).

use std::path::{Path, PathBuf};

use clap::Parser;
use portcullis::cli::Cli;

fn documents() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for dir in ["docs", "examples/spa", "examples/native"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            let mut md: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "md"))
                .collect();
            md.sort();
            files.extend(md);
        }
    }
    files
}

/// The shell command lines of ```sh blocks, continuation lines joined.
fn shell_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && matches!(trimmed, "```sh" | "```bash" | "```shell");
            pending = None;
            continue;
        }
        if !in_sh {
            continue;
        }
        let (start, mut joined) = pending.take().unwrap_or((n + 1, String::new()));
        joined.push_str(trimmed.trim_end_matches('\\'));
        joined.push(' ');
        if trimmed.ends_with('\\') {
            pending = Some((start, joined));
        } else {
            out.push((start, joined.trim().to_owned()));
        }
    }
    out
}

/// A small POSIX-ish word splitter: quotes, no expansion. A `#` starting a word begins
/// a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    word.push(q);
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// The `portcullis` invocation in a command line, if any (also after a pipe, or as
/// `cargo run [--release] --`).
fn invocation(line: &str) -> Option<Vec<String>> {
    let segment = line.split(" | ").find(|s| {
        let s = s.trim_start();
        s.starts_with("portcullis ") || s.starts_with("cargo run ")
    })?;
    let words = words(segment);
    if words.iter().any(|w| w == "--example" || w == "--bench") {
        return None;
    }
    let args = if words.first().is_some_and(|w| w == "portcullis") {
        words[1..].to_vec()
    } else {
        let dashdash = words.iter().position(|w| w == "--")?;
        words[dashdash + 1..].to_vec()
    };
    Some(args)
}

#[test]
fn every_documented_portcullis_command_parses() {
    let mut checked = 0;
    let mut failures = Vec::new();
    for file in documents() {
        let text = std::fs::read_to_string(&file).expect("read a document");
        for (line_no, line) in shell_lines(&text) {
            let Some(args) = invocation(&line) else {
                continue;
            };
            checked += 1;
            let argv = std::iter::once("portcullis".to_owned()).chain(args);
            if let Err(e) = Cli::try_parse_from(argv) {
                failures.push(format!(
                    "{}:{line_no}: `{line}`\n{}",
                    file.display(),
                    e.render()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 10, "only {checked} documented commands found");
}

#[test]
fn the_word_splitter_handles_quotes_and_comments() {
    assert_eq!(
        words(r#"portcullis users create --name "Alice Example" --email a@b.c # note"#),
        [
            "portcullis",
            "users",
            "create",
            "--name",
            "Alice Example",
            "--email",
            "a@b.c"
        ]
    );
    assert_eq!(
        invocation("printf '%s\\n' \"$P\" | portcullis users create --username alice --json"),
        Some(
            ["users", "create", "--username", "alice", "--json"]
                .map(String::from)
                .to_vec()
        )
    );
    assert_eq!(
        invocation("cargo run --release -- serve --demo"),
        Some(vec!["serve".to_owned(), "--demo".to_owned()])
    );
}
