//! Secrets never reach a pipeline's result files: a failed command step whose filled-in
//! argument holds a secret input, run on the local provider with real processes.

use std::sync::Arc;
use std::time::Duration;

use hgauto_core::redact::SecretString;
use hgauto_core::{LocalProvider, MachineSpec};
use hgauto_pipeline::{Pipeline, Runner, Step, StepCommand, WorkerKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_steps_error_is_scrubbed_of_secret_inputs_everywhere_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let provider = Arc::new(LocalProvider::new(dir.path().join("state")).unwrap());
    let token = "s3cr3t-upload-token-0123";
    let step = Step::command(
        "upload",
        "w",
        StepCommand::argv([
            "./no-such-uploader",
            "--token={token}",
            "--url=https://ci:{token}@example.invalid/x",
        ]),
    );
    let p = Pipeline::builder("secrets")
        .worker("w", WorkerKind::new(MachineSpec::linux()).max_workers(1))
        .step(step)
        .build()
        .unwrap();
    let out = dir.path().join("out");
    let result = Runner::new(p, &out)
        .provider(provider)
        .health_check(Duration::from_millis(50))
        .retry_time_scale(0.001)
        .secret_input("token", SecretString::new(token))
        .run()
        .await
        .unwrap();
    assert!(!result.ok);
    let failure = &result.failures[0];
    // The error names the command as it ran, so unscrubbed it would hold the token.
    assert!(failure.error.contains("--token=***"), "{}", failure.error);
    assert!(!failure.error.contains(token), "{}", failure.error);
    for file in ["result.json", "report.html"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains(token), "{file} holds the secret");
    }
    assert!(!result.failure_summary().contains(token));
}
