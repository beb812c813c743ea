//! What the peers hold, read without keyrot: the provider's keys (the
//! sandbox's Admin API list and state file, IAM `ListAccessKeys` and moto's
//! data, the local provider's registry in the store), each sink's value
//! and write time (the JSON file, OpenBao KV v2), and, with the daemon
//! stopped, the store opened without the master key (sealed secrets,
//! outbox): the redb file, or the PostgreSQL database.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use jiff::Timestamp;
use serde_json::Value;

use super::super::Sandbox;
use super::super::peers::{bao_api, curl};
use super::world::World;
use super::{ADMIN_API, Case, IAM, LOCAL, SANDBOX, Slot, sha256_hex, ts};

impl World {
    /// Every key the provider side holds for the world's slots (revoked
    /// ones too where the provider keeps them). `store` is the daemon's
    /// store, needed for the local provider's registry.
    pub(super) fn provider_keys(
        &self,
        store: Option<&StoreView>,
        users: &[String],
    ) -> Vec<ProviderKey> {
        let mut out = Vec::new();
        if let Some(sb) = &self.sandbox {
            out.extend(sandbox_keys(sb));
        }
        if let Some(moto) = &self.moto {
            // Liveness from ListAccessKeys (what IAM holds now); secrets
            // from moto's data dump, which also lists deleted keys.
            let data = curl(&[&format!("{}/moto-api/data.json", moto.url)]);
            let v: Value = serde_json::from_slice(&data.stdout).unwrap();
            let secrets: BTreeMap<String, String> = v["iam"]["AccessKey"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|k| {
                    Some((
                        k["access_key_id"].as_str()?.to_string(),
                        sha256_hex(k["secret_access_key"].as_str()?),
                    ))
                })
                .collect();
            for user in users {
                let xml = self.iam(&format!("Action=ListAccessKeys&UserName={user}"));
                for id in xml_texts(&xml, "AccessKeyId") {
                    out.push(ProviderKey {
                        provider: IAM.into(),
                        secret_sha256: secrets.get(&id).cloned(),
                        id,
                        name: user.clone(),
                        live: true,
                        revoked_at: None,
                        tag: None,
                    });
                }
            }
        }
        if let Some(st) = store {
            out.extend(st.local_keys.iter().cloned());
        }
        out
    }
}

/// The text of every `<tag>...</tag>` in `xml`, in order.
fn xml_texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(t, _)| t.to_string()))
        .collect()
}

/// The sandbox's keys: liveness from its Admin API list (as keyrot sees
/// it), revoke times and secret hashes from its state file.
fn sandbox_keys(sb: &Sandbox) -> Vec<ProviderKey> {
    let admin = sb.seeded_secret("keyrot");
    let mut live = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{}{ADMIN_API}/api-keys?limit=100", sb.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let out = sb.curl(&["-H", &format!("Authorization: Bearer {admin}"), &url]);
        let page: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sandbox list: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        for k in page["data"].as_array().cloned().unwrap_or_default() {
            live.insert(
                k["id"].as_str().unwrap_or_default().to_string(),
                k["status"] == "ACTIVE",
            );
        }
        match page["links"]["next"].as_str() {
            Some(n) if !n.is_empty() => cursor = Some(n.to_string()),
            _ => break,
        }
    }
    let state: Value =
        serde_json::from_str(&fs::read_to_string(sb.dir.join("sandbox-state.json")).unwrap())
            .unwrap();
    // The rotation id keyrot sent as `Idempotency-Key` is the key's tag: the
    // first attempt sends the rotation id, a retry after an interrupted
    // issue sends `ROTATION.ATTEMPT` (so the server does not answer with
    // the key that attempt made, which keyrot revokes).
    let tags: BTreeMap<String, String> = state["idempotentRotations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            Some((
                r["newApiKeyId"].as_str()?.to_string(),
                r["key"].as_str()?.split('.').next()?.to_string(),
            ))
        })
        .collect();
    state["orgs"]["demo-org"]["apiKeys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|k| {
            let id = k["id"].as_str().unwrap_or_default().to_string();
            ProviderKey {
                provider: SANDBOX.into(),
                live: live.get(&id).copied().unwrap_or(false),
                name: k["name"].as_str().unwrap_or_default().into(),
                revoked_at: ts(&k["revokedAt"]),
                secret_sha256: k["secretSha256"].as_str().map(str::to_string),
                tag: tags.get(&id).cloned(),
                id,
            }
        })
        .collect()
}

/// A key as the provider side holds it.
#[derive(Clone, Debug)]
pub struct ProviderKey {
    /// Which provider.
    pub provider: String,
    /// Key id.
    pub id: String,
    /// Key name (IAM: the user).
    pub name: String,
    /// Usable now.
    pub live: bool,
    /// When the provider revoked it, where it keeps that.
    pub revoked_at: Option<Timestamp>,
    /// SHA-256 of its secret, where the provider keeps it.
    pub secret_sha256: Option<String>,
    /// The rotation id it was issued under (tag or idempotency key),
    /// where the provider keeps it.
    pub tag: Option<String>,
}

/// What the store holds that only it can tell (read with the daemon stopped).
#[derive(Default)]
pub struct StoreView {
    /// The local provider's registry.
    pub local_keys: Vec<ProviderKey>,
    /// Rotations whose sealed secret is still in the store.
    pub secrets: BTreeSet<String>,
    /// Outbox messages not delivered: (id, state).
    pub undelivered: Vec<(String, String)>,
}

impl StoreView {
    /// Reads `store` (opened without the master key: the daemon's redb
    /// file once it stopped, or its PostgreSQL database).
    pub fn read(store: &keyrot_core::store::Store, rotation_ids: &[String]) -> StoreView {
        let now = crate::common::wall_now();
        let local_keys = store
            .local_keys()
            .unwrap()
            .into_iter()
            .map(|k| ProviderKey {
                provider: LOCAL.into(),
                live: k.revoked_at.is_none() && k.expires_at.is_none_or(|e| e > now),
                id: k.id,
                name: k.name,
                revoked_at: k.revoked_at,
                secret_sha256: Some(k.secret_sha256),
                tag: k.tag,
            })
            .collect();
        let secrets = rotation_ids
            .iter()
            .filter(|id| store.has_secret(id).unwrap())
            .cloned()
            .collect();
        let undelivered = store
            .outbox()
            .unwrap()
            .into_iter()
            .filter(|m| m.state != keyrot_core::model::DeliveryState::Sent)
            .map(|m| (m.id, format!("{:?}", m.state)))
            .collect();
        StoreView {
            local_keys,
            secrets,
            undelivered,
        }
    }
}

/// A sink's value for a slot.
#[derive(Clone, Debug)]
pub struct SinkValue {
    /// Which sink.
    pub sink: &'static str,
    /// SHA-256 of the secret.
    pub secret_sha256: String,
    /// The secret (to authenticate with at the sandbox).
    pub secret: String,
    /// The key id keyrot wrote beside it.
    pub key_id: Option<String>,
}

impl Case<'_> {
    /// The sinks' values for `slot`.
    pub(super) fn sink_values(&self, slot: &Slot) -> Vec<SinkValue> {
        let mut out = Vec::new();
        if let Some(v) = self.d.sink(&slot.name)
            && let Some(secret) = v["secret"].as_str()
        {
            out.push(SinkValue {
                sink: "out",
                secret_sha256: sha256_hex(secret),
                secret: secret.to_string(),
                key_id: v["key_id"].as_str().map(str::to_string),
            });
        }
        let (code, body) = bao_api(
            &self.world.bao,
            "GET",
            &format!("secret/data/keyrot/{}/{}", slot.provider, slot.name),
            None,
        );
        if code == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            if let Some(secret) = v["data"]["data"]["secret"].as_str() {
                out.push(SinkValue {
                    sink: "bao",
                    secret_sha256: sha256_hex(secret),
                    secret: secret.to_string(),
                    key_id: v["data"]["metadata"]["custom_metadata"]["keyrot_key_id"]
                        .as_str()
                        .map(str::to_string),
                });
            }
        }
        out
    }

    /// When each sink was last written with the secret hashing to
    /// `sha`: OpenBao's version time, the file's mtime.
    pub(super) fn sink_write_times(
        &self,
        slot: &Slot,
        sha: &str,
    ) -> Vec<(&'static str, Timestamp)> {
        let mut out = Vec::new();
        let file = self.d.dir.join("out").join(format!("{}.json", slot.name));
        if let Some(v) = self.d.sink(&slot.name)
            && v["secret"].as_str().map(sha256_hex).as_deref() == Some(sha)
            && let Ok(m) = fs::metadata(&file).and_then(|m| m.modified())
        {
            out.push(("out", Timestamp::try_from(m).unwrap()));
        }
        let path = format!("keyrot/{}/{}", slot.provider, slot.name);
        let (code, body) = bao_api(
            &self.world.bao,
            "GET",
            &format!("secret/metadata/{path}"),
            None,
        );
        if code == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            for (n, meta) in v["data"]["versions"]
                .as_object()
                .cloned()
                .unwrap_or_default()
            {
                let (c, b) = bao_api(
                    &self.world.bao,
                    "GET",
                    &format!("secret/data/{path}?version={n}"),
                    None,
                );
                if c != 200 {
                    continue;
                }
                let d: Value = serde_json::from_str(&b).unwrap();
                if d["data"]["data"]["secret"]
                    .as_str()
                    .map(sha256_hex)
                    .as_deref()
                    == Some(sha)
                    && let Some(t) = ts(&meta["created_time"])
                {
                    out.push(("bao", t));
                }
            }
        }
        out
    }

    /// Whether `secret` authenticates at the sandbox's Admin API.
    pub(super) fn sandbox_accepts(&self, secret: &str) -> bool {
        let sb = self.world.sb();
        let out = sb.curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("Authorization: Bearer {secret}"),
            &format!("{}{ADMIN_API}/api-keys/count", sb.url),
        ]);
        matches!(String::from_utf8_lossy(&out.stdout).trim(), "200" | "403")
    }
}
