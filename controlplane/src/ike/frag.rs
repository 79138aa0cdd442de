//! IKEv2 message fragmentation (RFC 7383): splitting a protected message into Encrypted
//! Fragment (SKF) messages when it would not fit the configured datagram size, and
//! reassembling the fragments the peer sends. Free of I/O like the rest of `ike`.
//!
//! Sending: [`seal`] takes the plaintext inner payload chain that would go into one SK payload
//! and returns the datagrams to send: one SK message when it fits, else `n` SKF messages, each
//! encrypted and integrity-protected on its own, all with the message's ID (§2.5).
//!
//! Receiving: [`Frag::accept`] verifies a fragment's integrity before it stores anything
//! (§2.6), applies the Total Fragments rules, and hands back the inner chain once every
//! fragment is in. Memory is bounded: at most one partial message per direction (requests we
//! answer, responses we wait for), [`MAX_FRAGMENTS`] fragments and [`MAX_REASSEMBLED`] bytes each.
//!
//! Panic rule: nothing here indexes past a length it has not checked; every malformed or
//! unwelcome fragment becomes a [`FragError`] that the caller counts.

use std::net::SocketAddr;

use super::crypto::SkCodec;
use super::wire::{self, ptype, Header, Message, Payload};

/// Most fragments one message may announce (Total Fragments). RFC 7383 leaves the limit to the
/// receiver (§2.6); 256 fragments of the smallest sensible size still carry a large IKE_AUTH.
pub const MAX_FRAGMENTS: u16 = 256;
/// Most plaintext bytes a reassembled message may hold: an IKE message over UDP cannot be
/// larger (RFC 7296 §2 caps lengths at what UDP carries).
pub const MAX_REASSEMBLED: usize = 65_535;
/// Bytes of an SKF payload between its generic header and the IV: Fragment Number and Total
/// Fragments (RFC 7383 §2.5).
pub const SKF_FIELDS_LEN: usize = 4;
/// strongSwan's `charon.fragment_size` default, our `fragment_size` default: the largest IP
/// datagram (IP header included) a fragment may make.
pub const DEFAULT_FRAGMENT_SIZE: usize = 1280;

/// Datagram sizes a request is cut down to when the path seems to drop its datagrams (RFC 7383
/// §2.5.2), largest first: 1280 (IPv6's minimum MTU) and, for IPv4, 576 (the datagram every
/// IPv4 host must accept). §2.5.1 recommends these two as fragment sizes.
const PMTU_STEPS_V4: [usize; 2] = [1280, 576];
const PMTU_STEPS_V6: [usize; 1] = [1280];

/// The next smaller datagram size to cut a request to, after datagrams of up to `largest`
/// bytes (IP header included) went unanswered; None when there is none.
pub fn smaller_datagram(largest: usize, ipv6: bool) -> Option<usize> {
    let steps: &[usize] = if ipv6 { &PMTU_STEPS_V6 } else { &PMTU_STEPS_V4 };
    steps.iter().copied().find(|&s| s < largest)
}

/// Why a fragment was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FragError {
    /// Fragmentation was not negotiated in IKE_SA_INIT (RFC 7383 §2.3).
    #[error("IKE fragment received but fragmentation was not negotiated")]
    NotNegotiated,
    /// IKE_SA_INIT messages are never fragmented (§2.5).
    #[error("IKE_SA_INIT cannot be fragmented")]
    InitFragment,
    /// The fragment's integrity check (or decryption) failed (§2.6: checked before storing).
    #[error("fragment integrity check failed")]
    Integrity,
    /// Total Fragments above [`MAX_FRAGMENTS`].
    #[error("{total} fragments announced, at most {MAX_FRAGMENTS} are accepted")]
    TooManyFragments {
        /// The announced total.
        total: u16,
    },
    /// The reassembled message would exceed [`MAX_REASSEMBLED`] bytes; the partial message
    /// is dropped.
    #[error("reassembled message would exceed {MAX_REASSEMBLED} bytes")]
    TooLarge,
    /// A fragment number already stored.
    #[error("duplicate fragment")]
    Duplicate,
    /// Total Fragments lower than that of the message being reassembled (§2.6: dropped).
    #[error("fragment announces {total} fragments, the message being reassembled {current}")]
    StaleTotal {
        /// This fragment's total.
        total: u16,
        /// The stored fragments' total.
        current: u16,
    },
    /// Fragment number 0 or above the total, or no SKF payload (the parser refuses these
    /// first; kept for callers that build `Payload::Skf` by hand).
    #[error("malformed fragment numbering")]
    Numbering,
}

/// Counters of fragment traffic for one IKE SA (for logs and `fgctl`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Fragments sent (retransmissions included).
    pub sent: u64,
    /// Fragments verified and stored.
    pub received: u64,
    /// Messages reassembled.
    pub reassembled: u64,
    /// Fragments dropped: not negotiated or in IKE_SA_INIT.
    pub dropped_unexpected: u64,
    /// Fragments dropped: integrity check failed.
    pub dropped_integrity: u64,
    /// Fragments dropped: duplicates.
    pub dropped_duplicate: u64,
    /// Fragments dropped: a lower Total Fragments than the stored ones.
    pub dropped_stale_total: u64,
    /// Fragments (and partial messages) dropped for exceeding the limits.
    pub dropped_limits: u64,
    /// Fragments dropped: malformed numbering.
    pub dropped_malformed: u64,
    /// Messages cut into smaller datagrams (RFC 7383 §2.5.2): requests that went unanswered,
    /// and responses whose request kept coming back.
    pub recut: u64,
}

impl Stats {
    fn count(&mut self, e: FragError) {
        let c = match e {
            FragError::NotNegotiated | FragError::InitFragment => &mut self.dropped_unexpected,
            FragError::Integrity => &mut self.dropped_integrity,
            FragError::Duplicate => &mut self.dropped_duplicate,
            FragError::StaleTotal { .. } => &mut self.dropped_stale_total,
            FragError::TooManyFragments { .. } | FragError::TooLarge => &mut self.dropped_limits,
            FragError::Numbering => &mut self.dropped_malformed,
        };
        *c += 1;
    }
}

/// What a stored fragment completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// More fragments are missing.
    Incomplete,
    /// Every fragment arrived: the first inner payload type and the inner chain.
    Complete {
        /// Type of the first inner payload (from fragment 1).
        inner: u8,
        /// The concatenated plaintext of fragments 1..=total.
        plain: Vec<u8>,
    },
}

/// One message being reassembled: its ID, the announced total and the verified plaintext of
/// each fragment that arrived.
#[derive(Debug)]
pub struct Reassembly {
    msg_id: u32,
    total: u16,
    inner: u8,
    parts: Vec<Option<Vec<u8>>>,
    have: u16,
    bytes: usize,
}

impl Reassembly {
    /// An empty reassembly of message `msg_id` announced with `total` fragments.
    pub fn new(msg_id: u32, total: u16) -> Result<Reassembly, FragError> {
        if total == 0 {
            return Err(FragError::Numbering);
        }
        if total > MAX_FRAGMENTS {
            return Err(FragError::TooManyFragments { total });
        }
        Ok(Reassembly {
            msg_id,
            total,
            inner: ptype::NONE,
            parts: vec![None; usize::from(total)],
            have: 0,
            bytes: 0,
        })
    }

    /// The message ID being reassembled.
    pub fn msg_id(&self) -> u32 {
        self.msg_id
    }

    /// Stores the verified plaintext of fragment `number` (`inner` is the SKF payload's Next
    /// Payload: the first inner payload type in fragment 1, ignored in the others).
    /// The caller has applied the Total Fragments rules (see [`Frag::accept`]).
    pub fn insert(
        &mut self,
        number: u16,
        inner: u8,
        plain: Vec<u8>,
    ) -> Result<Progress, FragError> {
        let slot = usize::from(number)
            .checked_sub(1)
            .and_then(|i| self.parts.get_mut(i))
            .ok_or(FragError::Numbering)?;
        if slot.is_some() {
            return Err(FragError::Duplicate);
        }
        if self.bytes + plain.len() > MAX_REASSEMBLED {
            return Err(FragError::TooLarge);
        }
        self.bytes += plain.len();
        *slot = Some(plain);
        self.have += 1;
        if number == 1 {
            self.inner = inner;
        }
        if self.have < self.total {
            return Ok(Progress::Incomplete);
        }
        let mut plain = Vec::with_capacity(self.bytes);
        for p in self.parts.drain(..) {
            plain.extend_from_slice(&p.unwrap_or_default());
        }
        Ok(Progress::Complete {
            inner: self.inner,
            plain,
        })
    }
}

/// One IKE SA's fragmentation state: whether both ends announced support, and the two
/// reassembly buffers (RFC 7296's window of one: at most one request and one response in flight).
#[derive(Debug, Default)]
pub struct Frag {
    /// Both sides sent IKEV2_FRAGMENTATION_SUPPORTED in IKE_SA_INIT (and we are configured to).
    pub negotiated: bool,
    requests: Option<Reassembly>,
    responses: Option<Reassembly>,
    /// Counters.
    pub stats: Stats,
    /// The datagram size a message of this IKE SA (or the one it replaced) got through at after
    /// it was cut smaller (RFC 7383 §2.5.2): a request that was answered, or a response after
    /// which the peer's next request came. Later messages use it instead of a larger
    /// `fragment_size`.
    pub path_size: Option<usize>,
    /// When `path_size` was learnt (by this IKE SA, the one it replaced, or an earlier one
    /// between the same addresses); the daemon lets new IKE SAs start from it for a while.
    pub path_learnt: Option<std::time::Instant>,
}

impl Frag {
    /// A fresh state; `negotiated` stays false until IKE_SA_INIT says otherwise.
    pub fn new() -> Frag {
        Frag::default()
    }

    /// The state a rekeyed IKE SA starts with: support was negotiated for the old one.
    pub fn inherit(&self) -> Frag {
        Frag {
            negotiated: self.negotiated,
            path_size: self.path_size,
            path_learnt: self.path_learnt,
            ..Frag::default()
        }
    }

    /// Takes one SKF message `data` (parsed as `msg`) whose message ID the caller has already
    /// found acceptable (the expected request, or the response to our pending request).
    /// Verifies the fragment with `codec`, then stores it. Returns the first inner payload
    /// type and the inner chain once the message is complete, None while fragments are
    /// missing. Errors are counted in [`Frag::stats`].
    pub fn accept(
        &mut self,
        codec: &SkCodec<'_>,
        msg: &Message,
        data: &[u8],
    ) -> Result<Option<(u8, Vec<u8>)>, FragError> {
        let r = self.accept_inner(codec, msg, data);
        match &r {
            Ok(Some(_)) => self.stats.reassembled += 1,
            Ok(None) => {}
            Err(e) => self.stats.count(*e),
        }
        r
    }

    fn accept_inner(
        &mut self,
        codec: &SkCodec<'_>,
        msg: &Message,
        data: &[u8],
    ) -> Result<Option<(u8, Vec<u8>)>, FragError> {
        if msg.header.exchange == wire::exchange::IKE_SA_INIT {
            return Err(FragError::InitFragment);
        }
        if !self.negotiated {
            return Err(FragError::NotNegotiated);
        }
        let (inner, number, total) = skf_fields(msg).ok_or(FragError::Numbering)?;
        if number == 0 || number > total {
            return Err(FragError::Numbering);
        }
        if total > MAX_FRAGMENTS {
            return Err(FragError::TooManyFragments { total });
        }
        // §2.6: integrity first, so that forged fragments never displace genuine ones.
        let plain = open_fragment(codec, msg, data)?;
        self.stats.received += 1;
        let h = msg.header;
        self.store(h.is_response(), h.msg_id, inner, number, total, plain)
    }

    /// Stores the plaintext of a fragment whose integrity was verified: fragment `number` of
    /// `total` of request (or `response`) `id`, `inner` its SKF Next Payload. Applies the
    /// Total Fragments rules and limits; returns the message when it is complete. (Public for
    /// the fuzz target, which has no keys to make fragments that verify.)
    pub fn store(
        &mut self,
        response: bool,
        id: u32,
        inner: u8,
        number: u16,
        total: u16,
        plain: Vec<u8>,
    ) -> Result<Option<(u8, Vec<u8>)>, FragError> {
        if number == 0 || number > total {
            return Err(FragError::Numbering);
        }
        let slot = if response {
            &mut self.responses
        } else {
            &mut self.requests
        };
        match slot {
            // §2.6: a higher total means the sender re-fragmented (smaller fragments after
            // retransmissions): start over. A lower one belongs to the older split: drop it.
            Some(r) if r.msg_id == id && total < r.total => {
                return Err(FragError::StaleTotal {
                    total,
                    current: r.total,
                })
            }
            Some(r) if r.msg_id == id && total == r.total => {}
            _ => *slot = Some(Reassembly::new(id, total)?),
        }
        let Some(r) = slot.as_mut() else {
            return Err(FragError::Numbering);
        };
        match r.insert(number, inner, plain) {
            Ok(Progress::Incomplete) => Ok(None),
            Ok(Progress::Complete { inner, plain }) => {
                *slot = None;
                Ok(Some((inner, plain)))
            }
            Err(FragError::TooLarge) => {
                // The message cannot be completed within the limit: free what it holds.
                *slot = None;
                Err(FragError::TooLarge)
            }
            Err(e) => Err(e),
        }
    }

    /// RFC 7383 §2.6.1: a retransmitted fragment of a request we already answered triggers
    /// the response's retransmission only if it is fragment 1 (and, here, only if it
    /// verifies, so a forged small datagram cannot make us send every fragment again).
    /// Messages that are not fragments always do (RFC 7296 §2.1).
    pub fn retransmit_trigger(codec: Option<&SkCodec<'_>>, msg: &Message, data: &[u8]) -> bool {
        match skf_fields(msg) {
            None => true,
            Some((_, number, _)) => {
                number == 1 && codec.is_some_and(|c| open_fragment(c, msg, data).is_ok())
            }
        }
    }

    /// Forgets any partial message (the SA is going away or was superseded).
    pub fn clear(&mut self) {
        self.requests = None;
        self.responses = None;
    }

    /// Bytes held by partial messages (for tests: memory stays bounded).
    pub fn buffered(&self) -> usize {
        [&self.requests, &self.responses]
            .iter()
            .filter_map(|r| r.as_ref().map(|r| r.bytes))
            .sum()
    }
}

/// The SKF payload's (Next Payload, Fragment Number, Total Fragments), if `msg` ends in one.
fn skf_fields(msg: &Message) -> Option<(u8, u16, u16)> {
    match msg.payloads.last() {
        Some(Payload::Skf {
            inner,
            number,
            total,
            ..
        }) => Some((*inner, *number, *total)),
        _ => None,
    }
}

/// Verifies and decrypts the SKF payload that ends `data`.
fn open_fragment(codec: &SkCodec<'_>, msg: &Message, data: &[u8]) -> Result<Vec<u8>, FragError> {
    let Some(Payload::Skf { body, .. }) = msg.payloads.last() else {
        return Err(FragError::Numbering);
    };
    // The SKF payload is last (the parser checked): its header starts here.
    let sk_off = data
        .len()
        .checked_sub(wire::GENERIC_LEN + SKF_FIELDS_LEN + body.len())
        .ok_or(FragError::Numbering)?;
    codec
        .open_message(data, sk_off, SKF_FIELDS_LEN)
        .map_err(|_| FragError::Integrity)
}

/// Bytes below the IKE message in a datagram sent from `local` to `remote`: the IP header
/// (20 for IPv4 without options, 40 for IPv6), UDP (8), and the non-ESP marker (4) that IKE
/// carries on any port other than 500 (RFC 3948 §2.2). RFC 7383 §2.5.1 counts them all.
pub fn transport_overhead(local: SocketAddr, remote: SocketAddr) -> usize {
    let ip = if remote.is_ipv4() { 20 } else { 40 };
    let marker = if local.port() == super::sa::IKE_PORT {
        0
    } else {
        4
    };
    ip + 8 + marker
}

/// Fixed bytes of one SKF message besides its ciphertext: IKE header, SKF header and fields,
/// IV and ICV.
fn fragment_fixed(codec: &SkCodec<'_>) -> usize {
    let block = codec.keys.encr.block_len();
    // overhead() is IV + ICV + one block of padding allowance.
    wire::HEADER_LEN + wire::GENERIC_LEN + SKF_FIELDS_LEN + codec.overhead() - block
}

/// The largest inner-chain slice one fragment can carry when an IKE message may be at most
/// `max_message` bytes: the ciphertext (plaintext, padding and pad length byte, a whole
/// number of blocks) must fit what the headers, IV and ICV leave. None if not even one byte fits.
pub fn fragment_payload_len(codec: &SkCodec<'_>, max_message: usize) -> Option<usize> {
    let block = codec.keys.encr.block_len();
    let room = max_message.checked_sub(fragment_fixed(codec))?;
    let ct = room / block * block;
    // One byte is the Pad Length field.
    ct.checked_sub(1).filter(|n| *n > 0)
}

/// Ciphertext length for `plain_len` bytes: plaintext, padding and the Pad Length byte, a
/// whole number of blocks.
fn ciphertext_len(codec: &SkCodec<'_>, plain_len: usize) -> usize {
    let block = codec.keys.encr.block_len();
    (plain_len + 1).div_ceil(block) * block
}

/// Length of the unfragmented SK message carrying `plain_len` bytes of inner chain.
fn sk_message_len(codec: &SkCodec<'_>, plain_len: usize) -> usize {
    fragment_fixed(codec) - SKF_FIELDS_LEN + ciphertext_len(codec, plain_len)
}

#[cfg(test)]
/// Length of one SKF message carrying `plain_len` bytes of inner chain.
fn fragment_len(codec: &SkCodec<'_>, plain_len: usize) -> usize {
    fragment_fixed(codec) + ciphertext_len(codec, plain_len)
}

/// Protects the inner payload chain `plain` (first type `inner`) under `header`. With
/// `max_message` (the largest IKE message a datagram may carry: the fragment size minus
/// [`transport_overhead`]), a message that would be larger is split into SKF fragments of at
/// most that size (RFC 7383 §2.5): fragment 1 names the first inner payload, the others 0,
/// all share the message ID. Without it, or when it fits, the result is one SK message.
pub fn seal(
    codec: &SkCodec<'_>,
    header: Header,
    inner: u8,
    plain: &[u8],
    max_message: Option<usize>,
) -> Vec<Vec<u8>> {
    seal_min(codec, header, inner, plain, max_message, 0)
}

/// [`seal`], and if the message is split, into at least `min_fragments` fragments. A request
/// cut again smaller (§2.5.2) must announce more fragments than its last cut: a receiver
/// takes a fragment with the same Total Fragments as part of the message it holds, starts
/// over on a larger one and drops a smaller one (§2.6.1), so two cuts with the same count
/// would be mixed into a message that does not parse.
pub fn seal_min(
    codec: &SkCodec<'_>,
    header: Header,
    inner: u8,
    plain: &[u8],
    max_message: Option<usize>,
    min_fragments: usize,
) -> Vec<Vec<u8>> {
    let chunk = match max_message {
        Some(max) if sk_message_len(codec, plain.len()) > max => fragment_payload_len(codec, max),
        _ => None,
    };
    // len / min bytes a fragment, rounded up if that still makes `min` fragments (no short
    // last one), else down.
    let chunk = chunk.map(|c| {
        let len = plain.len();
        let Some(down) = len.checked_div(min_fragments) else {
            return c;
        };
        let up = len.div_ceil(min_fragments);
        let even = if len.div_ceil(up.max(1)) >= min_fragments {
            up
        } else {
            down
        };
        c.min(even.max(1))
    });
    let n = chunk.map_or(0, |c| plain.len().div_ceil(c));
    let (Some(chunk), Ok(total)) = (chunk, u16::try_from(n)) else {
        return vec![codec.seal_message(header, inner, plain)];
    };
    plain
        .chunks(chunk)
        .zip(1u16..)
        .map(|(part, number)| {
            let mut h = header;
            let mut fields = [0u8; SKF_FIELDS_LEN];
            fields[..2].copy_from_slice(&number.to_be_bytes());
            fields[2..].copy_from_slice(&total.to_be_bytes());
            let first = if number == 1 { inner } else { ptype::NONE };
            codec.seal_with_prefix(&mut h, ptype::SKF, first, &fields, part)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ike::crypto::IkeKeys;
    use crate::ike::proposal::{Encr, Integ, Prf};
    use crate::ike::wire::{exchange, flags};

    fn keys(encr: Encr, integ: Option<Integ>) -> IkeKeys {
        IkeKeys::derive(
            Prf::HmacSha256,
            encr,
            integ,
            &[7u8; 32],
            &[1u8; 32],
            &[2u8; 32],
            0x1111,
            0x2222,
        )
    }

    fn header(msg_id: u32, response: bool) -> Header {
        Header {
            spi_i: 0x1111,
            spi_r: 0x2222,
            next: 0,
            version: 0x20,
            exchange: exchange::IKE_AUTH,
            flags: flags::INITIATOR | if response { flags::RESPONSE } else { 0 },
            msg_id,
            length: 0,
        }
    }

    /// The peer's side of `keys`: sending as the initiator, we receive as the responder.
    fn pair(k: &IkeKeys) -> (SkCodec<'_>, SkCodec<'_>) {
        (
            SkCodec {
                keys: k,
                initiator: true,
            },
            SkCodec {
                keys: k,
                initiator: false,
            },
        )
    }

    fn chain(n: usize) -> (u8, Vec<u8>) {
        // A Vendor ID payload of n bytes: a valid inner chain of any size.
        let p = [Payload::Vendor((0..n).map(|i| i as u8).collect())];
        (wire::first_type(&p), wire::emit_chain(&p))
    }

    fn suites() -> [(Encr, Option<Integ>); 3] {
        [
            (Encr::AesCbc256, Some(Integ::HmacSha256)),
            (Encr::AesCbc128, Some(Integ::HmacSha512)),
            (Encr::AesGcm256, None),
        ]
    }

    fn negotiated() -> Frag {
        Frag {
            negotiated: true,
            ..Frag::default()
        }
    }

    fn feed(f: &mut Frag, rx: &SkCodec<'_>, d: &[u8]) -> Result<Option<(u8, Vec<u8>)>, FragError> {
        f.accept(rx, &Message::parse(d).unwrap(), d)
    }

    #[test]
    fn small_messages_stay_whole_and_large_ones_split_within_the_size() {
        for (encr, integ) in suites() {
            let k = keys(encr, integ);
            let (tx, rx) = pair(&k);
            let (inner, plain) = chain(100);
            let one = seal(&tx, header(1, false), inner, &plain, Some(1252));
            assert_eq!(one.len(), 1);
            assert_eq!(Message::parse(&one[0]).unwrap().header.next, ptype::SK);
            let (inner, plain) = chain(3000);
            for max in [268usize, 300, 333, 1000] {
                let frags = seal(&tx, header(1, false), inner, &plain, Some(max));
                assert!(frags.len() > 1, "{encr:?} {max}");
                let mut f = negotiated();
                let mut out = None;
                for (i, d) in frags.iter().enumerate() {
                    assert!(d.len() <= max, "{} > {max}", d.len());
                    let m = Message::parse(d).unwrap();
                    assert_eq!(m.header.msg_id, 1);
                    assert_eq!(m.header.next, ptype::SKF);
                    let Some(Payload::Skf {
                        inner: fi,
                        number,
                        total,
                        ..
                    }) = m.payloads.last()
                    else {
                        panic!("not SKF")
                    };
                    assert_eq!(usize::from(*number), i + 1);
                    assert_eq!(usize::from(*total), frags.len());
                    assert_eq!(*fi, if i == 0 { inner } else { 0 });
                    out = feed(&mut f, &rx, d).unwrap();
                }
                assert_eq!(out, Some((inner, plain.clone())));
                // The sizes are tight: one more plaintext byte per fragment would not fit.
                let c = fragment_payload_len(&tx, max).unwrap();
                assert!(fragment_len(&tx, c) <= max && fragment_len(&tx, c + 1) > max);
                assert_eq!(frags[0].len(), fragment_len(&tx, c));
                assert_eq!(f.stats.reassembled, 1);
                assert_eq!(f.buffered(), 0);
            }
        }
    }

    #[test]
    fn a_recut_message_announces_more_fragments_and_a_receiver_starts_it_over() {
        for (encr, integ) in suites() {
            let k = keys(encr, integ);
            let (tx, rx) = pair(&k);
            let (inner, plain) = chain(1400);
            let first = seal(&tx, header(1, false), inner, &plain, Some(1252));
            assert_eq!(first.len(), 2, "{encr:?}");
            // Cut to at most 1000 bytes a message, the size alone would give two fragments
            // again; asked for three, every fragment is a third, none short.
            assert_eq!(
                seal(&tx, header(1, false), inner, &plain, Some(1000)).len(),
                2
            );
            let cut = seal_min(&tx, header(1, false), inner, &plain, Some(1000), 3);
            assert_eq!(cut.len(), 3, "{encr:?}");
            assert!(cut.iter().all(|d| d.len() <= 1000));
            let lens: Vec<usize> = cut.iter().map(Vec::len).collect();
            assert!(lens[0] - lens[2] <= 16, "{lens:?}");
            // The size still rules when it asks for more.
            assert_eq!(
                seal_min(&tx, header(1, false), inner, &plain, Some(300), 3).len(),
                seal(&tx, header(1, false), inner, &plain, Some(300)).len()
            );
            // A receiver that got the first cut's second fragment starts over on the new cut's
            // first (a larger total) and reassembles the message.
            let mut f = negotiated();
            assert_eq!(feed(&mut f, &rx, &first[1]).unwrap(), None);
            let mut out = None;
            for d in &cut {
                out = feed(&mut f, &rx, d).unwrap();
            }
            assert_eq!(out, Some((inner, plain.clone())));
            // And a whole message that fits stays whole whatever the minimum.
            let (i2, small) = chain(100);
            assert_eq!(
                seal_min(&tx, header(2, false), i2, &small, Some(1000), 3).len(),
                1
            );
        }
    }

    #[test]
    fn path_mtu_steps_go_down_to_1280_and_for_ipv4_576() {
        assert_eq!(smaller_datagram(1500, false), Some(1280));
        assert_eq!(smaller_datagram(1281, false), Some(1280));
        assert_eq!(smaller_datagram(1280, false), Some(576));
        assert_eq!(smaller_datagram(577, false), Some(576));
        assert_eq!(smaller_datagram(576, false), None);
        assert_eq!(smaller_datagram(400, false), None);
        assert_eq!(smaller_datagram(1500, true), Some(1280));
        assert_eq!(smaller_datagram(1280, true), None);
    }

    #[test]
    fn fragments_use_the_whole_budget() {
        // GCM has no block alignment: a full fragment is exactly the limit.
        let k = keys(Encr::AesGcm128, None);
        let (tx, _) = pair(&k);
        let (inner, plain) = chain(5000);
        let frags = seal(&tx, header(3, false), inner, &plain, Some(500));
        assert!(frags[..frags.len() - 1].iter().all(|d| d.len() == 500));
        // CBC: within one block of it.
        let k = keys(Encr::AesCbc256, Some(Integ::HmacSha256));
        let (tx, _) = pair(&k);
        let frags = seal(&tx, header(3, false), inner, &plain, Some(500));
        assert!(frags[..frags.len() - 1]
            .iter()
            .all(|d| d.len() <= 500 && d.len() > 500 - 16));
    }

    #[test]
    fn out_of_order_and_duplicated_fragments_reassemble_once() {
        let k = keys(Encr::AesCbc256, Some(Integ::HmacSha256));
        let (tx, rx) = pair(&k);
        let (inner, plain) = chain(2000);
        let frags = seal(&tx, header(5, false), inner, &plain, Some(400));
        assert!(frags.len() >= 5);
        let mut f = negotiated();
        let mut order: Vec<usize> = (0..frags.len()).rev().collect();
        order.insert(1, order[0]);
        let mut done = None;
        for i in order {
            match feed(&mut f, &rx, &frags[i]) {
                Ok(Some(m)) => done = Some(m),
                Ok(None) => {}
                Err(e) => assert_eq!(e, FragError::Duplicate),
            }
        }
        assert_eq!(done, Some((inner, plain)));
        assert_eq!(f.stats.dropped_duplicate, 1);
    }

    #[test]
    fn tampered_fragments_are_dropped_before_they_are_stored() {
        for (encr, integ) in suites() {
            let k = keys(encr, integ);
            let (tx, rx) = pair(&k);
            let (inner, plain) = chain(1500);
            let frags = seal(&tx, header(2, true), inner, &plain, Some(400));
            let mut f = negotiated();
            for at in [20usize, 30, 33, 40, frags[1].len() - 1] {
                let mut bad = frags[1].clone();
                bad[at] ^= 0x01;
                // A flipped fragment number or total still must not pass: the fields are
                // covered by the ICV (RFC 7383 §2.5).
                if let Ok(m) = Message::parse(&bad) {
                    assert_eq!(
                        f.accept(&rx, &m, &bad).map(|_| ()),
                        Err(FragError::Integrity),
                        "{encr:?} byte {at}"
                    );
                }
            }
            assert_eq!(f.buffered(), 0, "nothing stored");
            let mut out = None;
            for d in &frags {
                out = feed(&mut f, &rx, d).unwrap();
            }
            assert_eq!(out, Some((inner, plain)));
        }
    }

    #[test]
    fn a_higher_total_restarts_and_a_lower_one_is_dropped() {
        let k = keys(Encr::AesCbc256, Some(Integ::HmacSha256));
        let (tx, rx) = pair(&k);
        let (inner, plain) = chain(1500);
        let big = seal(&tx, header(4, false), inner, &plain, Some(900));
        let small = seal(&tx, header(4, false), inner, &plain, Some(300));
        assert!(small.len() > big.len());
        let mut f = negotiated();
        assert_eq!(feed(&mut f, &rx, &big[0]), Ok(None));
        // Re-fragmented smaller (§2.5.2): the new split replaces the old.
        assert_eq!(feed(&mut f, &rx, &small[0]), Ok(None));
        let r = feed(&mut f, &rx, &big[1]);
        assert!(matches!(r, Err(FragError::StaleTotal { .. })), "{r:?}");
        let mut out = None;
        for d in &small[1..] {
            out = feed(&mut f, &rx, d).unwrap();
        }
        assert_eq!(out, Some((inner, plain)));
        assert_eq!(f.stats.dropped_stale_total, 1);
    }

    #[test]
    fn a_new_message_id_replaces_the_partial_one() {
        let k = keys(Encr::AesGcm256, None);
        let (tx, rx) = pair(&k);
        let (inner, plain) = chain(1500);
        let old = seal(&tx, header(7, false), inner, &plain, Some(400));
        let new = seal(&tx, header(8, false), inner, &plain, Some(400));
        let mut f = negotiated();
        feed(&mut f, &rx, &old[0]).unwrap();
        let held = f.buffered();
        let mut out = None;
        for d in &new {
            out = feed(&mut f, &rx, d).unwrap();
        }
        assert_eq!(out, Some((inner, plain)));
        assert!(held > 0 && f.buffered() == 0);
    }

    #[test]
    fn requests_and_responses_reassemble_independently() {
        let k = keys(Encr::AesCbc256, Some(Integ::HmacSha256));
        let (tx, rx) = pair(&k);
        let (inner, plain) = chain(1000);
        let req = seal(&tx, header(9, false), inner, &plain, Some(400));
        let resp = seal(&tx, header(3, true), inner, &plain, Some(400));
        let mut f = negotiated();
        let mut done = 0;
        for (a, b) in req.iter().zip(&resp) {
            done += usize::from(feed(&mut f, &rx, a).unwrap().is_some());
            done += usize::from(feed(&mut f, &rx, b).unwrap().is_some());
        }
        assert_eq!(done, 2);
    }

    #[test]
    fn limits_are_typed_errors() {
        let k = keys(Encr::AesGcm256, None);
        let (tx, rx) = pair(&k);
        // Too many fragments announced: refused (and counted) before anything is stored.
        let mut fields = [0u8; 4];
        fields[..2].copy_from_slice(&1u16.to_be_bytes());
        fields[2..].copy_from_slice(&(MAX_FRAGMENTS + 1).to_be_bytes());
        let d = tx.seal_with_prefix(&mut header(1, false), ptype::SKF, 0, &fields, b"x");
        let mut f = negotiated();
        assert_eq!(
            feed(&mut f, &rx, &d),
            Err(FragError::TooManyFragments {
                total: MAX_FRAGMENTS + 1
            })
        );
        assert_eq!(f.stats.dropped_limits, 1);
        // Total bytes capped: a message of MAX_FRAGMENTS fragments of 300 bytes each is too
        // large; the partial message is freed when the cap is hit.
        let piece = vec![0u8; 300];
        let mut err = None;
        for n in 1..=MAX_FRAGMENTS {
            fields[..2].copy_from_slice(&n.to_be_bytes());
            fields[2..].copy_from_slice(&MAX_FRAGMENTS.to_be_bytes());
            let d = tx.seal_with_prefix(&mut header(2, false), ptype::SKF, 0, &fields, &piece);
            if let Err(e) = feed(&mut f, &rx, &d) {
                err = Some((n, e));
                break;
            }
            assert!(f.buffered() <= MAX_REASSEMBLED);
        }
        let (n, e) = err.expect("the cap was hit");
        assert_eq!(e, FragError::TooLarge);
        assert_eq!(usize::from(n), MAX_REASSEMBLED / 300 + 1);
        assert_eq!(f.buffered(), 0);
        // Not negotiated, or in IKE_SA_INIT: dropped.
        let frags = seal(&tx, header(1, false), 0, &[0u8; 900], Some(300));
        let mut off = Frag::new();
        assert_eq!(
            feed(&mut off, &rx, &frags[0]),
            Err(FragError::NotNegotiated)
        );
        let mut h = header(0, false);
        h.exchange = exchange::IKE_SA_INIT;
        let init = seal(&tx, h, 0, &[0u8; 900], Some(300));
        assert_eq!(feed(&mut f, &rx, &init[0]), Err(FragError::InitFragment));
    }

    #[test]
    fn only_a_verified_fragment_1_triggers_a_retransmission() {
        let k = keys(Encr::AesCbc256, Some(Integ::HmacSha256));
        let (tx, rx) = pair(&k);
        let (inner, plain) = chain(1000);
        let frags = seal(&tx, header(1, false), inner, &plain, Some(400));
        let m = |d: &[u8]| Message::parse(d).unwrap();
        assert!(Frag::retransmit_trigger(
            Some(&rx),
            &m(&frags[0]),
            &frags[0]
        ));
        assert!(!Frag::retransmit_trigger(
            Some(&rx),
            &m(&frags[1]),
            &frags[1]
        ));
        let mut bad = frags[0].clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(!Frag::retransmit_trigger(Some(&rx), &m(&bad), &bad));
        let whole = seal(&tx, header(1, false), inner, &plain, None);
        assert!(Frag::retransmit_trigger(None, &m(&whole[0]), &whole[0]));
    }

    #[test]
    fn transport_overhead_counts_ip_udp_and_the_marker() {
        let v4 = |p| SocketAddr::new("192.0.2.1".parse().unwrap(), p);
        let v6 = |p| SocketAddr::new("2001:db8::1".parse().unwrap(), p);
        assert_eq!(transport_overhead(v4(500), v4(500)), 28);
        assert_eq!(transport_overhead(v4(4500), v4(4500)), 32);
        assert_eq!(transport_overhead(v6(500), v6(500)), 48);
        assert_eq!(transport_overhead(v6(4500), v6(4500)), 52);
    }
}
