//! TLS for every HTTP client of the process: one rustls configuration, built once and
//! shared, whose trust roots are read on the first certificate check and not before.
//!
//! Reading and parsing the system CA bundle costs tens of milliseconds of CPU, and
//! reqwest's own TLS set-up does it for every `Client` it builds. Most deployments talk
//! plain http to the NecroCode services and the model server, so a process pays that for
//! nothing, several times over. Here the certificate verifier ([`LazyPlatformVerifier`])
//! wraps `rustls_platform_verifier::Verifier` and builds it (which reads the roots) only
//! when a server presents a certificate: a process that never makes an https call never
//! reads them, and one that does reads them once.
//!
//! On Linux the platform verifier takes its roots from `rustls-native-certs`: the files
//! named by `SSL_CERT_FILE` and `SSL_CERT_DIR` when either is set (and only those), the
//! OpenSSL locations (`openssl-probe`) otherwise.
//!
//! The crypto is rustls on ring, as for kube; [`install_crypto_provider`] makes ring the
//! process default for the rustls users that build their own configuration.

use std::sync::{Arc, LazyLock, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// Protocols offered in ALPN, in preference order: what reqwest offers with its own TLS
/// set-up (it leaves ALPN to a configuration it is given).
const ALPN_HTTP2_AND_HTTP1: [&[u8]; 2] = [b"h2", b"http/1.1"];
/// For clients held to HTTP/1.1 (`http1_only`), which a server's `h2` would override.
const ALPN_HTTP1: [&[u8]; 1] = [b"http/1.1"];

/// The one verifier, kept apart from the configuration so [`platform_roots_loaded`] can
/// ask it without creating it.
static VERIFIER: OnceLock<Arc<LazyPlatformVerifier>> = OnceLock::new();

/// The process-wide client configuration. Building it reads no file: the roots wait in
/// [`VERIFIER`]. Clones share the verifier and the session resumption cache.
static CLIENT_CONFIG: LazyLock<ClientConfig> = LazyLock::new(|| {
    let verifier: Arc<dyn ServerCertVerifier> =
        VERIFIER.get_or_init(|| Arc::new(LazyPlatformVerifier::new(ring_provider()))).clone();
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = ALPN_HTTP2_AND_HTTP1.iter().map(|p| p.to_vec()).collect();
    config
});

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process default crypto provider unless one is installed already.
/// Idempotent; call it before anything builds a rustls configuration from the default
/// (kube does).
pub fn install_crypto_provider() {
    if CryptoProvider::get_default().is_none() {
        // Fails only when another thread installed one in between, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// A reqwest builder on the shared TLS configuration. Every HTTP client of the process
/// starts here, so none builds TLS state of its own.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().tls_backend_preconfigured(CLIENT_CONFIG.clone())
}

/// As [`http_client_builder`], offering only HTTP/1.1 in ALPN, for clients held to it
/// (reqwest leaves a given configuration's ALPN as it is).
pub fn http1_client_builder() -> reqwest::ClientBuilder {
    let mut config = CLIENT_CONFIG.clone();
    config.alpn_protocols = ALPN_HTTP1.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder().tls_backend_preconfigured(config).http1_only()
}

/// Whether the platform's trust roots have been read (successfully or not): false until
/// the first server certificate was checked.
pub fn platform_roots_loaded() -> bool {
    VERIFIER.get().is_some_and(|verifier| verifier.platform.get().is_some())
}

/// A [`ServerCertVerifier`] that builds the platform verifier, and so reads the roots,
/// on the first certificate it checks.
///
/// Signature checks and the advertised schemes need no roots and come from the provider
/// directly: rustls asks for the schemes while writing its first message, long before a
/// certificate arrives, and a plain-http process must not pay for roots there.
#[derive(Debug)]
pub struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    /// The verifier, or why it could not be built (no roots on this system): kept, so
    /// the roots are read once per process either way.
    platform: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyPlatformVerifier {
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        LazyPlatformVerifier { provider, platform: OnceLock::new() }
    }

    /// The platform verifier, built by the first caller (a TLS handshake, on a runtime
    /// thread: tens of milliseconds, once per process); later callers wait for it.
    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        let built = self.platform.get_or_init(|| {
            let built = rustls_platform_verifier::Verifier::new(self.provider.clone());
            if let Err(error) = &built {
                tracing::warn!(%error, "cannot load the platform's TLS trust roots; every https call will fail");
            }
            built
        });
        built.as_ref().map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustls asks for the schemes before any certificate: answering must not read roots.
    #[test]
    fn the_advertised_schemes_read_no_roots() {
        // A verifier of its own: the process-wide one may have been used by another test.
        let verifier = LazyPlatformVerifier::new(ring_provider());
        let schemes = verifier.supported_verify_schemes();
        assert!(schemes.contains(&SignatureScheme::ECDSA_NISTP256_SHA256), "{schemes:?}");
        assert!(schemes.contains(&SignatureScheme::RSA_PSS_SHA256), "{schemes:?}");
        assert!(verifier.platform.get().is_none());
    }

    #[test]
    fn the_shared_configuration_offers_h2_and_http1() {
        assert_eq!(CLIENT_CONFIG.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
