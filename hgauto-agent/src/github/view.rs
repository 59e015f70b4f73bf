//! [`RepoView`]: what a round of polling learnt about one repository, kept between rounds.

use std::collections::HashMap;

use super::pulls::PullRequest;
use super::statuses::Status;

/// What the last round learnt about one repository.
#[derive(Debug, Default)]
pub(crate) struct RepoView {
    /// Open pull requests by number.
    pub(super) pulls: HashMap<u64, PullRequest>,
    /// The latest status per context, by head.
    pub(super) statuses: HashMap<String, HashMap<String, Status>>,
    /// Whether a pull request's head was approved, as of (head, updated_at).
    pub(super) approvals: HashMap<u64, (String, String, bool)>,
    /// Whether the last round decided about every pull request. One that failed halfway
    /// is done again even when the listing has not changed.
    pub(super) complete: bool,
}
