//! OpenBao/Vault client: token and AppRole auth, shared by the KV v2 sink
//! and the AppRole provider.
