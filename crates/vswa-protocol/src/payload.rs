//! What a payload must start with, per codec: a cheap check for relays and decoders
//! that catches a sender putting the wrong bytes behind a valid header.

use crate::{Codec, DecodeError, Flags, FrameHeader};

/// The JPEG start-of-image marker every JPEG payload begins with.
const JPEG_SOI: [u8; 2] = [0xff, 0xd8];
/// The two Annex B start codes an H.264 payload may begin with.
const ANNEX_B_START_CODES: [&[u8]; 2] = [&[0, 0, 1], &[0, 0, 0, 1]];

/// Checks that `payload` starts the way `header.codec` requires: JPEG with the SOI
/// marker `FF D8`, H.264 with an Annex B start code (`00 00 01` or `00 00 00 01`). An
/// empty payload passes only on an `END_OF_STREAM` frame.
///
/// This looks at the first bytes only; it does not parse the picture. Decoding a frame
/// ([`Frame::decode`](crate::Frame::decode), [`FrameDecoder`](crate::FrameDecoder))
/// never calls it: relays call it on what publishers send, and decoders may call it
/// before handing a payload to a picture decoder.
///
/// ```
/// use vswa_protocol::{check_payload, DecodeError, FrameHeader};
///
/// let header = FrameHeader::h264(0, 0, 16, 16, false);
/// assert!(check_payload(&header, &[0, 0, 1, 0x41, 0x9a]).is_ok());
/// assert!(matches!(
///     check_payload(&header, &[0xff, 0xd8, 0xff, 0xe0]),
///     Err(DecodeError::InvalidPayload { .. })
/// ));
/// ```
pub fn check_payload(header: &FrameHeader, payload: &[u8]) -> Result<(), DecodeError> {
    if payload.is_empty() && header.flags.contains(Flags::END_OF_STREAM) {
        return Ok(());
    }
    let ok = match header.codec {
        Codec::Jpeg => payload.starts_with(&JPEG_SOI),
        Codec::H264 => ANNEX_B_START_CODES
            .iter()
            .any(|code| payload.starts_with(code)),
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidPayload {
            codec: header.codec,
            found: payload[..payload.len().min(4)].to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(header: FrameHeader, payload: &[u8]) -> Result<(), String> {
        check_payload(&header, payload).map_err(|e| e.to_string())
    }

    #[test]
    fn jpeg_rule_is_the_relays() {
        let jpeg = FrameHeader::jpeg(0, 0, 1, 1);
        assert_eq!(check(jpeg, &[0xff, 0xd8, 0xff, 0xd9]), Ok(()));
        assert_eq!(check(jpeg, &[0xff, 0xd8]), Ok(()));
        assert_eq!(
            check(jpeg, &[0x89, b'P', b'N', b'G', 0x0d]),
            Err(
                "invalid JPEG payload: it starts with [89, 50, 4e, 47], not the JPEG SOI \
                 marker FF D8"
                    .into()
            )
        );
        assert_eq!(
            check(jpeg, &[0xff]),
            Err("invalid JPEG payload: it starts with [ff], not the JPEG SOI marker FF D8".into())
        );
        // Empty: only with END_OF_STREAM (PLACEHOLDER alone is not enough).
        assert_eq!(
            check(jpeg, &[]),
            Err(
                "invalid JPEG payload: the payload is empty (only an END_OF_STREAM frame \
                 may be empty)"
                    .into()
            )
        );
        let mut placeholder = jpeg;
        placeholder.flags = Flags::KEYFRAME | Flags::PLACEHOLDER;
        assert!(check(placeholder, &[]).is_err());
        let mut end = jpeg;
        end.flags = Flags::END_OF_STREAM;
        assert_eq!(check(end, &[]), Ok(()));
        assert!(
            check(end, &[0, 0, 1]).is_err(),
            "a non-empty end frame is a picture"
        );
    }

    #[test]
    fn h264_needs_a_start_code() {
        for keyframe in [true, false] {
            let h = FrameHeader::h264(0, 0, 16, 16, keyframe);
            assert_eq!(check(h, &[0, 0, 1, 0x65]), Ok(()));
            assert_eq!(check(h, &[0, 0, 0, 1, 0x67]), Ok(()));
            assert_eq!(check(h, &[0, 0, 1]), Ok(()));
            for bad in [
                &[0, 0, 2, 0x65][..],
                &[0, 0, 0, 0, 1],
                &[0, 0],
                &[0x67, 0x42],
            ] {
                let err = check_payload(&h, bad).unwrap_err();
                assert_eq!(
                    err,
                    DecodeError::InvalidPayload {
                        codec: Codec::H264,
                        found: bad[..bad.len().min(4)].to_vec()
                    }
                );
            }
        }
        assert_eq!(
            check(
                FrameHeader::h264(0, 0, 0, 0, false),
                &[0xff, 0xd8, 0xff, 0xe0, 0]
            ),
            Err(
                "invalid H.264 payload: it starts with [ff, d8, ff, e0], not an Annex B \
                 start code (00 00 01 or 00 00 00 01)"
                    .into()
            )
        );
        let mut end = FrameHeader::h264(0, 0, 0, 0, false);
        end.flags = Flags::END_OF_STREAM;
        assert_eq!(check(end, &[]), Ok(()));
    }

    #[test]
    fn h264_header_flags() {
        let key = FrameHeader::h264(3, 4, 5, 6, true);
        assert_eq!(key.codec, Codec::H264);
        assert_eq!(key.flags, Flags::KEYFRAME);
        assert_eq!(
            (key.sequence, key.timestamp_us, key.width, key.height),
            (3, 4, 5, 6)
        );
        assert_eq!(FrameHeader::h264(0, 0, 0, 0, false).flags, Flags::empty());
        assert_eq!(Codec::from_id(2), Some(Codec::H264));
        assert_eq!(Codec::H264.id(), 2);
        assert_eq!(Codec::from_id(3), None);
        assert_eq!(Codec::from_id(0), None);
    }
}
