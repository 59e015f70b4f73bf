//! What an operation has left on the instance or in the bucket, undone in the background
//! when the caller stops waiting.

use std::time::Duration;

use super::SsmMachine;

/// How long an abandoned upload may take to land after its client hung up.
const UPLOAD_SETTLE: Duration = Duration::from_secs(2);

/// What an operation has left on the instance or in the bucket so far. Each entry is
/// recorded before the thing it names is created and cleared once the operation has
/// cleaned it up itself. Whatever is still recorded when the guard drops (the caller
/// stopped waiting mid-operation) is undone by a background task (see
/// [`hgauto_core::backend::background`]): the command is killed and cancelled, its output and the
/// staged objects are deleted.
pub(super) struct Leftovers {
    pub(super) machine: SsmMachine,
    pub(super) objects: Vec<String>,
    pub(super) command: Option<Started>,
}

/// A command the instance was given.
pub(super) enum Started {
    /// Sent (possibly still running) under this kill token; the id is unknown while
    /// `SendCommand` is in flight.
    Running { id: Option<String>, token: String },
    /// Ended; its output may still be in the bucket.
    Ended { id: String },
}

impl Leftovers {
    /// A new transfer key in the bucket, recorded before anything is written to it.
    pub(super) fn new_object(&mut self) -> String {
        let key = self.machine.transfer_key();
        self.objects.push(key.clone());
        key
    }

    /// Deletes a recorded object now and forgets it.
    pub(super) async fn delete(&mut self, key: &str) {
        if let Some(bucket) = &self.machine.opts.bucket {
            self.machine.delete_object(bucket, key).await;
        }
        self.objects.retain(|k| k != key);
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        if self.objects.is_empty() && self.command.is_none() {
            return;
        }
        let m = self.machine.clone();
        let objects = std::mem::take(&mut self.objects);
        let command = self.command.take();
        let what = match &command {
            Some(Started::Running { id, .. }) => format!(
                "stopping SSM command {} on {}",
                id.as_deref().unwrap_or("(being sent)"),
                m.id
            ),
            Some(Started::Ended { id }) => format!("removing output of SSM command {id}"),
            None => format!("removing {} staged object(s) of {}", objects.len(), m.id),
        };
        hgauto_core::backend::background::spawn(what, async move {
            match command {
                Some(Started::Running { id, token }) => m.stop(id.as_deref(), &token).await,
                Some(Started::Ended { id }) => m.discard_output(&id).await,
                None => {}
            }
            if let (Some(bucket), false) = (&m.opts.bucket, objects.is_empty()) {
                for key in &objects {
                    m.delete_object(bucket, key).await;
                }
                // An upload whose client hung up after sending the body can still complete on
                // the server after the first delete (seen with S3-compatible servers):
                // delete again once such a request has had time to land.
                tokio::time::sleep(UPLOAD_SETTLE).await;
                for key in &objects {
                    m.delete_object(bucket, key).await;
                }
            }
        });
    }
}

impl SsmMachine {
    /// A record of what an operation has left on the instance or in the bucket; see
    /// [`Leftovers`].
    pub(super) fn leftovers(&self) -> Leftovers {
        Leftovers {
            machine: self.clone(),
            objects: Vec::new(),
            command: None,
        }
    }
}
