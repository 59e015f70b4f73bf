//! The sweep of providers whose only record is their ledger (local sandboxes, SSH hosts):
//! what a crashed or forgotten run left behind goes, and what a live run still uses stays.
//!
//! A machine goes when the process that created it (its record's session, see
//! [`crate::session`]) is known to be gone and the grace period since its creation has
//! passed, or when its deadline is more than the grace period past and its creator is not
//! known to be alive. A machine whose creator still runs is never taken, whatever its
//! deadline says: a pipeline worker or an agent's machine is that run's to end. (EC2 has a
//! sweep of its own, which also probes reachability.)

use std::time::Duration;

use crate::clock::unix_now;
use crate::error::Result;
use crate::ledger::{Ledger, LedgerRecord};
use crate::provider::{PurgeReport, ResourceKind, ResourceProvider};
use crate::session::{liveness, Liveness};

/// Whether a sweep at `now` (seconds since the epoch) removes the machine of `record`,
/// whose creator is in state `creator`.
pub fn sweeps(record: &LedgerRecord, creator: Liveness, now: u64, grace: Duration) -> bool {
    if record.kind != ResourceKind::Machine || creator == Liveness::Alive {
        return false;
    }
    let grace = grace.as_secs();
    let expired = record
        .deadline
        .is_some_and(|d| d.saturating_add(grace) < now);
    let abandoned = creator == Liveness::Dead && record.created_at.saturating_add(grace) < now;
    expired || abandoned
}

/// Removes through `provider` the machines of `ledger` that [`sweeps`] picks.
pub async fn sweep_ledger(
    provider: &dyn ResourceProvider,
    ledger: &Ledger,
    grace: Duration,
) -> Result<PurgeReport> {
    let now = unix_now();
    let gone: Vec<String> = ledger
        .records()?
        .into_iter()
        .filter(|r| sweeps(r, liveness(&r.session), now, grace))
        .map(|r| r.id)
        .collect();
    provider.terminate(&gone).await?;
    Ok(PurgeReport { removed: gone })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_creator_keeps_its_machine_and_a_gone_one_loses_it_after_the_grace() {
        let grace = Duration::from_secs(60);
        let mut r = LedgerRecord::new("m", ResourceKind::Machine);
        r.created_at = 1_000;
        r.deadline = Some(2_000);
        let at = |now, creator| sweeps(&r, creator, now, grace);
        assert!(
            !at(1_000_000, Liveness::Alive),
            "alive, long past its deadline"
        );
        assert!(
            !at(1_050, Liveness::Dead),
            "within the grace of its creation"
        );
        assert!(at(1_061, Liveness::Dead), "its creator is gone");
        assert!(
            !at(2_050, Liveness::Unknown),
            "unknown: only the deadline counts"
        );
        assert!(at(2_061, Liveness::Unknown));
        let image = LedgerRecord::new("i", ResourceKind::Image);
        assert!(!sweeps(&image, Liveness::Dead, u64::MAX, grace));
    }
}
