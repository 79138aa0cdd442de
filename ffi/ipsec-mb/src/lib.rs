//! Minimal safe binding to Intel ipsec-mb's AES-GCM direct API (Debian `libipsec-mb-dev`).
//!
//! A C shim (csrc/shim.c) turns the header's macros into plain functions. One manager is
//! created per process: the direct-API GCM functions only read the function pointers the
//! manager holds and keep all per-call state in a context on the caller's stack, so one
//! manager serves every thread.

use std::ffi::c_void;
use std::ptr::NonNull;
use std::sync::OnceLock;

extern "C" {
    fn fg_mgr_new() -> *mut c_void;
    fn fg_gcm_key_new(m: *mut c_void, key: *const u8, key_len: i32) -> *mut c_void;
    fn fg_gcm_key_free(k: *mut c_void);
    fn fg_gcm_enc(
        m: *mut c_void,
        k: *const c_void,
        key_len: i32,
        dst: *mut u8,
        src: *const u8,
        len: u64,
        iv: *const u8,
        aad: *const u8,
        aad_len: u64,
        tag: *mut u8,
    );
    fn fg_gcm_dec(
        m: *mut c_void,
        k: *const c_void,
        key_len: i32,
        dst: *mut u8,
        src: *const u8,
        len: u64,
        iv: *const u8,
        aad: *const u8,
        aad_len: u64,
        tag: *mut u8,
    );
}

/// The shim's encrypt and decrypt entry points share one signature.
type GcmFn = unsafe extern "C" fn(
    *mut c_void,
    *const c_void,
    i32,
    *mut u8,
    *const u8,
    u64,
    *const u8,
    *const u8,
    u64,
    *mut u8,
);

struct Mgr(NonNull<c_void>);

// SAFETY: the manager is written once by init_mb_mgr_auto and only read afterwards (its GCM
// function pointers); every GCM call keeps its state in its own stack context.
unsafe impl Send for Mgr {}
// SAFETY: as above: shared use only reads the manager.
unsafe impl Sync for Mgr {}

fn mgr() -> Option<&'static Mgr> {
    static MGR: OnceLock<Option<Mgr>> = OnceLock::new();
    MGR.get_or_init(|| {
        // SAFETY: fg_mgr_new has no preconditions; it returns NULL on failure.
        NonNull::new(unsafe { fg_mgr_new() }).map(Mgr)
    })
    .as_ref()
}

/// An expanded AES-GCM key (AES round keys and GHASH key powers), wiped when dropped.
#[derive(Debug)]
pub struct GcmKey {
    key: NonNull<c_void>,
    key_len: i32,
}

// SAFETY: the key data is immutable after construction and only read by GCM calls.
unsafe impl Send for GcmKey {}
// SAFETY: as above.
unsafe impl Sync for GcmKey {}

impl GcmKey {
    /// Expands a 16- or 32-byte AES key; `None` for other lengths or when ipsec-mb cannot
    /// initialise on this CPU.
    pub fn new(key: &[u8]) -> Option<Self> {
        let key_len = match key.len() {
            16 => 16,
            32 => 32,
            _ => return None,
        };
        let m = mgr()?;
        // SAFETY: `key` is valid for key_len bytes; the manager is initialised.
        let k = unsafe { fg_gcm_key_new(m.0.as_ptr(), key.as_ptr(), key_len) };
        NonNull::new(k).map(|key| GcmKey { key, key_len })
    }

    /// Encrypts `data` in place with a 96-bit IV and returns the 16-byte tag.
    pub fn seal(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        self.run(fg_gcm_enc, iv, aad, data)
    }

    /// Decrypts `data` in place and returns the tag computed over the ciphertext; the caller
    /// compares it with the received one.
    pub fn decrypt(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        self.run(fg_gcm_dec, iv, aad, data)
    }

    fn run(&self, f: GcmFn, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let mut tag = [0u8; 16];
        let Some(m) = mgr() else { return tag };
        // SAFETY: a GcmKey exists only if the manager does; in-place operation (dst == src) is
        // supported by ipsec-mb; all lengths are those of the slices passed.
        unsafe {
            f(
                m.0.as_ptr(),
                self.key.as_ptr(),
                self.key_len,
                data.as_mut_ptr(),
                data.as_ptr(),
                data.len() as u64,
                iv.as_ptr(),
                aad.as_ptr(),
                aad.len() as u64,
                tag.as_mut_ptr(),
            )
        };
        tag
    }
}

impl Drop for GcmKey {
    fn drop(&mut self) {
        // SAFETY: the pointer came from fg_gcm_key_new and is freed once.
        unsafe { fg_gcm_key_free(self.key.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 3 and 16.
    #[test]
    fn gcm_spec_vectors() {
        let cases = [
            (
                "feffe9928665731c6d6a8f9467308308",
                "cafebabefacedbaddecaf888",
                "",
                "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
                "4d5c2af327cd64a62cf35abd2ba6fab4",
            ),
            (
                "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
                "cafebabefacedbaddecaf888",
                "feedfacedeadbeeffeedfacedeadbeefabaddad2",
                "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
                "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                "76fc6ece0f4e1768cddf8853bb2d551b",
            ),
        ];
        for (k, iv, aad, pt, ct, tag) in cases {
            let key = GcmKey::new(&hex(k)).unwrap();
            let iv: [u8; 12] = hex(iv).try_into().unwrap();
            let mut d = hex(pt);
            assert_eq!(key.seal(&iv, &hex(aad), &mut d).to_vec(), hex(tag));
            assert_eq!(d, hex(ct));
            assert_eq!(key.decrypt(&iv, &hex(aad), &mut d).to_vec(), hex(tag));
            assert_eq!(d, hex(pt));
        }
        assert!(GcmKey::new(&[0u8; 24]).is_none());
    }
}
