//! Minimal RFC 6455 framing, sans IO, for peers that drive raw sockets (feature
//! `websocket`).
//!
//! The relay writes each frame to every viewer as the *same* pre-encoded bytes (server
//! frames are unmasked, so they are identical for all viewers); a general WebSocket
//! library would copy the payload into a per-connection buffer instead. Reading covers
//! what a viewer sends: masked control frames and small messages. The client side
//! ([`put_client_header`], [`parse_server_header`]) serves the load tool and tests,
//! which speak WebSocket over plain sockets to measure or to misbehave on purpose.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// WebSocket opcodes the relay uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation = 0x0,
    /// UTF-8 text message.
    Text = 0x1,
    /// Binary message.
    Binary = 0x2,
    /// Close.
    Close = 0x8,
    /// Ping.
    Ping = 0x9,
    /// Pong.
    Pong = 0xA,
}

impl Opcode {
    fn from_u8(v: u8) -> Option<Opcode> {
        Some(match v {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            _ => return None,
        })
    }
}

/// Appends an unmasked, final server frame header for a payload of `len` bytes.
pub fn put_header(dst: &mut impl BufMut, opcode: Opcode, len: usize) {
    dst.put_u8(0x80 | opcode as u8);
    put_len(dst, 0, len as u64);
}

/// Appends a final, masked client frame header for a payload of `len` bytes. The
/// opcode is the raw 4-bit value, so tests can send reserved ones. The mask key is
/// zero, so the payload goes on the wire unchanged (valid RFC 6455: the key only has to
/// be present).
pub fn put_client_header(dst: &mut impl BufMut, opcode: u8, len: u64) {
    dst.put_u8(0x80 | (opcode & 0x0f));
    put_len(dst, 0x80, len);
    dst.put_slice(&[0, 0, 0, 0]);
}

/// The payload length field, with the mask bit `mask` (0x80 or 0).
fn put_len(dst: &mut impl BufMut, mask: u8, len: u64) {
    if len < 126 {
        dst.put_u8(mask | len as u8);
    } else if len <= u64::from(u16::MAX) {
        dst.put_u8(mask | 126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(mask | 127);
        dst.put_u64(len);
    }
}

/// Length of a frame header (length field and mask key included), from its second byte.
pub fn header_len(second_byte: u8) -> usize {
    let mask = if second_byte & 0x80 != 0 { 4 } else { 0 };
    mask + match second_byte & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    }
}

/// The header of a frame a server sent, as read by a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHeader {
    /// Raw 4-bit opcode.
    pub opcode: u8,
    /// Final fragment flag.
    pub fin: bool,
    /// Header length in bytes (the payload starts here).
    pub header_len: usize,
    /// Payload length.
    pub payload_len: u64,
}

/// Parses the frame header at the front of `buf`, or `None` if `buf` holds less than a
/// whole header. Server frames are unmasked; a mask key, if present, is skipped.
pub fn parse_server_header(buf: &[u8]) -> Option<ServerHeader> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let header_len = header_len(b1);
    let payload_len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?)),
        127 => u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?),
        n => u64::from(n),
    };
    if buf.len() < header_len {
        return None;
    }
    Some(ServerHeader {
        opcode: b0 & 0x0f,
        fin: b0 & 0x80 != 0,
        header_len,
        payload_len,
    })
}

/// A complete unmasked server frame.
pub fn encode(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    put_header(&mut out, opcode, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// A close frame with a status code and reason (cut to fit 123 bytes).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut reason = reason;
    while reason.len() > 123 {
        let mut end = 123;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason = &reason[..end];
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    encode(Opcode::Close, &payload)
}

/// A frame received from a client, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The opcode.
    pub opcode: Opcode,
    /// Final fragment flag.
    pub fin: bool,
    /// Unmasked payload.
    pub payload: Bytes,
}

/// Why a client's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Reserved bits set (no extensions are negotiated).
    #[error("reserved bits set in WebSocket frame")]
    ReservedBits,
    /// Unknown opcode.
    #[error("unknown WebSocket opcode {0:#x}")]
    BadOpcode(u8),
    /// Client frames must be masked.
    #[error("unmasked client frame")]
    Unmasked,
    /// Payload over the limit.
    #[error("WebSocket frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Limit.
        max: usize,
    },
    /// Control frames must be final and at most 125 bytes.
    #[error("invalid WebSocket control frame")]
    BadControl,
    /// A close frame with a 1-byte payload, a status code a peer may not send, or a
    /// reason that is not UTF-8.
    #[error("invalid WebSocket close frame")]
    BadClose,
    /// A continuation frame with no fragmented message to continue, or a new message
    /// before the fragmented one ended.
    #[error("unexpected WebSocket continuation")]
    BadFragment,
}

impl FrameError {
    /// The close code that answers this error (RFC 6455 section 7.4.1): 1009 for a
    /// frame over the size limit, 1002 (protocol error) for the rest.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge { .. } => 1009,
            _ => 1002,
        }
    }
}

/// Whether a peer may send `code` in a close frame (RFC 6455 section 7.4 and the IANA
/// registry): 1000–1003, 1007–1014 and 3000–4999. 1004–1006 and 1015 are reserved or
/// only for local use; other codes are unassigned.
pub fn close_code_allowed(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Checks a close frame's payload: empty, or a permitted status code and a UTF-8
/// reason.
fn check_close(payload: &[u8]) -> Result<(), FrameError> {
    match payload {
        [] => Ok(()),
        [_] => Err(FrameError::BadClose),
        [hi, lo, reason @ ..] => {
            if close_code_allowed(u16::from_be_bytes([*hi, *lo]))
                && std::str::from_utf8(reason).is_ok()
            {
                Ok(())
            } else {
                Err(FrameError::BadClose)
            }
        }
    }
}

/// Takes one client frame off the front of `buf`, or `Ok(None)` if more bytes are needed.
pub fn decode_client(
    buf: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<ClientFrame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let opcode = Opcode::from_u8(b0 & 0x0f).ok_or(FrameError::BadOpcode(b0 & 0x0f))?;
    let fin = b0 & 0x80 != 0;
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    let is_control = matches!(opcode, Opcode::Close | Opcode::Ping | Opcode::Pong);
    if is_control && (!fin || len > 125) {
        return Err(FrameError::BadControl);
    }
    if len > max_payload as u64 {
        return Err(FrameError::TooLarge {
            len,
            max: max_payload,
        });
    }
    let len = len as usize;
    if buf.len() < at + 4 + len {
        return Ok(None);
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    at += 4;
    buf.advance(at);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
    if opcode == Opcode::Close {
        check_close(&payload)?;
    }
    Ok(Some(ClientFrame {
        opcode,
        fin,
        payload: payload.freeze(),
    }))
}

/// Whether a `Sec-WebSocket-Key` is what RFC 6455 (section 4.1) requires: the base64
/// encoding of 16 bytes.
pub fn key_is_valid(key: &[u8]) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|k| k.len() == 16)
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [1u8, 2, 3, 4];
        let mut out = BytesMut::new();
        out.put_u8(0x80 | opcode);
        assert!(payload.len() < 126);
        out.put_u8(0x80 | payload.len() as u8);
        out.put_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        out
    }

    #[test]
    fn client_headers_parse_back() {
        for len in [0u64, 125, 126, 65535, 65536, 1 << 33] {
            let mut b = BytesMut::new();
            put_client_header(&mut b, 0x2, len);
            assert_eq!(b.len(), header_len(b[1]), "len {len}");
            let h = parse_server_header(&b).unwrap();
            assert_eq!((h.opcode, h.fin, h.payload_len), (0x2, true, len));
            assert_eq!(parse_server_header(&b[..b.len() - 1]), None);
        }
        let mut b = BytesMut::new();
        put_header(&mut b, Opcode::Text, 70_000);
        let h = parse_server_header(&b).unwrap();
        assert_eq!((h.opcode, h.header_len, h.payload_len), (0x1, 10, 70_000));
    }

    #[test]
    fn rfc_accept_key() {
        // The example from RFC 6455 section 1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn keys_must_be_16_bytes_of_base64() {
        assert!(key_is_valid(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!key_is_valid(b"dGhlIHNhbXBsZQ=="), "10 bytes");
        assert!(!key_is_valid(b"dGhlIHNhbXBsZSBub25jZQ"), "no padding");
        assert!(!key_is_valid(b"!!!!!!!!!!!!!!!!!!!!!!=="), "not base64");
        assert!(!key_is_valid(b""));
    }

    #[test]
    fn header_lengths() {
        for (len, hdr) in [(5usize, 2usize), (126, 4), (65535, 4), (65536, 10)] {
            let mut b = BytesMut::new();
            put_header(&mut b, Opcode::Binary, len);
            assert_eq!(b.len(), hdr, "len {len}");
            assert_eq!(b[0], 0x82);
        }
    }

    #[test]
    fn decodes_masked_and_partial() {
        let mut buf = masked(0x9, b"hi");
        let whole = buf.clone();
        let mut part = BytesMut::from(&whole[..3]);
        assert_eq!(decode_client(&mut part, 100), Ok(None));
        let f = decode_client(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.opcode, Opcode::Ping);
        assert_eq!(&f.payload[..], b"hi");
        assert!(buf.is_empty());
        let mut unmasked = BytesMut::from(&[0x82u8, 0x01, 0x00][..]);
        assert_eq!(decode_client(&mut unmasked, 100), Err(FrameError::Unmasked));
        let mut big = masked(0x2, &[0u8; 100]);
        assert!(matches!(
            decode_client(&mut big, 10),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn close_frames_are_checked() {
        for (payload, ok) in [
            (&b""[..], true),
            (&[0x03, 0xe8][..], true),              // 1000
            (&[0x03, 0xe8, b'o', b'k'][..], true),  // 1000 "ok"
            (&[0x0f, 0xa0][..], true),              // 4000
            (&[0x03][..], false),                   // one byte
            (&[0x03, 0xed][..], false),             // 1005, local only
            (&[0x03, 0xee][..], false),             // 1006, local only
            (&[0x00, 0x00][..], false),             // 0
            (&[0x13, 0x88][..], false),             // 5000
            (&[0x03, 0xe8, 0xff, 0xfe][..], false), // reason not UTF-8
        ] {
            let mut buf = masked(0x8, payload);
            let got = decode_client(&mut buf, 100);
            assert_eq!(got.is_ok(), ok, "{payload:?}: {got:?}");
            if !ok {
                assert_eq!(got.unwrap_err().close_code(), 1002);
            }
        }
        assert_eq!(FrameError::TooLarge { len: 9, max: 1 }.close_code(), 1009);
    }

    #[test]
    fn protocol_violations_are_errors() {
        let mut rsv = masked(0x2, b"x");
        rsv[0] |= 0x40;
        assert_eq!(decode_client(&mut rsv, 100), Err(FrameError::ReservedBits));
        let mut reserved = masked(0x3, b"x");
        assert_eq!(
            decode_client(&mut reserved, 100),
            Err(FrameError::BadOpcode(3))
        );
        let mut fragmented_ping = masked(0x9, b"x");
        fragmented_ping[0] &= 0x7f;
        assert_eq!(
            decode_client(&mut fragmented_ping, 100),
            Err(FrameError::BadControl)
        );
        let mut long_ping = BytesMut::new();
        put_client_header(&mut long_ping, 0x9, 126);
        long_ping.extend_from_slice(&[0u8; 126]);
        assert_eq!(
            decode_client(&mut long_ping, 1000),
            Err(FrameError::BadControl)
        );
    }
}
