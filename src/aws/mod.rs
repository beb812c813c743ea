//! AWS request signing (SigV4 with the `aws-sigv4` crate) and credentials,
//! shared by the Secrets Manager sink and the IAM provider.
