//! The `frontdoor-testing` wheel (`pyproject.toml`): built with maturin, installed into a
//! fresh virtualenv, and used from a PATH with no Rust toolchain and no other frontdoor on
//! it, by the Python helper's example test.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Building the wheel compiles the binary (the dev profile, which the suite has mostly built
/// already) and compresses it: longer than one client program may take.
const BUILD_LIMIT: Duration = Duration::from_secs(900);

/// The `==` pins of `tests/clients/python/requirements.txt` for these packages, so that
/// the fresh virtualenv gets what the rest of the suite runs with.
fn pins(names: &[&str]) -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join("tests/clients/python/requirements.txt")).unwrap();
    names
        .iter()
        .map(|name| {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}==")))
                .unwrap_or_else(|| panic!("{name} is not pinned in requirements.txt"))
                .to_owned()
        })
        .collect()
}

/// The directories of PATH that hold none of `cargo`, `rustc`, `rustup` or `frontdoor`.
fn path_without_rust() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .filter(|dir| {
            !["cargo", "rustc", "rustup", "frontdoor"]
                .iter()
                .any(|tool| dir.join(tool).exists())
        })
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// The real interpreter behind the venv's `python` (not a shim that needs its own PATH).
fn base_python() -> PathBuf {
    let out =
        succeed(Command::new(python()).args(["-c", "import sys; print(sys._base_executable)"]));
    PathBuf::from(out.trim())
}

fn the_wheel(dir: &Path) -> PathBuf {
    let wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    assert_eq!(wheels.len(), 1, "{wheels:?}");
    wheels[0].clone()
}

#[test]
#[ignore = "left to scripts/test: builds the wheel with maturin and runs pip and pytest"]
fn the_wheel_brings_the_binary_to_a_fresh_virtualenv_without_rust() {
    let root = tempfile::tempdir().unwrap();
    let wheels = root.path().join("wheels");
    let built = bounded_output_within(
        Command::new(repo().join(".venv/bin/maturin"))
            .args([
                "build",
                "--profile",
                "dev",
                "--strip",
                "--locked",
                "--quiet",
            ])
            .args(["--compatibility", "linux"])
            .arg("--out")
            .arg(&wheels)
            .current_dir(repo()),
        BUILD_LIMIT,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        built.status.success(),
        "maturin failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let wheel = the_wheel(&wheels);
    let name = wheel.file_name().unwrap().to_str().unwrap().to_owned();
    assert!(
        name.starts_with(&format!(
            "frontdoor_testing-{}-py3-none-linux_",
            env!("CARGO_PKG_VERSION")
        )),
        "{name}"
    );
    // What is in it: the binary as a script, the helper, and the pytest entry point.
    let listing = succeed(Command::new(python()).args([
        "-c",
        "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        wheel.to_str().unwrap(),
    ]));
    let version = env!("CARGO_PKG_VERSION");
    for member in [
        format!("frontdoor_testing-{version}.data/scripts/frontdoor"),
        "frontdoor_testing/server.py".to_owned(),
        "frontdoor_testing/pytest_plugin.py".to_owned(),
        format!("frontdoor_testing-{version}.dist-info/entry_points.txt"),
    ] {
        assert!(listing.lines().any(|l| l == member), "{member}:\n{listing}");
    }

    // A fresh virtualenv, used without activating it, from a PATH with no Rust on it.
    let path = path_without_rust();
    let venv = root.path().join("venv");
    let example = root.path().join("example");
    std::fs::create_dir_all(&example).unwrap();
    for file in ["test_two_services.py", "search_app.py"] {
        std::fs::copy(
            repo().join("helpers/python/examples").join(file),
            example.join(file),
        )
        .unwrap();
    }
    let clean = |cmd: &mut Command| -> Command {
        let mut clean = Command::new(cmd.get_program());
        clean.args(cmd.get_args()).env("PATH", &path);
        // Nothing of cargo's, rustup's, frontdoor's or another Python environment's.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if [
                "CARGO",
                "RUST",
                "FRONTDOOR",
                "VIRTUAL_ENV",
                "PYTHONPATH",
                "PYTHONHOME",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            {
                clean.env_remove(&*name);
            }
        }
        clean
    };
    for tool in ["cargo", "rustc", "frontdoor"] {
        let found = bounded_output(&mut clean(
            Command::new("sh").args(["-c", &format!("command -v {tool}")]),
        ));
        assert!(
            !found.status.success(),
            "{tool} is on the test's PATH: {}",
            String::from_utf8_lossy(&found.stdout)
        );
    }
    succeed(&mut clean(Command::new(base_python()).args([
        "-m",
        "venv",
        venv.to_str().unwrap(),
    ])));
    let started = Instant::now();
    succeed(&mut clean(
        Command::new(venv.join("bin/python"))
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg(&wheel)
            .args(pins(&["google-auth", "requests", "pytest"])),
    ));
    let installed = started.elapsed();
    let mut run = clean(Command::new(venv.join("bin/python")).args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        ".",
    ]));
    let output = succeed(run.current_dir(&example));
    let passed = started.elapsed();
    let summary = output.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("2 passed")
            && !["failed", "skipped", "error", "deselected"]
                .iter()
                .any(|w| summary.contains(w)),
        "{output}"
    );
    // The binary the helper ran is the wheel's, beside the venv's python.
    let version_line = succeed(&mut clean(
        Command::new(venv.join("bin/frontdoor")).arg("--version"),
    ));
    assert!(version_line.contains(version), "{version_line}");
    println!(
        "the wheel ({} MB): pip install took {:.1} s; the example's two tests passed {:.1} s after pip install began",
        std::fs::metadata(&wheel).unwrap().len() / 1_000_000,
        installed.as_secs_f64(),
        passed.as_secs_f64()
    );
}
