//! Which rotation a listed key says it was issued for: keyrot's tag as
//! each provider carries it in [`KeyInfo::tags`]. The `local` and `http`
//! providers call it `keyrot-rotation`; `openbao-approle` (secret-id
//! metadata) and `exec` (the program's answer) `keyrot_rotation`;
//! `aws-iam` puts `keyrot-rotation` on the key its user's issuing tag
//! attributes to a rotation (IAM cannot tag an access key itself).
//! Atlassian keys carry no tag. The orphan sweep
//! (`keyrot_engine::scheduler::orphans`) is built on this.

use keyrot_core::model::KeyInfo;

/// The tag names keyrot writes for a key's rotation id.
pub const ROTATION_TAGS: [&str; 2] = ["keyrot-rotation", "keyrot_rotation"];

/// The rotation id `key`'s tag names, if it carries keyrot's tag (an empty
/// value counts as none).
pub fn rotation_tag(key: &KeyInfo) -> Option<&str> {
    ROTATION_TAGS
        .iter()
        .find_map(|t| key.tags.get(*t))
        .map(String::as_str)
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tags: &[(&str, &str)]) -> KeyInfo {
        KeyInfo {
            id: "k".into(),
            name: "n".into(),
            scopes: Vec::new(),
            created_by: None,
            created_at: None,
            expires_at: None,
            last_used_at: None,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        }
    }

    #[test]
    fn either_spelling_names_the_rotation_and_nothing_else_does() {
        assert_eq!(rotation_tag(&key(&[("keyrot-rotation", "r1")])), Some("r1"));
        assert_eq!(rotation_tag(&key(&[("keyrot_rotation", "r2")])), Some("r2"));
        assert_eq!(rotation_tag(&key(&[("keyrot_rotation", "")])), None);
        assert_eq!(rotation_tag(&key(&[("status", "Active")])), None);
        assert_eq!(rotation_tag(&key(&[])), None);
    }
}
