//! A pipeline worker's exact calls to its provider, where the sequence is the point
//! (mockall mock of `ResourceProvider`, feature `mocks`): one provision, the HHVM-style name
//! before and after every task, and one terminate. Commands run on a real local machine.

use std::sync::Arc;

use hgauto_core::provider::MockResourceProvider;
use hgauto_core::{LocalProvider, MachineSpec, RemoteMachine, ResourceProvider};
use hgauto_pipeline::{Pipeline, Runner, Step, StepCommand, StepKind, TaskState, WorkerKind};
use mockall::predicate::eq;
use mockall::Sequence;

fn label(p: &mut MockResourceProvider, seq: &mut Sequence, id: &str, text: &'static str) {
    p.expect_set_label()
        .with(eq(id.to_owned()), eq(text))
        .times(1)
        .in_sequence(seq)
        .returning(|_, _| Ok(()));
}

/// A worker that starts a task moves its deadline a lifetime (2 h by default) on first.
fn extend(p: &mut MockResourceProvider, seq: &mut Sequence, id: &str) {
    let ids = vec![id.to_owned()];
    p.expect_extend_deadline()
        .withf(move |got, until| {
            *got == ids && *until >= hgauto_core::clock::unix_now() + 7200 - 60
        })
        .times(1)
        .in_sequence(seq)
        .returning(|_, _| Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_is_named_waiting_then_active_per_task_and_stops_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::new(dir.path().join("state")).unwrap();
    let machine: Arc<dyn RemoteMachine> = local
        .provision(&MachineSpec::linux(), 1)
        .await
        .unwrap()
        .remove(0);
    let id = machine.id().to_owned();

    let mut p = MockResourceProvider::new();
    p.expect_name().return_const("mock".to_owned());
    let mut seq = Sequence::new();
    let handed = machine.clone();
    p.expect_provision()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_, _| Ok(vec![handed.clone()]));
    label(&mut p, &mut seq, &id, "ww-0-w");
    label(&mut p, &mut seq, &id, "wa-1-s-a");
    extend(&mut p, &mut seq, &id);
    label(&mut p, &mut seq, &id, "ww-1-s-a");
    label(&mut p, &mut seq, &id, "wa-2-s-b");
    extend(&mut p, &mut seq, &id);
    // s-b fails: the worker keeps its active name and takes nothing more.
    p.expect_terminate()
        .with(eq(vec![id.clone()]))
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_| Ok(()));

    let pipeline = Pipeline::builder("names")
        .dimension("x", ["a", "b"])
        .worker("w", WorkerKind::new(MachineSpec::linux()).max_workers(1))
        .step(
            Step::command(
                "s",
                "w",
                StepCommand::argv(["sh", "-c", "test \"$0\" != b", "{x}"]),
            )
            .over(["x"])
            .kind(StepKind::Custom(hgauto_core::RetryPolicy::none())),
        )
        .build()
        .unwrap();
    let result = Runner::new(pipeline, dir.path().join("out"))
        .provider(Arc::new(p))
        .run()
        .await
        .unwrap();
    let states: Vec<(&str, TaskState, u32)> = result
        .tasks()
        .map(|t| (t.task.as_str(), t.state, t.attempts))
        .collect();
    assert_eq!(
        states,
        [
            ("s-a", TaskState::Succeeded, 1),
            ("s-b", TaskState::Failed, 1)
        ]
    );
    assert_eq!(result.workers.len(), 1);
    assert_eq!(
        (
            result.workers[0].label.as_str(),
            result.workers[0].ended.as_str()
        ),
        ("wa-2-s-b", "failed")
    );
    local.terminate(&[id]).await.unwrap();
}
