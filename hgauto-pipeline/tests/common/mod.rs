//! What the tests of this directory share.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hgauto_core::{
    Artifact, DirPublisher, LocalProvider, MachineSpec, Publisher, ResourceProvider,
};
use hgauto_pipeline::{
    Pipeline, RunResult, Runner, ShouldRun, Step, StepCommand, StepFailure, StepKind, TaskState,
    WorkerKind,
};

pub const VERSIONS: [&str; 3] = ["3.1", "3.2", "3.3"];
pub const DISTROS: [&str; 4] = ["debian", "ubuntu", "fedora", "alpine"];
pub const BUILD: &str = r#"set -e
cell="$HGAUTO_MATRIX_VERSION-$HGAUTO_MATRIX_DISTRO"
case " $FAIL_BUILD " in *" $cell "*) echo "compile error in $cell" >&2; exit 1;; esac
rm -rf dist && mkdir -p dist
echo "package $cell" > "dist/pkg-$cell.tar.gz"
echo "package=pkg-$cell.tar.gz" >> "$HGAUTO_OUTPUT"
"#;
pub const TEST: &str = r#"cell="$HGAUTO_MATRIX_VERSION-$HGAUTO_MATRIX_DISTRO"
n=$(cat "$COUNTERS/test-$cell" 2>/dev/null || echo 0); n=$((n+1)); echo "$n" > "$COUNTERS/test-$cell"
case " $FLAKY " in *" $cell "*) if [ "$n" -le 2 ]; then echo "runner lost its network"; exit 75; fi;; esac
case " $BROKEN " in *" $cell "*) echo "test host down"; exit 75;; esac
# A build skipped as already published hands over no outputs.
[ -z "$HGAUTO_OUT_BUILD_PACKAGE" ] || test "$HGAUTO_OUT_BUILD_PACKAGE" = "pkg-$cell.tar.gz"
"#;
pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub state: PathBuf,
    pub out: PathBuf,
    pub counters: PathBuf,
    pub published: PathBuf,
    pub provider: Arc<LocalProvider>,
}
pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let counters = dir.path().join("counters");
    std::fs::create_dir_all(&counters).unwrap();
    let provider = Arc::new(LocalProvider::new(&state).unwrap());
    Fixture {
        state,
        out: dir.path().join("out"),
        counters,
        published: dir.path().join("published"),
        provider,
        _dir: dir,
    }
}
/// build (heavy) and test (cheap) per version x distro on two worker kinds, publish per
/// version in process once every distro of the version is built and tested.
pub fn matrix(f: &Fixture) -> Pipeline {
    let publisher: Arc<dyn Publisher> = Arc::new(DirPublisher::new(&f.published));
    let names: Vec<String> = DISTROS
        .iter()
        .map(|d| format!("pkg-{{version}}-{d}.tar.gz"))
        .collect();
    let counters = f.counters.display().to_string();
    let mut test = StepCommand::script(TEST);
    test.env.insert("COUNTERS".into(), counters);
    test.env.insert("FLAKY".into(), "{flaky}".into());
    test.env.insert("BROKEN".into(), "{broken}".into());
    let mut build = StepCommand::script(BUILD);
    build.env.insert("FAIL_BUILD".into(), "{fail_build}".into());
    let target = publisher.clone();
    Pipeline::builder("matrix")
        .dimension("version", VERSIONS)
        .dimension("distro", DISTROS)
        .worker(
            "builder",
            WorkerKind::new(MachineSpec::linux()).max_workers(4),
        )
        .worker(
            "tester",
            WorkerKind::new(MachineSpec::linux()).max_workers(2),
        )
        .step(
            Step::command("build", "builder", build)
                .over(["version", "distro"])
                .kind(StepKind::Heavy)
                .collect("dist/pkg-{version}-{distro}.tar.gz")
                .should_run(ShouldRun::Published {
                    publisher: publisher.clone(),
                    artifacts: vec!["pkg-{version}-{distro}.tar.gz".into()],
                }),
        )
        .step(
            Step::command("test", "tester", test)
                .over(["version", "distro"])
                .needs(["build"]),
        )
        .step(
            Step::function("publish", move |ctx| {
                let target = target.clone();
                async move {
                    let files: Vec<Artifact> = ctx
                        .all_artifacts()
                        .iter()
                        .map(Artifact::from_file)
                        .collect::<hgauto_core::Result<_>>()?;
                    if files.len() != DISTROS.len() {
                        return Err(StepFailure::fatal(format!(
                            "expected {} packages, got {}",
                            DISTROS.len(),
                            files.len()
                        )));
                    }
                    let report = target.publish(&files).await?;
                    Ok([("published".to_owned(), report.published.len().to_string())].into())
                }
            })
            .over(["version"])
            .needs(["build", "test"])
            .should_run(ShouldRun::Published {
                publisher,
                artifacts: names,
            }),
        )
        .build()
        .unwrap()
}
pub fn runner(f: &Fixture, p: Pipeline) -> Runner {
    Runner::new(p, &f.out)
        .provider(f.provider.clone())
        .health_check(Duration::from_millis(50))
        .idle_timeout(Duration::from_secs(2))
        .retry_time_scale(0.001)
        .input("fail_build", "")
        .input("flaky", "")
        .input("broken", "")
}
pub fn states(r: &RunResult) -> BTreeMap<String, (TaskState, u32)> {
    r.tasks()
        .map(|t| (t.task.clone(), (t.state, t.attempts)))
        .collect()
}
pub async fn no_machines_left(p: &LocalProvider) {
    let left: Vec<_> = p
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.exists)
        .collect();
    assert!(left.is_empty(), "machines left behind: {left:?}");
}
