//! Mail transports: turns an outbox message into an email (stable
//! `Message-ID <{id}@{from's domain}>`, plain text with an optional HTML
//! alternative) and hands it to the configured transport: `.eml` files, an
//! SMTP server (STARTTLS, implicit TLS or plain to a loopback host; AUTH
//! with a password read from its secret reference when the transport is
//! built; one pooled connection reused between messages), or the local
//! `sendmail` program (run with a cleared environment; nothing secret is in
//! its arguments: `-i -f FROM -- RECIPIENT...`).
//!
//! What it does not own: when to send and what to do with a failure (the
//! sender in `sender.rs`), and what a message says (`message.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use lettre::address::{Address, Envelope};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use keyrot_config::{NotifyConfig, NotifyTransport, SendmailConfig, SmtpConfig, SmtpSecurity};
use keyrot_core::error::CallError;
use keyrot_core::model::OutboxMessage;

/// `Auto-Submitted: auto-generated` (RFC 3834): no vacation replies.
const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");

/// `List-Id` (RFC 2919): one list per From domain, so a mail filter can
/// sort keyrot's messages by a header rather than by subject.
const LIST_ID: HeaderName = HeaderName::new_from_ascii_str("List-Id");

/// SMTP reply codes that mean "your credentials": the password is read
/// again before the next attempt.
const AUTH_CODES: [&str; 5] = ["454", "530", "534", "535", "538"];

/// Most of a sendmail program's stdout kept (it should print nothing).
const SENDMAIL_MAX_STDOUT: usize = 64 * 1024;

/// A built transport for one `[notify]` configuration.
pub struct Mailer {
    /// The configuration it was built from.
    pub config: NotifyConfig,
    /// The From mailbox.
    from: Mailbox,
    /// How messages leave.
    kind: Kind,
    /// This installation's id (the store's), which every Message-ID
    /// carries so that installations sharing a mail domain never send
    /// the same one; none until [`Mailer::set_installation`].
    installation: Option<String>,
}

/// The transports.
enum Kind {
    /// `transport = "none"`: nothing is sent.
    None,
    /// `.eml` files in a directory.
    File(PathBuf),
    /// An SMTP server, through a connection pool.
    Smtp {
        /// The pooled transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Settings, for messages.
        settings: SmtpConfig,
        /// The AUTH password, to cut out of any server answer.
        password: Option<SecretString>,
    },
    /// The local MTA's sendmail program.
    Sendmail(SendmailConfig),
}

/// A delivery that did not (fully) happen.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong (never a secret or a body).
    pub error: CallError,
    /// Set when some recipients got the message and these did not: a
    /// retry goes to them only.
    pub remaining: Option<Vec<String>>,
    /// The server refused the credentials: read the password again.
    pub auth: bool,
    /// The server (or sendmail) answered and refused this message, so one
    /// delivery per recipient may get some through. False for a failure
    /// before any answer (connection, TLS handshake): trying again per
    /// recipient would only repeat the same error once per recipient.
    pub refused: bool,
}

impl Failure {
    /// A failure for every recipient, before any answer about the message.
    pub(super) fn all(error: CallError) -> Failure {
        Failure {
            error,
            remaining: None,
            auth: false,
            refused: false,
        }
    }
}

impl Mailer {
    /// Builds the transport of `cfg`: reads the SMTP password (credentials
    /// from `credentials_dir`) and the CA file. Call it inside the tokio
    /// runtime (the SMTP pool starts a task).
    pub async fn build(
        cfg: &NotifyConfig,
        credentials_dir: Option<PathBuf>,
    ) -> Result<Mailer, CallError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|e| CallError::permanent(format!("[notify] from {:?}: {e}", cfg.from)))?;
        let kind = match &cfg.transport {
            NotifyTransport::None => Kind::None,
            NotifyTransport::File { dir } => Kind::File(dir.clone()),
            NotifyTransport::Sendmail(s) => Kind::Sendmail(s.clone()),
            NotifyTransport::Smtp(s) => {
                let settings = s.clone();
                let (password, ca) = tokio::task::spawn_blocking(move || {
                    read_smtp_inputs(&settings, credentials_dir)
                })
                .await
                .map_err(|e| CallError::transient(format!("[notify]: {e}")))??;
                let transport = smtp_transport(s, password.as_ref(), ca.as_deref())?;
                Kind::Smtp {
                    transport,
                    settings: s.clone(),
                    password,
                }
            }
        };
        Ok(Mailer {
            config: cfg.clone(),
            from,
            kind,
            installation: None,
        })
    }

    /// True for `transport = "none"`.
    pub fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// Where messages go, for logs and `keyrot notify test`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::None => "no transport (transport = \"none\")".to_string(),
            Kind::File(dir) => format!("file: .eml files in {}", dir.display()),
            Kind::Smtp { settings: s, .. } => {
                let mut out = format!("smtp {} ({}", server(s), s.security.as_str());
                if let Some(a) = &s.auth {
                    let _ = write!(out, ", AUTH as {}", a.username);
                }
                out.push(')');
                out
            }
            Kind::Sendmail(s) => format!("sendmail: {}", s.command.display()),
        }
    }

    /// Sets the installation id Message-IDs carry.
    pub fn set_installation(&mut self, id: Option<String>) {
        self.installation = id;
    }

    /// The Message-ID of outbox message `id`: `<id.INSTALLATION@domain>`
    /// (`<id@domain>` before an installation is set), the domain being
    /// the From address's, so it is the same on every attempt and after a
    /// restart, and unique between installations. Characters a Message-ID
    /// cannot hold are written `=XX`.
    pub fn message_id(&self, id: &str) -> String {
        match &self.installation {
            Some(inst) => self.bare_message_id(&format!("{id}.{inst}")),
            None => self.bare_message_id(id),
        }
    }

    /// `<id@domain>`, `id` escaped.
    fn bare_message_id(&self, id: &str) -> String {
        let mut left = String::with_capacity(id.len());
        for c in id.chars() {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                left.push(c);
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(left, "={b:02X}");
                }
            }
        }
        format!("<{left}@{}>", self.from.email.domain())
    }

    /// The `List-Id` of every message: `keyrot <keyrot.DOMAIN>`, DOMAIN
    /// being the From address's.
    pub fn list_id(&self) -> String {
        format!("keyrot <keyrot.{}>", self.from.email.domain())
    }

    /// The email for outbox message `m`, addressed to all of `m.to`.
    pub fn email(&self, m: &OutboxMessage) -> Result<Message, CallError> {
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(m.subject.clone())
            .message_id(Some(self.message_id(&m.id)))
            .raw_header(HeaderValue::new(AUTO_SUBMITTED, "auto-generated".into()))
            .raw_header(HeaderValue::new(LIST_ID, self.list_id()));
        // A rotation's (or a key's) messages thread under one root id.
        if let Some(t) = &m.thread {
            let root = self.message_id(t);
            b = b.in_reply_to(root.clone()).references(root);
        }
        for to in &m.to {
            b = b.to(mailbox(to)?);
        }
        let built = match &m.html {
            Some(html) => b.multipart(MultiPart::alternative_plain_html(
                m.body.clone(),
                html.clone(),
            )),
            None => b.singlepart(SinglePart::plain(m.body.clone())),
        };
        built.map_err(|e| CallError::permanent(format!("message {}: {e}", m.id)))
    }

    /// Delivers `m` to every recipient in `m.to`. When the transport
    /// refuses it permanently (5xx, or a sendmail usage/data error) and it
    /// has several recipients, it is tried once per recipient, so that one
    /// refused address does not hold the others back; the failure then
    /// lists the recipients that did not get it.
    pub async fn send(&self, m: &OutboxMessage) -> Result<(), Failure> {
        let email = self.email(m).map_err(Failure::all)?;
        let raw = email.formatted();
        let rcpts =
            m.to.iter()
                .map(|t| mailbox(t).map(|mb| mb.email))
                .collect::<Result<Vec<Address>, _>>()
                .map_err(Failure::all)?;
        let first = match self.deliver(&raw, &rcpts).await {
            Ok(()) => return Ok(()),
            Err(f) => f,
        };
        if first.error.transient || first.auth || !first.refused || rcpts.len() < 2 {
            return Err(first);
        }
        let mut refused = Vec::new();
        let mut errors = Vec::new();
        for r in &rcpts {
            if let Err(f) = self.deliver(&raw, std::slice::from_ref(r)).await {
                errors.push(format!("{r}: {}", f.error.message));
                refused.push((r.to_string(), f));
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        let delivered = rcpts.len() - refused.len();
        let transient = refused.iter().any(|(_, f)| f.error.transient);
        let auth = refused.iter().any(|(_, f)| f.auth);
        let message = format!(
            "delivered to {delivered} of {} recipient(s); not to {}",
            rcpts.len(),
            errors.join("; ")
        );
        Err(Failure {
            error: CallError {
                message,
                transient,
                retry_after: None,
            },
            remaining: (delivered > 0).then(|| refused.into_iter().map(|(r, _)| r).collect()),
            auth,
            refused: true,
        })
    }

    /// One delivery of the formatted message `raw` to `rcpts`.
    async fn deliver(&self, raw: &[u8], rcpts: &[Address]) -> Result<(), Failure> {
        let envelope = Envelope::new(Some(self.from.email.clone()), rcpts.to_vec())
            .map_err(|e| Failure::all(CallError::permanent(format!("envelope: {e}"))))?;
        match &self.kind {
            Kind::None => Ok(()),
            Kind::File(dir) => {
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    Failure::all(CallError::transient(format!(
                        "creating {}: {e}",
                        dir.display()
                    )))
                })?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send_raw(&envelope, raw)
                    .await
                    .map(drop)
                    .map_err(|e| {
                        Failure::all(CallError::transient(format!(
                            "writing mail to {}: {e}",
                            dir.display()
                        )))
                    })
            }
            Kind::Smtp {
                transport,
                settings,
                password,
            } => match transport.send_raw(&envelope, raw).await {
                Ok(_) => Ok(()),
                Err(e) => Err(smtp_failure(settings, &e, password.as_ref())),
            },
            Kind::Sendmail(s) => sendmail(s, &envelope, raw).await.map_err(|error| Failure {
                // sendmail ran and refused it (usage or data error).
                refused: !error.transient,
                ..Failure::all(error)
            }),
        }
    }

    /// Closes pooled connections (QUIT).
    pub async fn shutdown(&self) {
        if let Kind::Smtp { transport, .. } = &self.kind {
            transport.shutdown().await;
        }
    }
}

/// Reads what building the transport of `cfg` reads (the SMTP password,
/// the CA file) and checks the TLS settings, without connecting and
/// without a runtime: for `keyrot check` and a fail-fast start.
pub fn preflight(cfg: &NotifyConfig, credentials_dir: Option<PathBuf>) -> Result<(), CallError> {
    let _: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| CallError::permanent(format!("[notify] from {:?}: {e}", cfg.from)))?;
    if let NotifyTransport::Smtp(s) = &cfg.transport {
        let (_password, ca) = read_smtp_inputs(s, credentials_dir)?;
        tls_parameters(s, ca.as_deref())?;
    }
    Ok(())
}

/// `host:port` (IPv6 in brackets).
fn server(s: &SmtpConfig) -> String {
    if s.host.contains(':') {
        format!("[{}]:{}", s.host, s.port)
    } else {
        format!("{}:{}", s.host, s.port)
    }
}

/// A recipient or sender address.
fn mailbox(text: &str) -> Result<Mailbox, CallError> {
    text.parse()
        .map_err(|e| CallError::permanent(format!("address {text:?}: {e}")))
}

/// Reads the SMTP password and the CA file (blocking file reads).
fn read_smtp_inputs(
    s: &SmtpConfig,
    credentials_dir: Option<PathBuf>,
) -> Result<(Option<SecretString>, Option<Vec<u8>>), CallError> {
    let password = match &s.auth {
        None => None,
        Some(a) => Some(
            a.password
                .resolve(credentials_dir.as_deref())
                .map_err(|e| {
                    CallError::permanent(format!("[notify] `password` ({}): {e}", a.password))
                })?,
        ),
    };
    let ca = match &s.ca_file {
        None => None,
        Some(path) => Some(read_ca(path)?),
    };
    Ok((password, ca))
}

/// Reads a PEM file that must hold at least one certificate.
fn read_ca(path: &Path) -> Result<Vec<u8>, CallError> {
    let pem = std::fs::read(path)
        .map_err(|e| CallError::permanent(format!("[notify] `ca_file` {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
        return Err(CallError::permanent(format!(
            "[notify] `ca_file` {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(pem)
}

/// The pooled SMTP transport of `s`.
fn smtp_transport(
    s: &SmtpConfig,
    password: Option<&SecretString>,
    ca: Option<&[u8]>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, CallError> {
    let who = format!("[notify] smtp {}", server(s));
    let timeout = std::time::Duration::try_from(s.timeout)
        .map_err(|_| CallError::permanent(format!("{who}: `timeout` must be positive")))?;
    let tls = match (s.security, tls_parameters(s, ca)?) {
        (SmtpSecurity::Tls, Some(params)) => Tls::Wrapper(params),
        (SmtpSecurity::StartTls, Some(params)) => Tls::Required(params),
        _ => Tls::None,
    };
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host.as_str())
        .port(s.port)
        .timeout(Some(timeout))
        .tls(tls)
        .pool_config(
            PoolConfig::new()
                .max_size(2)
                .idle_timeout(std::time::Duration::from_secs(60)),
        );
    if let (Some(a), Some(p)) = (&s.auth, password) {
        // lettre keeps the password as a String for as long as the
        // transport lives: every new pooled connection authenticates.
        b = b.credentials(Credentials::new(
            a.username.clone(),
            p.expose_secret().to_string(),
        ));
    }
    Ok(b.build())
}

/// The TLS parameters of `s` (none for `security = "none"`): the system's
/// roots plus the certificates of `ca` (the `ca_file`'s PEM).
fn tls_parameters(s: &SmtpConfig, ca: Option<&[u8]>) -> Result<Option<TlsParameters>, CallError> {
    if s.security == SmtpSecurity::None {
        return Ok(None);
    }
    let who = format!("[notify] smtp {}", server(s));
    let mut params = TlsParameters::builder(s.host.clone());
    if let Some(pem) = ca {
        let cert = Certificate::from_pem(pem)
            .map_err(|e| CallError::permanent(format!("{who}: `ca_file`: {e}")))?;
        params = params.add_root_certificate(cert);
    }
    params
        .build()
        .map(Some)
        .map_err(|e| CallError::permanent(format!("{who}: TLS settings: {e}")))
}

/// Maps a lettre SMTP error: a 5xx reply, a client-side refusal (no
/// common AUTH mechanism, 8-bit text to a 7-bit server) and a certificate
/// that is not trusted are permanent; 4xx, timeouts and connection errors
/// transient.
fn smtp_failure(
    s: &SmtpConfig,
    e: &lettre::transport::smtp::Error,
    password: Option<&SecretString>,
) -> Failure {
    let code = e.status().map(|c| c.to_string());
    let auth = code.as_deref().is_some_and(|c| AUTH_CODES.contains(&c))
        || (e.is_client() && e.to_string().contains("authentication"));
    let text = e.to_string();
    // lettre reports a failed handshake as a connection error.
    let untrusted = text.contains("certificate");
    // Implicit TLS to a port that greets in plain text: rustls reads the
    // "220 ..." greeting as a record of an unknown type. Retrying cannot
    // help until the configuration changes.
    let plain_port = s.security == SmtpSecurity::Tls
        && (text.contains("InvalidContentType") || text.contains("corrupt message"));
    let mut message = format!("smtp {}: {text}", server(s));
    if untrusted {
        message.push_str(
            " (the server's certificate is not trusted for this `host`: check `host`, or set `ca_file` to the CA that signed it)",
        );
    }
    if plain_port {
        let _ = write!(
            message,
            " (port {} does not speak TLS from the first byte, which `security = \"tls\"` needs: \
             for a submission port such as 587 set `security = \"starttls\"`, or set `port` to the \
             server's implicit-TLS port, usually 465)",
            s.port
        );
    }
    let mut error = if e.is_permanent() || e.is_client() || e.is_tls() || untrusted || plain_port {
        CallError::permanent(message)
    } else {
        CallError::transient(message)
    };
    if let Some(p) = password {
        error = keyrot_peers::http::redact(error, p.expose_secret());
    }
    Failure {
        error,
        remaining: None,
        auth,
        refused: code.is_some(),
    }
}

/// Runs `sendmail -i -f FROM -- RECIPIENT...` with the message on stdin.
/// Exit 0 is delivered; the sysexits codes decide transient or permanent
/// (see [`keyrot_peers::exec`]).
async fn sendmail(s: &SendmailConfig, envelope: &Envelope, raw: &[u8]) -> Result<(), CallError> {
    let mut argv = vec![s.command.display().to_string(), "-i".to_string()];
    if let Some(from) = envelope.from() {
        argv.extend(["-f".to_string(), from.to_string()]);
    }
    argv.push("--".to_string());
    argv.extend(envelope.to().iter().map(ToString::to_string));
    let env = std::collections::BTreeMap::new();
    let program = keyrot_peers::exec::Program {
        who: "[notify] sendmail",
        what: "command",
        argv: &argv,
        env: &env,
        vars: Vec::new(),
        timeout: s.timeout,
        max_stdout: SENDMAIL_MAX_STDOUT,
    };
    let run = program.run(Some(raw)).await?;
    if run.code == Some(0) {
        Ok(())
    } else {
        Err(run.failure("[notify] sendmail", "command", None))
    }
}

#[cfg(test)]
mod tests;
