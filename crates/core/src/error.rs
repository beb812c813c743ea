//! The error of a call to a provider or sink: transient (retry with backoff,
//! honouring Retry-After) or permanent (fail the step at once). Messages
//! carry ids and statuses, never secret values.

use jiff::SignedDuration;

/// An external call failed.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong, without secret material.
    pub message: String,
    /// Worth retrying (timeouts, 5xx, 429, connection errors).
    pub transient: bool,
    /// The peer asked us to wait this long (Retry-After).
    pub retry_after: Option<SignedDuration>,
}

impl CallError {
    /// A failure worth retrying.
    pub fn transient(message: impl Into<String>) -> CallError {
        CallError {
            message: message.into(),
            transient: true,
            retry_after: None,
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> CallError {
        CallError {
            message: message.into(),
            transient: false,
            retry_after: None,
        }
    }

    /// A failure to start a program or reach a peer, from the OS error:
    /// transient when the process or system is short of file descriptors,
    /// processes or memory (it passes as load drops), else permanent.
    pub fn from_io(message: impl Into<String>, e: &std::io::Error) -> CallError {
        if resource_exhausted(e) {
            CallError::transient(message)
        } else {
            CallError::permanent(message)
        }
    }

    /// Adds a Retry-After.
    pub fn with_retry_after(mut self, after: SignedDuration) -> CallError {
        self.retry_after = Some(after);
        self
    }
}

/// Whether an OS error means a resource ran short for a while (file
/// descriptors, processes, memory, a busy executable), not that the call
/// can never succeed.
pub fn resource_exhausted(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::EAGAIN
                | libc::ENOMEM
                | libc::ENOBUFS
                | libc::ETXTBSY
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_transient() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::EAGAIN, libc::ENOMEM] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert!(CallError::from_io("start", &e).transient, "{e}");
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC] {
            let e = std::io::Error::from_raw_os_error(errno);
            assert!(!CallError::from_io("start", &e).transient, "{e}");
        }
    }
}
