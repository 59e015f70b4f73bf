//! What the Step Functions tests share: the activity ARN prefix, a client on an endpoint, and
//! a matrix pipeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use hgauto_core::{DirPublisher, MachineSpec};
use hgauto_pipeline::{Pipeline, ShouldRun, Step, StepCommand, StepKind, WorkerKind};

pub const ARN_PREFIX: &str = "arn:aws:states:us-east-1:123456789012:activity:";

pub fn sfn_client(endpoint: &str) -> aws_sdk_sfn::Client {
    let conf = aws_sdk_sfn::Config::builder()
        .behavior_version(aws_sdk_sfn::config::BehaviorVersion::latest())
        .region(aws_sdk_sfn::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sfn::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .http_client(hgauto_aws::http_client())
        .build();
    aws_sdk_sfn::Client::from_conf(conf)
}

/// 3 versions x 4 distros: build (heavy, skipped when published), test, publish per version.
pub fn matrix_pipeline() -> Pipeline {
    let published = Arc::new(DirPublisher::new("/srv/dist"));
    Pipeline::builder("matrix")
        .dimension("version", ["3.1", "3.2", "3.3"])
        .dimension("distro", ["debian", "ubuntu", "fedora", "alpine"])
        .worker("builder", WorkerKind::new(MachineSpec::linux()))
        .worker("tester", WorkerKind::new(MachineSpec::linux()))
        .step(
            Step::command("build", "builder", StepCommand::argv(["make"]))
                .over(["version", "distro"])
                .kind(StepKind::Heavy)
                .should_run(ShouldRun::Published {
                    publisher: published,
                    artifacts: vec!["pkg-{version}-{distro}.tgz".into()],
                }),
        )
        .step(
            Step::command("test", "tester", StepCommand::argv(["make", "check"]))
                .over(["version", "distro"])
                .needs(["build"]),
        )
        .step(
            Step::function("publish", |_| async { Ok(BTreeMap::new()) })
                .over(["version"])
                .needs(["test"]),
        )
        .build()
        .unwrap()
}
