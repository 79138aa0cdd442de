//! Our ICMP errors and IPv4 fragments against the ones scapy builds
//! (`tests/interop/icmp_vectors.py` wrote `tests/vectors/icmp_errors.json`; run.sh checks the
//! committed file is still what scapy makes). Byte for byte: headers, quoted data, checksums.

use std::net::IpAddr;

use dataplane::icmp_err::{self, Error};

#[test]
fn scapy_vectors() {
    let text = include_str!("vectors/icmp_errors.json");
    let vectors: serde_json::Value = serde_json::from_str(text).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert_eq!(vectors.len(), 10);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let input = hex::decode(v["input"].as_str().unwrap()).unwrap();
        let want: Vec<Vec<u8>> = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| hex::decode(o.as_str().unwrap()).unwrap())
            .collect();
        let mtu = u16::try_from(v["mtu"].as_u64().unwrap()).unwrap();
        let from: IpAddr = v["from"].as_str().unwrap().parse().unwrap();
        let mut out = [0u8; 2048];
        let got: Vec<Vec<u8>> = match v["kind"].as_str().unwrap() {
            "fragment" => {
                assert_eq!(
                    icmp_err::oversize(&input, mtu),
                    icmp_err::Oversize::Fragment(mtu)
                );
                let mut frags = Vec::new();
                let mut next = Some(0);
                while let Some(off) = next {
                    let (n, after) = icmp_err::fragment_v4(&input, mtu, off, &mut out).unwrap();
                    frags.push(out[..n].to_vec());
                    next = after;
                }
                frags
            }
            kind => {
                assert!(icmp_err::may_report(&input), "{name}");
                let e = match kind {
                    "time_exceeded" => Error::TimeExceeded,
                    _ => Error::TooBig { mtu },
                };
                let n = icmp_err::build(e, &input, from, &mut out).unwrap();
                vec![out[..n].to_vec()]
            }
        };
        assert_eq!(got, want, "{name}");
    }
}
