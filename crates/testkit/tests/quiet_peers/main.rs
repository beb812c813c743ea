//! `revoke_when = "unused"` in process against real peers that report
//! last use: moto's IAM (`GetAccessKeyLastUsed`, precision 4h) and the
//! Atlassian sandbox under `--strict` (`lastActiveAt`, moved lazily: a use
//! within 10 minutes of the recorded one does not show). The world's slot
//! keeps its name (`local/ci`) but its provider `local` is configured as
//! an `aws-iam` provider against a moto server this test starts, or as an
//! `atlassian` provider against a sandbox served in this process; the
//! slot's current key is one made at the peer outside keyrot, whose id
//! (and secret) the consumer holds.
//!
//! The consumer is this test: a request signed with the old key (IAM
//! `ListUsers`) or authenticated with its secret (the sandbox's key count).
//! A consumer that keeps using the old key holds the revoke until the
//! deadline, where exactly one alert is raised (mail queued, metric), then
//! the key is held or revoked as `at_deadline` says; one that stops lets
//! the revoke happen one quiet period plus the provider's precision after
//! its (recorded) last use, not a second before.
//!
//! Time: moto stamps uses with the wall clock, so the engine's manual
//! clock starts at the real now and is moved by hours; every use the test
//! makes is stamped within seconds of that start. The sandbox shares the
//! engine's manual clock. Nothing sleeps to synchronise; the world's
//! `settle` polls its runners, and peers are waited for by polling their
//! health endpoint.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde_json::{Value, json};

use keyrot_config::{
    AtlassianProviderConfig, AtlassianRotateApi, AwsCredentialsConfig, AwsIamProviderConfig,
    ProviderKind, SecretRef,
};
use keyrot_core::clock::{Clock, ManualClock, SystemClock};
use keyrot_core::model::{KeyInfo, LastUse, RotationRecord, RotationState};
use keyrot_core::policy::testutil::dur;
use keyrot_core::policy::{AtDeadline, QuietRule, RevokeWhen};
use keyrot_peers::aws::{AwsClient, AwsCredentials, CredentialSource};
use keyrot_testkit::quiet::{alerts, in_use_mails, tick};
use keyrot_testkit::{SLOT, World};

/// IAM's declared precision (`GetAccessKeyLastUsed` may lag this much).
const IAM_PRECISION: SignedDuration = keyrot_config::AWS_IAM_LAST_USED_PRECISION;

/// The sandbox's lazy granularity under `--strict`, and the precision the
/// provider is configured with to match it.
const SANDBOX_PRECISION: SignedDuration = keyrot_sandbox::STRICT_LAST_ACTIVE_GRANULARITY;

fn rule(quiet: &str, deadline: &str, at_deadline: AtDeadline) -> RevokeWhen {
    RevokeWhen::Unused(QuietRule {
        quiet_period: dur(quiet),
        deadline: dur(deadline),
        at_deadline,
    })
}

fn newest(w: &World) -> RotationRecord {
    w.store().rotations(Some(SLOT), 1).unwrap().remove(0)
}

/// Moves the clock to `at` (not backwards), then as [`tick`].
async fn tick_to(w: &World, id: &str, at: Timestamp) {
    let d = at.duration_since(w.now());
    assert!(d >= SignedDuration::ZERO, "{at} is before {}", w.now());
    tick(w, id, d).await;
}

/// Makes `current` the slot's current key (adopted, as an inventory sync
/// of a key made outside keyrot would), with `scopes`.
fn adopt(w: &World, id: &str, scopes: &[&str]) {
    let mut k = w.store().key(SLOT).unwrap().unwrap();
    k.current = Some(KeyInfo {
        id: id.into(),
        name: "ci".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        created_by: None,
        created_at: None,
        expires_at: None,
        last_used_at: None,
        tags: Default::default(),
    });
    k.scopes = scopes.iter().map(|s| s.to_string()).collect();
    w.store().write(|tx| tx.put_key(&k)).unwrap();
}

/// The policy's `revoke_when`, and the provider `local` replaced by `kind`.
fn tweak(
    kind: ProviderKind,
    when: RevokeWhen,
) -> impl Fn(&mut keyrot_config::Config) + Send + Sync {
    move |cfg| {
        for p in &mut cfg.providers {
            p.kind = kind.clone();
        }
        for p in &mut cfg.policies {
            p.revoke_when = when;
        }
    }
}

fn secret_file(dir: &Path, name: &str, value: &str) -> SecretRef {
    let p = dir.join(name);
    std::fs::write(&p, value).unwrap();
    SecretRef::File(p)
}

// ---------------------------------------------------------------- moto

mod moto;
mod sandbox;
