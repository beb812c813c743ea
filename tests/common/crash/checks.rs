//! The invariants I1-I6, checked against what the peers hold
//! ([`super::observe`]): the provider's own key list and records, the
//! sinks' own values and write times, the SMTP server's received messages,
//! and the store read with the daemon stopped.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde_json::Value;

use super::mail::check_mail;
use super::observe::{ProviderKey, SinkValue, StoreView};
use super::{ASSISTED, Case, IAM, SANDBOX, SINKS, Slot, ts};

/// What one check saw (summed into the suites' figures).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Rotations checked.
    pub rotations: usize,
    /// Of which Completed.
    pub completed: usize,
    /// Failed rotations an operator resumed.
    pub resumed: usize,
    /// Provider keys checked.
    pub provider_keys: usize,
    /// Sink values checked.
    pub sink_values: usize,
    /// Messages checked.
    pub messages: usize,
    /// Messages delivered more than once under the same Message-ID.
    pub duplicates: usize,
    /// Anomalies that healed without an operator (reported, not failed).
    pub findings: Vec<String>,
}

impl Report {
    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &Report) {
        self.rotations += o.rotations;
        self.completed += o.completed;
        self.resumed += o.resumed;
        self.provider_keys += o.provider_keys;
        self.sink_values += o.sink_values;
        self.messages += o.messages;
        self.duplicates += o.duplicates;
        self.findings.extend(o.findings.iter().cloned());
    }
}

impl Case<'_> {
    /// Checks I1-I6 with the daemon running, then stops it (SIGTERM) for
    /// what only the store can tell. `strict`: no Failed rotation may be
    /// left (after an operator resumed them); otherwise a Failed
    /// rotation's new key may be live and partly distributed, as long as
    /// its secret is still in the store. Returns what was checked, or
    /// every violation found.
    pub fn check(&mut self, strict: bool) -> Result<Report, String> {
        let rotations = self.rotations();
        let mut report = Report::default();
        let mut v = Vec::new();
        let live = self.check_inventory(&rotations, &mut v, &mut report);
        let ids: Vec<String> = rotations
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let sinks: BTreeMap<String, Vec<SinkValue>> = self
            .slots
            .iter()
            .map(|s| (s.id(), self.sink_values(s)))
            .collect();
        let accepts: BTreeMap<String, bool> = if self.world.sandbox.is_some() {
            sinks
                .iter()
                .filter(|(slot, _)| slot.starts_with(&format!("{SANDBOX}/")))
                .flat_map(|(_, vals)| vals.iter())
                .map(|v| (v.secret_sha256.clone(), self.sandbox_accepts(&v.secret)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let write_times: BTreeMap<String, Vec<(&'static str, Timestamp)>> = rotations
            .iter()
            .filter(|r| r["state"] == "Completed")
            .filter_map(|r| {
                let sha = r["new_key"]["secret_sha256"].as_str()?;
                let slot = self.slots.iter().find(|s| r["slot"] == s.id().as_str())?;
                Some((
                    r["id"].as_str()?.to_string(),
                    self.sink_write_times(slot, sha),
                ))
            })
            .collect();
        let mail = self.world.smtp.accepted();
        self.stop();
        let store = StoreView::read(&self.d.open_store_read_only(), &ids);
        let users: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.provider == IAM)
            .map(|s| s.name.clone())
            .collect();
        let keys = self.world.provider_keys(Some(&store), &users);
        self.check_rotations(&rotations, strict, &mut v, &mut report);
        for slot in &self.slots {
            self.check_slot(
                slot,
                &rotations,
                &live,
                &keys,
                &sinks[&slot.id()],
                &accepts,
                &store,
                strict,
                &mut v,
                &mut report,
            );
        }
        check_revoke_order(&rotations, &keys, &write_times, &mut v);
        check_hooks(&rotations, &hook_runs(&self.hook_log), &mut v);
        check_mail(&rotations, &mail, &store, &mut v, &mut report);
        if v.is_empty() {
            Ok(report)
        } else {
            Err(self.fail(&format!("invariants violated:\n  {}", v.join("\n  "))))
        }
    }

    /// Each slot's live key by the record: the new key of its latest
    /// completed rotation, else the key it adopted. keyrot's inventory
    /// (`keyrot status`) must name the same key; when it does not, an
    /// inventory sync (SIGHUP) must bring it back, which is counted as a
    /// finding (the inventory lagged); if even that does not, a violation.
    fn check_inventory(
        &mut self,
        rotations: &[Value],
        v: &mut Vec<String>,
        report: &mut Report,
    ) -> BTreeMap<String, Option<String>> {
        let live: BTreeMap<String, Option<String>> = self
            .slots
            .iter()
            .map(|s| {
                let sid = s.id();
                let latest = rotations
                    .iter()
                    .filter(|r| r["slot"] == sid.as_str() && r["state"] == "Completed")
                    .filter_map(|r| Some((ts(&r["updated_at"])?, r["new_key"]["id"].as_str()?)))
                    .max_by_key(|(t, _)| *t)
                    .map(|(_, id)| id.to_string());
                (sid, latest.or_else(|| s.initial.clone()))
            })
            .collect();
        let differ = |cur: &BTreeMap<String, Option<String>>| -> Vec<String> {
            live.iter()
                .filter(|(sid, id)| cur.get(*sid) != Some(*id))
                .map(|(sid, id)| {
                    format!(
                        "slot {sid}: keyrot status names key {:?}, the live key is {id:?}",
                        cur.get(sid).cloned().flatten()
                    )
                })
                .collect()
        };
        let first = differ(&self.current());
        if first.is_empty() {
            return live;
        }
        self.reload();
        let mut last = first.clone();
        let healed = super::super::wait_until(std::time::Duration::from_secs(15), || {
            last = differ(&self.current());
            last.is_empty()
        });
        if healed {
            report.findings.extend(
                first
                    .into_iter()
                    .map(|f| format!("[{}] inventory lagged until the next sync: {f}", self.label)),
            );
        } else {
            v.extend(last.into_iter().map(|f| format!("inventory: {f}")));
        }
        live
    }

    /// I1 on every record, and I3 on keyrot's own record.
    fn check_rotations(
        &self,
        rotations: &[Value],
        strict: bool,
        v: &mut Vec<String>,
        report: &mut Report,
    ) {
        for r in rotations {
            report.rotations += 1;
            let id = &r["id"];
            match r["state"].as_str() {
                Some("Completed") => report.completed += 1,
                Some("Aborted") => {}
                Some("Failed") if !strict => {}
                Some("AwaitingSecret") if !strict => {}
                other => v.push(format!(
                    "I1: rotation {id} ({}) ended {other:?} (last error {})",
                    r["slot"], r["last_error"]
                )),
            }
            if r["state"] != "Completed" || r["old_key_id"].is_null() {
                continue;
            }
            // I3, keyrot's record: revoked after every sink was verified,
            // and the states were entered in order.
            let Some(revoked) = ts(&r["old_revoked_at"]) else {
                v.push(format!(
                    "I3: rotation {id} completed without revoking old key {}",
                    r["old_key_id"]
                ));
                continue;
            };
            for sink in SINKS {
                match ts(&r["sink_results"][sink]["verified_at"]) {
                    Some(t) if t <= revoked => {}
                    Some(t) => v.push(format!(
                        "I3: rotation {id}: old key revoked at {revoked}, before sink {sink} was verified at {t}"
                    )),
                    None => v.push(format!(
                        "I3: rotation {id}: old key revoked but sink {sink} never verified"
                    )),
                }
            }
            let states: Vec<&str> = r["history"]
                .as_array()
                .map(|h| h.iter().filter_map(|t| t["to"].as_str()).collect())
                .unwrap_or_default();
            let first = |s: &str| states.iter().position(|x| *x == s);
            let last = |s: &str| states.iter().rposition(|x| *x == s);
            match (last("Verifying"), first("Overlap"), first("Revoking")) {
                (Some(ver), Some(ov), Some(rev)) if ver < ov && ov < rev => {}
                _ => v.push(format!(
                    "I3: rotation {id}: states entered out of order: {states:?}"
                )),
            }
        }
    }

    /// I2, I4, I5 for one slot.
    #[allow(clippy::too_many_arguments)]
    fn check_slot(
        &self,
        slot: &Slot,
        rotations: &[Value],
        live: &BTreeMap<String, Option<String>>,
        keys: &[ProviderKey],
        sinks: &[SinkValue],
        accepts: &BTreeMap<String, bool>,
        store: &StoreView,
        strict: bool,
        v: &mut Vec<String>,
        report: &mut Report,
    ) {
        let sid = slot.id();
        let mine: Vec<&Value> = rotations
            .iter()
            .filter(|r| r["slot"] == sid.as_str())
            .collect();
        let pkeys: Vec<&ProviderKey> = keys
            .iter()
            .filter(|k| k.name == slot.name && provider_matches(&k.provider, &slot.provider))
            .collect();
        report.provider_keys += pkeys.len();
        let by_id = |id: &str| pkeys.iter().find(|k| k.id == id).copied();
        let Some(cur) = live.get(&sid).cloned().flatten() else {
            v.push(format!("slot {sid} has no key"));
            return;
        };
        // A rotation that failed in Revoking may have revoked the old key
        // before the failure was recorded: its new key is then the live one
        // (in every sink and verified) until an operator resumes it.
        let revoking_failed = !strict
            && mine.iter().any(|r| {
                r["state"] == "Failed"
                    && r["failed_in"] == "Revoking"
                    && r["old_key_id"] == cur.as_str()
            });
        match by_id(&cur) {
            Some(k) if k.live || revoking_failed => {}
            Some(_) => v.push(format!(
                "I2: slot {sid}: key {cur} (its latest completed rotation's) is not live at the provider"
            )),
            None => v.push(format!(
                "I2: slot {sid}: key {cur} (its latest completed rotation's) is unknown to the provider"
            )),
        }
        // Keys a Failed rotation holds (allowed live until an operator acts).
        let failed_new: BTreeMap<String, String> = mine
            .iter()
            .filter(|r| r["state"] == "Failed" || r["state"] == "AwaitingSecret")
            .filter_map(|r| {
                Some((
                    r["new_key"]["id"].as_str()?.to_string(),
                    r["id"].as_str()?.to_string(),
                ))
            })
            .collect();
        // Rotations that failed while issuing: the provider may hold a key
        // under their tag whose secret keyrot never saw; resuming or
        // aborting finds it by the tag and revokes it.
        let failed_issuing: BTreeSet<String> = mine
            .iter()
            .filter(|r| r["state"] == "Failed" && r["new_key"].is_null())
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        let tagged_by_failed =
            |k: &ProviderKey| !strict && k.tag.as_ref().is_some_and(|t| failed_issuing.contains(t));
        let overlap_old: BTreeSet<String> = mine
            .iter()
            .filter(|r| r["state"] == "Overlap")
            .filter_map(|r| r["old_key_id"].as_str().map(str::to_string))
            .collect();
        // I2: what each sink holds is the secret of a live key: the
        // current one (or, before an operator acts, a Failed rotation's).
        let distributed = mine.iter().any(|r| r["state"] == "Completed");
        for sink in SINKS {
            report.sink_values += 1;
            let Some(val) = sinks.iter().find(|s| s.sink == sink) else {
                if distributed {
                    v.push(format!(
                        "I2: slot {sid}: sink {sink} holds nothing, though a rotation completed"
                    ));
                }
                continue;
            };
            let held = val.key_id.clone().unwrap_or_default();
            let allowed = held == cur || (!strict && failed_new.contains_key(&held));
            if !allowed {
                v.push(format!(
                    "I2: slot {sid}: sink {sink} holds key {held}, but the live key is {cur}"
                ));
                continue;
            }
            match by_id(&held) {
                Some(k) if !k.live => v.push(format!(
                    "I2: slot {sid}: sink {sink} holds key {held}, which the provider revoked"
                )),
                Some(k) => {
                    if let Some(h) = &k.secret_sha256
                        && *h != val.secret_sha256
                    {
                        v.push(format!(
                            "I2: slot {sid}: sink {sink} holds a secret that is not key {held}'s at the provider"
                        ));
                    }
                    if let Some(ok) = accepts.get(&val.secret_sha256)
                        && !ok
                    {
                        v.push(format!(
                            "I2: slot {sid}: the secret in sink {sink} does not authenticate at the sandbox"
                        ));
                    }
                }
                None => v.push(format!(
                    "I2: slot {sid}: sink {sink} holds key {held}, unknown to the provider"
                )),
            }
        }
        // I4: every live key is accounted for.
        for k in pkeys.iter().filter(|k| k.live) {
            let ok = k.id == cur
                || overlap_old.contains(&k.id)
                || (!strict && failed_new.contains_key(&k.id))
                || tagged_by_failed(k);
            if !ok {
                v.push(format!(
                    "I4: slot {sid}: orphan key {} is live at the provider (current {cur}; rotations {:?})",
                    k.id,
                    mine.iter()
                        .map(|r| format!("{} {} new={}", r["id"], r["state"], r["new_key"]["id"]))
                        .collect::<Vec<_>>()
                ));
            }
        }
        // I5: every key keyrot issued is revoked, reached every sink, or
        // is held with its secret by a Failed rotation.
        let issued: BTreeSet<String> = mine
            .iter()
            .filter_map(|r| r["new_key"]["id"].as_str().map(str::to_string))
            .chain(pkeys.iter().map(|k| k.id.clone()))
            .filter(|id| Some(id) != slot.initial.as_ref())
            .collect();
        for id in issued {
            let k = by_id(&id);
            if k.is_none_or(|k| !k.live || tagged_by_failed(k)) {
                continue; // revoked (deleted, for IAM), or never seen
            }
            let everywhere = SINKS.iter().all(|s| {
                sinks
                    .iter()
                    .any(|val| val.sink == *s && val.key_id.as_deref() == Some(&id))
            });
            // Reached every sink when its rotation completed (a later
            // Failed rotation may since have written its own new key).
            let delivered = mine.iter().any(|r| {
                r["state"] == "Completed"
                    && r["new_key"]["id"] == id.as_str()
                    && SINKS
                        .iter()
                        .all(|s| r["sink_results"][*s]["verified_at"].is_string())
            });
            if everywhere || delivered {
                continue;
            }
            match failed_new.get(&id) {
                Some(rot) if store.secrets.contains(rot) => {}
                Some(rot) => v.push(format!(
                    "I5: slot {sid}: key {id} of failed rotation {rot} is live but its secret is gone from the store"
                )),
                None => v.push(format!(
                    "I5: slot {sid}: key {id} issued by keyrot is live, not in every sink (sinks hold {:?}) and held by no rotation: its secret is lost (current {cur}; rotations {:?})",
                    sinks.iter().map(|s| (s.sink, s.key_id.clone())).collect::<Vec<_>>(),
                    mine.iter()
                        .map(|r| format!("{} {} new={}", r["id"], r["state"], r["new_key"]["id"]))
                        .collect::<Vec<_>>()
                )),
            }
        }
        // The secret of a finished rotation is wiped from the store.
        for r in &mine {
            if r["state"] == "Completed"
                && let Some(id) = r["id"].as_str()
                && store.secrets.contains(id)
            {
                v.push(format!(
                    "rotation {id} completed but its secret is still in the store"
                ));
            }
        }
    }
}

/// Whether a provider key listed under `listed` belongs to a slot of
/// `slot_provider` (the assisted provider shares the sandbox's org).
fn provider_matches(listed: &str, slot_provider: &str) -> bool {
    listed == slot_provider || (listed == SANDBOX && slot_provider == ASSISTED)
}

/// Each run of the reload hook, by rotation: when it ran.
fn hook_runs(log: &std::path::Path) -> BTreeMap<String, Vec<Timestamp>> {
    let mut out: BTreeMap<String, Vec<Timestamp>> = BTreeMap::new();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let Some((id, ns)) = line.split_once(' ') else {
            continue;
        };
        let Some(at) = ns
            .parse::<i128>()
            .ok()
            .and_then(|n| Timestamp::from_nanosecond(n).ok())
        else {
            continue;
        };
        out.entry(id.to_string()).or_default().push(at);
    }
    out
}

/// I7: every completed rotation ran its reload hook (or recorded that a
/// run another rotation made after its secret was in place served it),
/// recorded it, and before its old key was revoked; a rotation ran it at
/// most twice (a second run only when a crash came between a run and the
/// commit recording it).
fn check_hooks(rotations: &[Value], runs: &BTreeMap<String, Vec<Timestamp>>, v: &mut Vec<String>) {
    for r in rotations.iter().filter(|r| r["state"] == "Completed") {
        let id = r["id"].as_str().unwrap_or_default();
        let note = r["hook_results"]["consumer"]["note"]
            .as_str()
            .unwrap_or_default();
        if r["hook_results"]["consumer"]["done_at"].is_null() {
            v.push(format!(
                "I7: rotation {id} completed without recording its reload hook"
            ));
        }
        // "covered by its run for rotation ID at T"
        let by = note
            .strip_prefix("covered by its run for rotation ")
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or(id);
        let mine = runs.get(id).map(Vec::as_slice).unwrap_or_default();
        let served = runs.get(by).map(Vec::as_slice).unwrap_or_default();
        let Some(first) = served.iter().chain(mine).min() else {
            v.push(format!(
                "I7: rotation {id} completed without a run of its reload hook (recorded: {note:?})"
            ));
            continue;
        };
        if mine.len() > 2 {
            v.push(format!(
                "I7: rotation {id} ran its reload hook {} times",
                mine.len()
            ));
        }
        if let Some(revoked) = ts(&r["old_revoked_at"])
            && revoked < *first
        {
            v.push(format!(
                "I7: rotation {id}: old key revoked at {revoked}, before its reload hook first ran at {first}"
            ));
        }
    }
}

/// I3 from outside keyrot: the provider revoked the old key after each
/// sink last received the new secret (OpenBao's version time, the file's
/// mtime) and after keyrot verified it.
fn check_revoke_order(
    rotations: &[Value],
    keys: &[ProviderKey],
    write_times: &BTreeMap<String, Vec<(&'static str, Timestamp)>>,
    v: &mut Vec<String>,
) {
    for r in rotations.iter().filter(|r| r["state"] == "Completed") {
        let (Some(id), Some(old)) = (r["id"].as_str(), r["old_key_id"].as_str()) else {
            continue;
        };
        let Some(revoked) = keys.iter().find(|k| k.id == old).and_then(|k| k.revoked_at) else {
            continue; // IAM deletes the key: no time kept
        };
        for (sink, t) in write_times.get(id).into_iter().flatten() {
            if *t > revoked {
                v.push(format!(
                    "I3: rotation {id}: the provider revoked old key {old} at {revoked}, before sink {sink} received the new secret at {t}"
                ));
            }
        }
        for sink in SINKS {
            if let Some(t) = ts(&r["sink_results"][sink]["verified_at"])
                && t > revoked
            {
                v.push(format!(
                    "I3: rotation {id}: the provider revoked old key {old} at {revoked}, before sink {sink} was verified at {t}"
                ));
            }
        }
    }
}
