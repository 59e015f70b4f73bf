//! Virtualenv creation side by side with `python -m venv`, `virtualenv` and `uv venv`, and
//! a venv plus 10 wheels from a local wheelhouse against `uv venv && uv pip install` and
//! `python -m venv && pip install`.
//!
//! ```text
//! ./scripts/test-all   # once: installs uv and virtualenv into .venv-test
//! cargo bench --no-default-features --features conformance --bench venv
//! ```
//!
//! Each number is the median of 5 runs into fresh directories (on /dev/shm when it
//! exists). hgauto installs with uv when it is on PATH, as a user would have it.

use hgauto_testkit::support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hgauto_ci::venv::{create_virtualenv, Installer, VenvOptions};

const RUNS: usize = 5;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn sh(script: &str) -> Duration {
    let t = Instant::now();
    let out = std::process::Command::new("sh")
        .arg("-ec")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv-test/bin");
    let (uv, virtualenv) = (tools.join("uv"), tools.join("virtualenv"));
    assert!(
        uv.exists() && virtualenv.exists(),
        "run ./scripts/test-all first"
    );
    // The real interpreter (not a launcher script), for every tool alike.
    let python = String::from_utf8(
        std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let house = base.path().join("wheelhouse");
    std::fs::create_dir(&house).unwrap();
    let mut reqs = String::new();
    for i in 0..10 {
        support::wheel(&house, &format!("pkg{i}"), "1.0");
        reqs.push_str(&format!("pkg{i}==1.0\n"));
    }
    let req = base.path().join("requirements.txt");
    std::fs::write(&req, reqs).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let p = |n: &str, i: usize| base.path().join(format!("{n}-{i}")).display().to_string();

    // Warm the interpreter info cache and the page cache, as a CI machine would be.
    rt.block_on(create_virtualenv(
        &base.path().join("warm"),
        &VenvOptions {
            python: Some(python.clone().into()),
            ..VenvOptions::default()
        },
    ))
    .unwrap();

    let (mut ours, mut venv, mut venv_nopip, mut virt, mut uvv) =
        (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..RUNS {
        let t = Instant::now();
        rt.block_on(create_virtualenv(
            Path::new(&p("ours", i)),
            &VenvOptions {
                python: Some(python.clone().into()),
                ..VenvOptions::default()
            },
        ))
        .unwrap();
        ours.push(t.elapsed());
        venv.push(sh(&format!("{python} -m venv {}", p("venv", i))));
        venv_nopip.push(sh(&format!(
            "{python} -m venv --without-pip {}",
            p("venvnp", i)
        )));
        virt.push(sh(&format!(
            "{} -q -p {python} --no-pip --no-setuptools --no-wheel {}",
            virtualenv.display(),
            p("virt", i)
        )));
        uvv.push(sh(&format!(
            "{} venv -q -p {python} {}",
            uv.display(),
            p("uv", i)
        )));
    }
    // The same with the interpreter-info cache empty each time (first use on a machine).
    let mut cold = vec![];
    for i in 0..RUNS {
        std::env::set_var("HGAUTO_STATE_DIR", base.path().join(format!("state-{i}")));
        let t = Instant::now();
        rt.block_on(create_virtualenv(
            Path::new(&p("cold", i)),
            &VenvOptions {
                python: Some(python.clone().into()),
                ..VenvOptions::default()
            },
        ))
        .unwrap();
        cold.push(t.elapsed());
    }
    std::env::remove_var("HGAUTO_STATE_DIR");
    let (o, c) = (median(ours), median(cold));
    println!(
        "empty venv: hgauto {:.1} ms (interpreter info cached), {:.1} ms (cache empty)",
        ms(o),
        ms(c)
    );
    for (name, d) in [
        ("python -m venv", median(venv)),
        ("python -m venv --without-pip", median(venv_nopip)),
        ("virtualenv --no-pip", median(virt)),
        ("uv venv", median(uvv)),
    ] {
        println!(
            "  vs {name:<30} {:>8.1} ms   ratio {:.3}x cached, {:.2}x cache empty",
            ms(d),
            ms(o) / ms(d),
            ms(c) / ms(d)
        );
    }

    let (mut ours, mut uvi, mut pipi) = (vec![], vec![], vec![]);
    for i in 0..RUNS {
        let t = Instant::now();
        let r = rt
            .block_on(create_virtualenv(
                Path::new(&p("ours10", i)),
                &VenvOptions {
                    python: Some(python.clone().into()),
                    requirements: vec![req.clone()],
                    find_links: vec![house.display().to_string()],
                    no_index: true,
                    installer: Installer::Uv(uv.clone()),
                    ..VenvOptions::default()
                },
            ))
            .unwrap();
        ours.push(t.elapsed());
        assert_eq!(r.installer.as_deref(), Some("uv"));
        uvi.push(sh(&format!(
            "{uv} venv -q -p {python} {d} && {uv} pip install -q --python {d}/bin/python --no-index --find-links {h} -r {r}",
            uv = uv.display(),
            d = p("uv10", i),
            h = house.display(),
            r = req.display()
        )));
        pipi.push(sh(&format!(
            "{python} -m venv {d} && {d}/bin/pip install -q --disable-pip-version-check --no-index --find-links {h} -r {r}",
            d = p("pip10", i),
            h = house.display(),
            r = req.display()
        )));
    }
    let o = median(ours);
    println!("venv + 10 wheels: hgauto {:.1} ms", ms(o));
    for (name, d) in [
        ("uv venv && uv pip install", median(uvi)),
        ("python -m venv && pip install", median(pipi)),
    ] {
        println!(
            "  vs {name:<30} {:>8.1} ms   ratio {:.2}x ({:.1}x faster)",
            ms(d),
            ms(o) / ms(d),
            ms(d) / ms(o)
        );
    }
}
