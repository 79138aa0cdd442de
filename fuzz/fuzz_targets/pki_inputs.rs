//! What a peer's IKE_AUTH carries for certificate authentication: CERT payloads (X.509 DER),
//! the AUTH payload (RFC 7427 AlgorithmIdentifier + signature, or RFC 4754) and ID payloads
//! (DER distinguished names), and what a CRL distribution point's or OCSP responder's HTTP
//! server answers. None of it may panic; a real CA and certificate are mixed in so the chain
//! and signature paths run past parsing.
#![no_main]
use std::path::Path;
use std::sync::OnceLock;

use controlplane::ike::pki::{self, TrustAnchors};
use controlplane::ike::{fetch, ocsp};
use libfuzzer_sys::fuzz_target;

const PKI: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../controlplane/tests/data/pki/");

fn der(name: &str) -> Vec<u8> {
    pki::load_certs(Path::new(&format!("{PKI}{name}")))
        .unwrap()
        .remove(0)
}

fn anchors() -> &'static (TrustAnchors, Vec<u8>) {
    static A: OnceLock<(TrustAnchors, Vec<u8>)> = OnceLock::new();
    A.get_or_init(|| (TrustAnchors::new(vec![der("ca-rsa.pem")]).unwrap(), der("gw-a.pem")))
}

/// strongSwan's delta CRL test CA (tests/data/pki/delta) and a leaf it issued: a fuzzed CRL
/// under that CA's name (the seeds are its real CRLs) runs the CRL checks past the issuer.
fn delta_pki() -> &'static (Vec<u8>, Vec<u8>) {
    static D: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
    D.get_or_init(|| (der("delta/ca.pem"), der("delta/d-ok.pem")))
}

fuzz_target!(|data: &[u8]| {
    let (cas, leaf) = anchors();
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let cut = rest.len().min(usize::from(sel) * 4);
    let (a, b) = rest.split_at(cut);
    // Fuzzed certificate chains (as leaf, and as intermediates of the real leaf).
    let _ = cas.verify(a, &[b.to_vec()]);
    let _ = cas.verify(leaf, &[a.to_vec(), b.to_vec()]);
    let _ = pki::cert_identities(a);
    let _ = pki::id_confirmed_by_cert(a, sel % 12, b);
    // Fuzzed AUTH payloads against the real certificate and a fuzzed one.
    for m in [1, 9, 10, 11, 14, sel] {
        let _ = pki::verify_auth(leaf, m, a, b);
        let _ = pki::verify_auth(a, m, b, b"octets");
    }
    // Fuzzed IDs and DN patterns.
    let _ = pki::dn_der_to_string(a);
    let _ = pki::id_confirmed_by_cert(leaf, sel % 12, a);
    if let Ok(p) = std::str::from_utf8(b) {
        let _ = pki::parse_dn(p);
        let _ = pki::dn_matches(p, a);
    }
    let _ = pki::parse_hashes(a);
    // What a CRL distribution point's or OCSP responder's server answers, and the URIs
    // certificates name.
    let _ = fetch::parse_http_response(a);
    let _ = ocsp::parse_response(a);
    let _ = ocsp::time(b);
    if let Ok(u) = std::str::from_utf8(b) {
        let _ = fetch::parse_http_url(u);
    }
    // A fuzzed CRL (complete or delta) configured for the delta CA, checked for its leaf on
    // 2026-12-15 (no fetching: crl_fetch defaults to off for TrustAnchors).
    let (dca, dleaf) = delta_pki();
    if let Ok(t) = TrustAnchors::new(vec![dca.clone()])
        .and_then(|t| t.with_crls(vec![a.to_vec()], pki::Revocation::Strict))
    {
        let _ = t.verify_at(dleaf, &[], 1_797_292_800);
    }
    if let Ok(c) = x509_parser::parse_x509_certificate(a) {
        let _ = pki::crl_distribution_points(&c.1);
        let _ = pki::ocsp_responders(&c.1);
    }
});
