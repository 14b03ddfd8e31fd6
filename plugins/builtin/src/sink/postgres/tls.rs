//! Connecting to the server: plain or through rustls on the ring provider (the one provider
//! the whole build uses; no openssl, native-tls or aws-lc).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::{Host, SslMode};

use super::TlsMode;

/// Where and how to connect. Its `Debug` names the host and user, never the password.
pub(super) struct Connect {
    config: tokio_postgres::Config,
    /// `None` for `tls = "disable"`.
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for Connect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Connect {
    pub(super) fn new(
        mut config: tokio_postgres::Config,
        mode: TlsMode,
        ca_file: Option<&Path>,
    ) -> Result<Self, String> {
        let ssl_mode = match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => SslMode::Require,
        };
        config.ssl_mode(ssl_mode);
        let tls = match mode {
            TlsMode::Disable => None,
            TlsMode::Prefer | TlsMode::Require => Some(client_config(Verify::Nothing)?),
            TlsMode::VerifyFull => Some(client_config(Verify::Roots(roots(ca_file)?))?),
        };
        Ok(Connect {
            config,
            tls: tls.map(tokio_postgres_rustls::MakeRustlsConnect::new),
        })
    }

    /// `host:port as user, database db`, for messages.
    pub(super) fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            #[cfg(unix)]
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "?".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let user = self.config.get_user().unwrap_or("?");
        let db = self.config.get_dbname().unwrap_or(user);
        format!("{host}:{port} as {user}, database {db}")
    }

    /// A new connection; its driver runs on its own task until the client is dropped.
    pub(super) async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        match &self.tls {
            None => {
                let (client, conn) = self.config.connect(tokio_postgres::NoTls).await?;
                tokio::spawn(drive(conn));
                Ok(client)
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await?;
                tokio::spawn(drive(conn));
                Ok(client)
            }
        }
    }
}

async fn drive<F: std::future::Future<Output = Result<(), tokio_postgres::Error>>>(conn: F) {
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "postgres connection closed");
    }
}

enum Verify {
    /// `prefer` and `require`: encrypted, the certificate not checked (as libpq).
    Nothing,
    Roots(rustls::RootCertStore),
}

fn client_config(verify: Verify) -> Result<rustls::ClientConfig, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(match verify {
        Verify::Roots(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
    })
}

/// The CAs of `ca_file`, or the system's.
fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(match ca_file {
            Some(path) => format!("{} holds no usable CA certificate", path.display()),
            None => "no system CA certificates found: set ca_file".into(),
        });
    }
    Ok(roots)
}

/// Accepts any certificate, still checking the handshake signatures: what `prefer` and
/// `require` mean for libpq.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
