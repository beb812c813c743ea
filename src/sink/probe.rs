//! Placeholder: `keyrot sink test` probe.
