//! The [`ResourceProvider`] contract, checked the same way for every provider (local, EC2,
//! SSH hosts, and any added later).
//!
//! A backend's test builds its provider and a [`ProviderCase`] (what it can provision, what
//! it must refuse, an image it can build), then calls [`run_all`]. Every check starts and
//! ends with nothing managed, so the checks can run in any order on one provider.

use std::collections::BTreeSet;

use hgauto_core::provider::{ResourceKind, ResourceProvider};
use hgauto_core::spec::{ImageRecipe, MachineSpec};

/// What the suite needs to know about one provider.
#[derive(Debug, Clone)]
pub struct ProviderCase {
    /// A spec this provider provisions (two machines of it at once).
    pub spec: MachineSpec,
    /// A spec this provider must refuse (a platform it lacks, an image that does not
    /// exist, a first-boot script it cannot run...).
    pub bad_spec: MachineSpec,
    /// An image recipe it can build, or `None` when it has no images.
    pub recipe: Option<ImageRecipe>,
}

/// The ids of the machines `p` manages and says exist.
async fn live_machines(p: &dyn ResourceProvider) -> BTreeSet<String> {
    p.list_managed()
        .await
        .unwrap_or_else(|e| panic!("[{}] list_managed: {e}", p.name()))
        .into_iter()
        .filter(|r| r.kind == ResourceKind::Machine && r.exists)
        .map(|r| r.id)
        .collect()
}

/// Two machines are provisioned with distinct ids, are listed while they live, and are
/// gone from the list once terminated.
pub async fn provision_then_terminate(p: &dyn ResourceProvider, case: &ProviderCase) {
    let name = p.name().to_owned();
    let before = live_machines(p).await;
    let ms = p
        .provision(&case.spec, 2)
        .await
        .unwrap_or_else(|e| panic!("[{name}] provision: {e}"));
    let ids: Vec<String> = ms.iter().map(|m| m.id().to_owned()).collect();
    assert_eq!(ids.len(), 2, "[{name}] asked for 2 machines");
    assert_ne!(ids[0], ids[1], "[{name}] machine ids must differ");
    let listed = live_machines(p).await;
    for id in &ids {
        assert!(
            listed.contains(id),
            "[{name}] {id} is not listed: {listed:?}"
        );
        assert!(
            !before.contains(id),
            "[{name}] {id} was listed before it was made"
        );
    }
    p.terminate(&ids)
        .await
        .unwrap_or_else(|e| panic!("[{name}] terminate: {e}"));
    let after = live_machines(p).await;
    for id in &ids {
        assert!(
            !after.contains(id),
            "[{name}] {id} still listed after terminate"
        );
    }
}

/// Terminating machines that are already gone succeeds, and changes nothing else.
pub async fn terminate_is_idempotent(p: &dyn ResourceProvider, case: &ProviderCase) {
    let name = p.name().to_owned();
    let ms = p
        .provision(&case.spec, 1)
        .await
        .unwrap_or_else(|e| panic!("[{name}] provision: {e}"));
    let ids = vec![ms[0].id().to_owned()];
    p.terminate(&ids)
        .await
        .unwrap_or_else(|e| panic!("[{name}] first terminate: {e}"));
    p.terminate(&ids)
        .await
        .unwrap_or_else(|e| panic!("[{name}] second terminate of {ids:?}: {e}"));
    assert!(
        !live_machines(p).await.contains(&ids[0]),
        "[{name}] {} came back",
        ids[0]
    );
}

/// After `purge`, the provider manages nothing: no machine, no image, nothing the ledger
/// still remembers.
pub async fn purge_leaves_nothing(p: &dyn ResourceProvider, case: &ProviderCase) {
    let name = p.name().to_owned();
    p.provision(&case.spec, 2)
        .await
        .unwrap_or_else(|e| panic!("[{name}] provision: {e}"));
    let report = p
        .purge()
        .await
        .unwrap_or_else(|e| panic!("[{name}] purge: {e}"));
    assert!(
        report.removed.len() >= 2,
        "[{name}] purge removed less than the two machines: {report:?}"
    );
    let left = p
        .list_managed()
        .await
        .unwrap_or_else(|e| panic!("[{name}] list_managed: {e}"));
    assert!(left.is_empty(), "[{name}] purge left {left:?}");
}

/// A spec the provider cannot honour is an error, and nothing is created or recorded.
pub async fn bad_spec_creates_nothing(p: &dyn ResourceProvider, case: &ProviderCase) {
    let name = p.name().to_owned();
    let before = p.list_managed().await.unwrap();
    let result = p.provision(&case.bad_spec, 1).await;
    assert!(
        result.is_err(),
        "[{name}] provisioned a spec it must refuse: {:?}",
        case.bad_spec
    );
    let after = p.list_managed().await.unwrap();
    let ids = |v: &[hgauto_core::provider::ManagedResource]| -> BTreeSet<String> {
        v.iter().map(|r| r.id.clone()).collect()
    };
    assert_eq!(
        ids(&before),
        ids(&after),
        "[{name}] a refused spec left something behind"
    );
}

/// Two concurrent `ensure_image` calls for one recipe, and a third after them, give one
/// image id, and one image of that id is managed.
pub async fn ensure_image_builds_once(p: &dyn ResourceProvider, case: &ProviderCase) {
    let Some(recipe) = &case.recipe else { return };
    let name = p.name().to_owned();
    let (a, b) = tokio::join!(p.ensure_image(recipe), p.ensure_image(recipe));
    let a = a.unwrap_or_else(|e| panic!("[{name}] ensure_image: {e}"));
    let b = b.unwrap_or_else(|e| panic!("[{name}] concurrent ensure_image: {e}"));
    assert_eq!(a, b, "[{name}] two ids for one recipe");
    let c = p.ensure_image(recipe).await.unwrap();
    assert_eq!(a, c, "[{name}] the cached image was not reused");
    let images: Vec<String> = p
        .list_managed()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == ResourceKind::Image)
        .map(|r| r.id)
        .collect();
    assert_eq!(images, [a], "[{name}] images managed after three calls");
    p.purge().await.unwrap();
}

/// Every check, in order.
pub async fn run_all(p: &dyn ResourceProvider, case: &ProviderCase) {
    provision_then_terminate(p, case).await;
    terminate_is_idempotent(p, case).await;
    bad_spec_creates_nothing(p, case).await;
    ensure_image_builds_once(p, case).await;
    purge_leaves_nothing(p, case).await;
}
