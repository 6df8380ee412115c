//! The process-wide TLS configuration (`agent_runner::tls`): plain http reads no trust
//! roots; the first https call reads them from `SSL_CERT_FILE` and verifies against
//! them; a server whose certificate no root signed is refused.
//!
//! One test in this binary, its checks in order: the roots are read once per process,
//! and `SSL_CERT_FILE` has to be set before that happens. The certificates are made
//! with the `openssl` command line in a temporary directory.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use agent_runner::tls::{http_client_builder, platform_roots_loaded};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Runs `openssl` with `args` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A test CA (`ca.pem`), a server certificate it signed (`server.pem`, `server.key`), and
/// a self-signed one for the same address (`self.pem`, `self.key`), all for 127.0.0.1.
/// The self-signed one is marked no CA, as a real server's is: `req -x509` makes CAs by
/// default, which the verifier refuses for that reason rather than for its issuer.
fn make_certificates(dir: &Path) {
    let new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    let days = ["-days", "2"];
    let ca = ["req", "-x509", "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=tls_roots test CA"];
    let ca_extensions =
        ["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"];
    openssl(dir, &[&ca[..], &new_key, &days, &ca_extensions].concat());

    let request = ["req", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"];
    openssl(dir, &[&request[..], &new_key].concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );

    let self_signed = ["req", "-x509", "-keyout", "self.key", "-out", "self.pem", "-subj", "/CN=127.0.0.1"];
    openssl(
        dir,
        &[
            &self_signed[..],
            &new_key,
            &days,
            &["-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
        ]
        .concat(),
    );
}

/// A TLS acceptor presenting `cert` with `key` (file names in `dir`).
fn acceptor(dir: &Path, cert: &str, key: &str) -> TlsAcceptor {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join(cert)).unwrap().collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join(key)).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// Reads one request head and answers `body` as HTTP/1.1, closing the connection.
async fn answer(mut stream: impl AsyncRead + AsyncWrite + Unpin, body: &str) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    let response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Serves `body` on a local port, over TLS when `tls` is given; returns the base URL.
async fn serve(tls: Option<TlsAcceptor>, body: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    // A refused handshake ends here: the client is the one that refuses.
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream).await {
                            answer(stream, body).await;
                        }
                    }
                    None => answer(stream, body).await,
                }
            });
        }
    });
    format!("{scheme}://127.0.0.1:{port}/")
}

/// The rustls error somewhere in `error`'s chain. An `io::Error` hides the error it
/// wraps from `source()` (it returns that error's own source), so those are opened.
fn rustls_error(error: &(dyn std::error::Error + 'static)) -> Option<rustls::Error> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found.clone());
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => current.source(),
        };
    }
    None
}

async fn get(client: &reqwest::Client, url: &str) -> Result<String, reqwest::Error> {
    let response = client.get(url).send().await?.error_for_status()?;
    response.text().await
}

#[test]
fn roots_are_read_on_the_first_https_call_only_and_verify_against_ssl_cert_file() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    // SAFETY: the only test of this binary, and no other thread exists yet: the runtime
    // starts below. Only the test CA is trusted, so (b) proves the file is what is read.
    unsafe {
        std::env::set_var("SSL_CERT_FILE", dir.path().join("ca.pem"));
        std::env::remove_var("SSL_CERT_DIR");
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Built before anything was verified: it must use the roots read later.
        let client = http_client_builder().build().unwrap();

        // (a) Plain http: answered, and no root read.
        let plain = serve(None, "plain").await;
        assert_eq!(get(&client, &plain).await.unwrap(), "plain");
        assert!(!platform_roots_loaded(), "an http call read the trust roots");

        // (b) https to a server the test CA signed: verified against SSL_CERT_FILE.
        let signed = serve(Some(acceptor(dir.path(), "server.pem", "server.key")), "secure").await;
        assert_eq!(get(&client, &signed).await.unwrap(), "secure");
        assert!(platform_roots_loaded(), "an https call was verified without the roots");
        // Another client shares the same verifier and its roots.
        assert_eq!(get(&http_client_builder().build().unwrap(), &signed).await.unwrap(), "secure");

        // (c) A self-signed certificate: refused as unknown issuer, nothing answered.
        let unsigned = serve(Some(acceptor(dir.path(), "self.pem", "self.key")), "must not be read").await;
        let error = get(&client, &unsigned).await.unwrap_err();
        assert_eq!(
            rustls_error(&error),
            Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
            "{error:?}"
        );
    });
}
