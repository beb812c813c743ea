//! Azure Key Vault emulator (being written).
