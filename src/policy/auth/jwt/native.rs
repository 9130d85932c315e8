//! The two protobuf messages of Envoy's `verify_signature` foreign function, encoded by hand:
//! four length-delimited fields out, a bool and a string back. prost is in the module anyway
//! (global rate limits), so this saves no build step or size; the reasons are these. A prost
//! message owns its fields, so encoding would first copy the key, the signature and the
//! signed text (the token's header and payload) into one, then into the buffer; here they go
//! straight into the one buffer the host reads. And the reply's reading is pinned by the tests
//! below: anything unreadable is `None`, and the caller then falls back to the pure-Rust crates.
//!
//! `VerifySignatureArguments { 1: string hash_function, 2: bytes public_key (DER SPKI),
//! 3: bytes signature, 4: bytes text, 5: bytes public_key_pem }`;
//! `VerifySignatureResult { 1: bool result, 2: string error }`.

use crate::policy::HashAlg;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push((field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The serialized `VerifySignatureArguments`.
pub fn encode_arguments(hash: HashAlg, spki: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(spki.len() + signature.len() + text.len() + 24);
    put_bytes(&mut out, 1, hash.name().as_bytes());
    put_bytes(&mut out, 2, spki);
    put_bytes(&mut out, 3, signature);
    put_bytes(&mut out, 4, text);
    out
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The decoded `VerifySignatureResult`: Some(valid), or None if it cannot be read.
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut at = 0;
    let mut result = false;
    while at < bytes.len() {
        let key = get_varint(bytes, &mut at)?;
        match key & 7 {
            0 => {
                let value = get_varint(bytes, &mut at)?;
                if key >> 3 == 1 {
                    result = value != 0;
                }
            }
            2 => {
                let len = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
                at = at.checked_add(len).filter(|end| *end <= bytes.len())?;
            }
            1 => at = at.checked_add(8)?,
            5 => at = at.checked_add(4)?,
            _ => return None,
        }
    }
    (at == bytes.len()).then_some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_framed_as_protobuf() {
        let out = encode_arguments(HashAlg::Sha256, &[1, 2], &[3; 200], b"hi");
        assert_eq!(&out[..8], b"\x0a\x06sha256");
        assert_eq!(&out[8..12], &[0x12, 2, 1, 2]);
        assert_eq!(
            &out[12..15],
            &[0x1a, 0xc8, 0x01],
            "200 as a two-byte varint"
        );
        assert_eq!(&out[out.len() - 4..], &[0x22, 2, b'h', b'i']);
    }

    #[test]
    fn results_are_decoded_and_garbage_is_none() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(decode_result(&[0x08, 0x00]), Some(false));
        assert_eq!(decode_result(&[]), Some(false));
        assert_eq!(decode_result(&[0x12, 0x03, b'b', b'a', b'd']), Some(false));
        assert_eq!(decode_result(&[0x12, 0x03, b'b', 0x08, 0x01]), Some(false));
        assert_eq!(decode_result(&[0x12, 0x05, b'x']), None);
        assert_eq!(decode_result(&[0x08]), None);
        assert_eq!(decode_result(&[0x0b]), None);
        assert_eq!(decode_result(&[0x80; 20]), None);
    }
}
