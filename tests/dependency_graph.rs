//! The layout's promises, checked on the real dependency graph (`cargo tree --locked`):
//! the main demo builds no AWS SDK, libssh2 or clap; the SSH backend builds none of the
//! engines' heavy crates; the core stays lean; and no AWS SDK crate depends on the HTTP
//! stack, whose features the test build changes (so CI and the wheel compile the SDK once).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// The package names in `cargo tree ARGS` (normal and build edges, every target platform).
fn packages(args: &[&str]) -> BTreeSet<String> {
    versioned(args).into_iter().map(|(name, _)| name).collect()
}

/// The packages in `cargo tree ARGS`, as (name, version without the `v`).
fn versioned(args: &[&str]) -> BTreeSet<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(root)
        .args(["tree", "--locked", "--prefix", "none", "-e", "normal,build"])
        .args(["--target", "all", "--format", "{p}"])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?.to_owned();
            let version = words.next()?.trim_start_matches('v').to_owned();
            Some((name, version))
        })
        .collect()
}

/// The members of `found` that `forbidden` names, or that start with a `prefix*` entry.
fn present(found: &BTreeSet<String>, forbidden: &[&str]) -> Vec<String> {
    found
        .iter()
        .filter(|name| {
            forbidden.iter().any(|f| match f.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == f,
            })
        })
        .cloned()
        .collect()
}

/// The engines' heavy crates (HTTP, archives, signing, package metadata, schemas, the CLI),
/// which neither the core nor the SSH backend may build.
const ENGINE_CRATES: &[&str] = &[
    "reqwest",
    "zip",
    "tar",
    "bzip2",
    "xz2",
    "zstd",
    "minisign",
    "python-pkginfo",
    "schemars",
    "clap",
];

#[test]
fn the_main_demo_builds_no_aws_sdk_libssh2_or_clap() {
    let graph = packages(&["-p", "hgauto"]);
    assert!(
        graph.contains("hgauto-release") && graph.contains("hgauto-pipeline"),
        "{graph:?}"
    );
    let heavy = present(
        &graph,
        &["aws-*", "ssh2", "libssh2-sys", "clap", "clap_builder"],
    );
    assert!(
        heavy.is_empty(),
        "the facade's default features build {heavy:?}"
    );
}

#[test]
fn the_ssh_backend_builds_none_of_the_engines_crates() {
    let graph = packages(&["-p", "hgauto-ssh"]);
    assert!(graph.contains("ssh2"), "{graph:?}");
    let heavy = present(&graph, ENGINE_CRATES);
    assert!(heavy.is_empty(), "hgauto-ssh builds {heavy:?}");
}

#[test]
fn the_core_depends_on_no_http_client_archive_or_backend() {
    // flate2 is allowed: the backends' tree sync sends a gzip stream.
    let graph = packages(&["-p", "hgauto-core"]);
    let backends = ["hyper", "ssh2", "aws-*"];
    let heavy = present(&graph, &[ENGINE_CRATES, &backends].concat());
    assert!(heavy.is_empty(), "hgauto-core builds {heavy:?}");
}

#[test]
fn no_aws_sdk_crate_depends_on_the_http_stack() {
    // `-i hyper@V`: every package with a path to that hyper. Only hgauto-aws's client may.
    let graph = versioned(&["-p", "hgauto-aws"]);
    let stack: Vec<String> = graph
        .iter()
        .filter(|(name, _)| ["hyper", "hyper-util", "rustls", "h2"].contains(&name.as_str()))
        .map(|(name, version)| format!("{name}@{version}"))
        .collect();
    assert!(stack.iter().any(|s| s.starts_with("hyper@")), "{graph:?}");
    for stack in &stack {
        let dependents = packages(&["-p", "hgauto-aws", "-i", stack]);
        assert!(dependents.contains("hgauto-aws"), "{stack}: {dependents:?}");
        let sdk = present(
            &dependents,
            &[
                "aws-sdk-*",
                "aws-config",
                "aws-smithy-runtime",
                "aws-runtime",
            ],
        );
        assert!(sdk.is_empty(), "{sdk:?} depend on {stack}");
    }
}
