//! Each provider's orphans in `meta`, on both backends: written, read in
//! the transaction and after it, replaced, and removed when none are left.

use super::t;
use crate::model::Orphan;
use crate::store::Store;

fn orphan(provider: &str, id: &str) -> Orphan {
    Orphan {
        provider: provider.into(),
        id: id.into(),
        name: "svc".into(),
        rotation: "r-unknown".into(),
        created_at: None,
        expires_at: None,
        found_at: t(0),
        seen_at: t(10),
    }
}

fn orphans_per_provider_are_kept_replaced_and_cleared(store: &Store) {
    assert!(store.orphans().unwrap().is_empty());
    store
        .write(|tx| {
            tx.set_orphans("b", &[orphan("b", "k2")])?;
            tx.set_orphans("a", &[orphan("a", "k1"), orphan("a", "k3")])?;
            assert_eq!(tx.orphans_of("a")?.len(), 2);
            assert!(tx.orphans_of("c")?.is_empty());
            Ok(())
        })
        .unwrap();
    let all: Vec<(String, String)> = store
        .orphans()
        .unwrap()
        .into_iter()
        .map(|o| (o.provider, o.id))
        .collect();
    assert_eq!(
        all,
        [
            ("a".to_string(), "k1".to_string()),
            ("a".into(), "k3".into()),
            ("b".into(), "k2".into())
        ]
    );
    store
        .write(|tx| {
            tx.set_orphans("a", &[orphan("a", "k3")])?;
            tx.set_orphans("b", &[])
        })
        .unwrap();
    let all = store.orphans().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].id, "k3");
    assert_eq!(all[0], orphan("a", "k3"));
    // Duplicates (another meta prefix) are not orphans, and the other way.
    assert!(store.duplicates().unwrap().is_empty());
}

on_both!(orphans_per_provider_are_kept_replaced_and_cleared);
