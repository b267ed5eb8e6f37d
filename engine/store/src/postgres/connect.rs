//! `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]`: the connection
//! settings, the password (from the URL, `PGPASSWORD`, or the file named
//! by `TALE_DB_PASSWORD_FILE`), and TLS through rustls.

use std::sync::Arc;

use tokio_postgres::Config;

use super::PgError;

/// The longest a read for the API or `tale runs` may take.
pub(super) const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// How the connection is protected, as libpq's `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    /// Plain text.
    Disable,
    /// TLS when the server offers it, its certificate not verified (libpq's
    /// default).
    Prefer,
    /// TLS, its certificate not verified (libpq's meaning).
    Require,
    /// TLS, the certificate verified against the web's roots and
    /// `sslrootcert`, for the host name (`verify-ca` is taken as this).
    VerifyFull,
}

/// A parsed `--db postgres://…` URL. Its `Display` never shows the password.
#[derive(Clone)]
pub struct PgUrl {
    config: Config,
    ssl: SslMode,
    root_cert: Option<String>,
    shown: String,
    /// `tale_poll_only=true`: no `LISTEN` (PgBouncer in transaction mode
    /// cannot deliver notifications); nodes find work by polling.
    pub(super) poll_only: bool,
}

impl std::fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl std::fmt::Display for PgUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for PgUrl {
    fn eq(&self, other: &Self) -> bool {
        self.shown == other.shown
    }
}

impl Eq for PgUrl {}

impl std::str::FromStr for PgUrl {
    type Err = PgError;

    fn from_str(text: &str) -> Result<Self, PgError> {
        let bad = |why: &str| {
            PgError::Url(format!(
                "--db {why}: postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?sslmode=…]"
            ))
        };
        let mut url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(bad("is not a PostgreSQL URL"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("names no host"));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(bad("names no database"));
        }
        let mut ssl = SslMode::Prefer;
        let mut root_cert = None;
        let mut poll_only = false;
        let mut rest = Vec::new();
        for (k, v) in url.query_pairs() {
            match &*k {
                "sslmode" => {
                    ssl = match &*v {
                        "disable" => SslMode::Disable,
                        "allow" | "prefer" => SslMode::Prefer,
                        "require" => SslMode::Require,
                        "verify-ca" | "verify-full" => SslMode::VerifyFull,
                        other => return Err(bad(&format!("has an unknown sslmode `{other}`"))),
                    }
                }
                "sslrootcert" => root_cert = Some(v.into_owned()),
                "tale_poll_only" => {
                    poll_only = match &*v {
                        "true" | "1" | "on" => true,
                        "false" | "0" | "off" => false,
                        other => return Err(bad(&format!("has tale_poll_only=`{other}` (true or false)"))),
                    }
                }
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        url.set_query(None);
        if !rest.is_empty() {
            url.query_pairs_mut().extend_pairs(rest);
        }
        let mut config: Config = url
            .as_str()
            .parse()
            .map_err(|e: tokio_postgres::Error| bad(&e.to_string()))?;
        if config.get_password().is_none() {
            if let Ok(p) = std::env::var("PGPASSWORD") {
                config.password(p);
            } else if let Ok(path) = std::env::var("TALE_DB_PASSWORD_FILE") {
                let p = std::fs::read_to_string(&path).map_err(|source| PgError::PasswordFile { path, source })?;
                config.password(p.trim_end_matches(['\n', '\r']));
            }
        }
        config.ssl_mode(match ssl {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        config.application_name("tale");
        // Plan each execution for its arguments: a plan cached for a queue
        // table when it was small (a sequential scan) stays cached as the
        // table grows, and an `id = ANY($1)` of 200 ids then reads every
        // row (measured: 248 M rows read in a 15 s benchmark).
        let options = match config.get_options() {
            Some(o) => format!("{o} -c plan_cache_mode=force_custom_plan"),
            None => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(options);
        config.connect_timeout(std::time::Duration::from_secs(10));
        let mut shown = url.clone();
        let _ = shown.set_password(None);
        shown.set_query(None);
        Ok(Self {
            config,
            ssl,
            root_cert,
            shown: shown.to_string(),
            poll_only,
        })
    }
}

impl PgUrl {
    /// One connection of its own (the owner lock, migrations); its
    /// connection task is the caller's to drive.
    pub(super) async fn connect_one(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            impl Future<Output = Result<(), tokio_postgres::Error>> + use<>,
        ),
        PgError,
    > {
        let (client, connection) = match self.tls()? {
            None => {
                let (c, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                (c, futures_util::future::Either::Left(conn))
            }
            Some(tls) => {
                let (c, conn) = self.config.connect(tls).await?;
                (c, futures_util::future::Either::Right(conn))
            }
        };
        Ok((client, connection))
    }

    /// A connection that listens on `channel` and calls `heard` with the
    /// payload of every notification (and with `None` once it listens: one
    /// may have been missed while it was down). Returns when the connection
    /// ends.
    pub(super) async fn listen(&self, channel: &str, heard: &(dyn Fn(Option<&str>) + Sync)) -> Result<(), PgError> {
        match self.tls()? {
            None => {
                let (client, connection) = self.config.connect(tokio_postgres::NoTls).await?;
                relay_notifications(client, connection, channel, heard).await
            }
            Some(tls) => {
                let (client, connection) = self.config.connect(tls).await?;
                relay_notifications(client, connection, channel, heard).await
            }
        }
    }

    /// A pool of up to `size` connections for the store's steps. A
    /// transaction left idle longer than `idle` is ended by the server: a
    /// paused node (SIGSTOP, a VM frozen) must not hold its locks, the
    /// others would wait for it instead of declaring it dead.
    pub(super) fn pool(
        &self,
        size: usize,
        idle: std::time::Duration,
        flush_commits: bool,
    ) -> Result<deadpool_postgres::Pool, PgError> {
        let mut config = self.config.clone();
        // Every statement of a step looks rows up by key: a sequential scan is
        // never the right plan there, and with it ruled out a generic plan is
        // as good as one made for each execution's arguments, so plans are
        // kept instead of made again for every statement (+5 % W1).
        // `synchronous_commit` first: one set in the URL's `options` wins.
        let options = format!(
            "{}{} -c idle_in_transaction_session_timeout={} -c plan_cache_mode=auto -c enable_seqscan=off",
            if flush_commits {
                ""
            } else {
                "-c synchronous_commit=off "
            },
            config.get_options().unwrap_or_default(),
            idle.as_millis().max(1),
        );
        config.options(options.trim_start());
        self.pool_of(config, size)
    }

    /// A pool for reads a person waits for (the API, `tale runs`): a
    /// statement that runs longer than [`READ_TIMEOUT`] is cancelled
    /// instead of holding a connection and the database.
    pub(super) fn read_pool(&self, size: usize) -> Result<deadpool_postgres::Pool, PgError> {
        let mut config = self.config.clone();
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            READ_TIMEOUT.as_millis()
        );
        config.options(options.trim_start());
        self.pool_of(config, size)
    }

    fn pool_of(&self, config: Config, size: usize) -> Result<deadpool_postgres::Pool, PgError> {
        let settings = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        let manager = match self.tls()? {
            None => deadpool_postgres::Manager::from_config(config, tokio_postgres::NoTls, settings),
            Some(tls) => deadpool_postgres::Manager::from_config(config, tls, settings),
        };
        deadpool_postgres::Pool::builder(manager)
            .max_size(size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| PgError::Pool(e.to_string()))
    }

    /// The TLS connector for the mode; `None` for plain text.
    fn tls(&self) -> Result<Option<tokio_postgres_rustls::MakeRustlsConnect>, PgError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PgError::Tls(e.to_string()))?;
        let client = match self.ssl {
            SslMode::Disable => return Ok(None),
            SslMode::Prefer | SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth(),
            SslMode::VerifyFull => {
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                if let Some(path) = &self.root_cert {
                    use rustls::pki_types::pem::PemObject;
                    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                        .map_err(|e| PgError::Tls(format!("cannot read sslrootcert {path}: {e}")))?;
                    for cert in certs {
                        let cert = cert.map_err(|e| PgError::Tls(format!("sslrootcert {path}: {e}")))?;
                        roots
                            .add(cert)
                            .map_err(|e| PgError::Tls(format!("sslrootcert {path}: {e}")))?;
                    }
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
        };
        Ok(Some(tokio_postgres_rustls::MakeRustlsConnect::new(client)))
    }
}

/// `sslmode=require` as libpq means it: encrypted, the server not verified.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Drives a listening connection (its messages are read here, not by a
/// spawned task, to see the notifications).
async fn relay_notifications<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
    channel: &str,
    heard: &(dyn Fn(Option<&str>) + Sync),
) -> Result<(), PgError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::StreamExt;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let sql = format!("LISTEN {channel}");
    let listen = client.batch_execute(&sql);
    tokio::pin!(listen);
    let mut listening = false;
    loop {
        tokio::select! {
            done = &mut listen, if !listening => {
                done?;
                listening = true;
                heard(None);
            }
            message = messages.next() => match message {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => heard(Some(n.payload())),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => return Ok(()),
            },
        }
    }
}
