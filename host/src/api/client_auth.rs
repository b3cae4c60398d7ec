//! Client certificates that are checked, not required, and that never
//! end a handshake: with a client CA, the webhooks the API server calls
//! want its certificate, but the probes, `/metrics` and the catalog's API
//! want none, and a client that presents one the CA did not sign (another
//! CA's, an expired one) must still reach those. rustls's verifier ends
//! the handshake on such a certificate, so the handshake takes any
//! certificate whose key the client proves it holds ([`Lenient`]), and
//! whether the CA signed it is decided after ([`certified`]), for the
//! routes that ask.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::sync::Arc;

/// Takes any client certificate in the handshake; `strict` still checks
/// the client's proof that it holds the certificate's key.
#[derive(Debug)]
pub struct Lenient(pub Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for Lenient {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // Decided after the handshake, by `certified`.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Whether `chain` (the client's, its own certificate first) is one
/// `strict` accepts now: signed by the client CA, valid today, for client
/// authentication.
pub fn certified(strict: &dyn ClientCertVerifier, chain: Option<&[CertificateDer<'_>]>) -> bool {
    let Some([end_entity, intermediates @ ..]) = chain else {
        return false;
    };
    strict
        .verify_client_cert(end_entity, intermediates, UnixTime::now())
        .is_ok()
}
