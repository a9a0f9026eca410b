//! The docs name every flag of `dynamq serve`, and no flag it does not have: the README's
//! flag table (under "`dynamq serve` flags") and the flag list in the comment at the top of
//! `dynamq.example.toml` are compared with the long flags of `dynamq serve --help`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// Flags every clap command has; the docs need not list them.
const IMPLICIT: &[&str] = &["--help", "--version"];

/// The `--long-flag` tokens in `text`, in order of appearance.
fn long_flags(text: &str) -> Vec<String> {
    let mut flags = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("--") {
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
            .unwrap_or(after.len());
        // `--` must start a word, and the name must start with a letter.
        let starts_word = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '-'));
        if starts_word && after.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.push(format!("--{}", &after[..len]));
        }
        rest = &after[len..];
    }
    flags
}

/// The long flags clap prints for `dynamq serve`: on each option line (it starts with `-`),
/// the flag being described, not the ones its description mentions.
fn help_flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| {
            l.split_whitespace()
                .map(|w| w.trim_end_matches(','))
                .find(|w| w.starts_with("--"))
                .and_then(|w| long_flags(w).into_iter().next())
        })
        .filter(|f| !IMPLICIT.contains(&f.as_str()))
        .collect()
}

/// The flags in the first column of the table under the "`dynamq serve` flags" line. A row
/// may name two (`--tls-cert FILE`, `--tls-key FILE`).
fn readme_flags(readme: &str) -> BTreeSet<String> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !l.contains("`dynamq serve` flags"));
    assert!(
        lines.next().is_some(),
        "README.md has no \"`dynamq serve` flags\" heading"
    );
    let rows: Vec<&str> = lines
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        // The header row and the |---| separator.
        .skip(2)
        .collect();
    assert!(!rows.is_empty(), "no table under \"`dynamq serve` flags\"");
    rows.iter()
        .flat_map(|row| long_flags(row.split('|').nth(1).unwrap_or("")))
        .collect()
}

/// The flags named in the comment block at the top of the example config.
fn example_flags(toml: &str) -> BTreeSet<String> {
    let header: Vec<&str> = toml.lines().take_while(|l| l.starts_with('#')).collect();
    long_flags(&header.join("\n")).into_iter().collect()
}

/// What `documented` lacks and what it has that is not a flag, as lines of a failure message.
fn differences(doc: &str, documented: &BTreeSet<String>, flags: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for f in flags.difference(documented) {
        out.push(format!("{doc} does not list {f}"));
    }
    for f in documented.difference(flags) {
        out.push(format!(
            "{doc} lists {f}, which `dynamq serve` does not have"
        ));
    }
    out
}

fn read(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn the_docs_list_every_serve_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_dynamq"))
        .args(["serve", "--help"])
        .output()
        .expect("run dynamq serve --help");
    assert!(out.status.success(), "dynamq serve --help failed: {out:?}");
    let help = String::from_utf8_lossy(&out.stdout);
    let flags = help_flags(&help);
    // Guards the parser: these flags exist, so an empty or partial set means it broke.
    for f in ["--config", "--tcp", "--tls-key", "--hibernate-after-ms"] {
        assert!(flags.contains(f), "{f} not found in:\n{help}");
    }

    let mut problems = differences(
        "README.md's flag table",
        &readme_flags(&read("README.md")),
        &flags,
    );
    problems.extend(differences(
        "dynamq.example.toml's flag list",
        &example_flags(&read("dynamq.example.toml")),
        &flags,
    ));
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn parsers_find_flags_where_the_docs_put_them() {
    let help = "Options:\n      --config <CONFIG>\n          TOML file\n      \
                --tls <ADDR>\n          needs --tls-cert and --tls-key\n  -h, --help\n";
    let want: BTreeSet<String> = ["--config", "--tls"].map(String::from).into();
    assert_eq!(help_flags(help), want);

    let readme = "intro --not-a-row\n\n`dynamq serve` flags (they override):\n\n\
                  | flag | meaning | default |\n|---|---|---|\n\
                  | `--tcp ADDR` | see --ws | `0.0.0.0:1883` |\n\
                  | `--tls-cert FILE`, `--tls-key FILE` | PEM | none |\n\n| `--after` | x | y |\n";
    let want: BTreeSet<String> = ["--tcp", "--tls-cert", "--tls-key"]
        .map(String::from)
        .into();
    assert_eq!(readme_flags(readme), want);

    let toml = "# Flags (--tcp, --data-dir)\n# --log-level too.\n\n# --not-header\nx = 1 # --no\n";
    let want: BTreeSet<String> = ["--tcp", "--data-dir", "--log-level"]
        .map(String::from)
        .into();
    assert_eq!(example_flags(toml), want);

    // Not flags: an em-dash spelled `--` inside a sentence, `a--b`, `---`.
    assert!(long_flags("a -- b, x--y, |---|").is_empty());
}
