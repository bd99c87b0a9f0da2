//! Where WebSocket frames end in a stream of bytes, without keeping the bytes.
//!
//! fastwebsockets' frame reader owns an 8 KiB read buffer for as long as it
//! lives. The session drops its reader whenever that buffer is empty, so an idle
//! socket holds no buffer; the buffer is empty exactly when every byte handed to
//! the reader belongs to a frame the reader has returned. This tracker watches
//! the bytes on their way in and counts the frames they complete: when the bytes
//! end on a frame boundary after `n` whole frames and the reader has returned
//! `n` frames, nothing is left in its buffer.
//!
//! Only the header (2 to 14 bytes) is looked at; payloads are skipped by length.
//! The lengths are read exactly as RFC 6455 §5.2 lays them out, whatever the
//! peer chose (a non-minimal length encoding still ends where it says).

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;

/// Follows frame boundaries across chunks of any size.
#[derive(Debug, Default)]
pub struct FrameBounds {
    /// Header bytes of the frame being read, while the header is incomplete.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u64,
    /// Frames whose last byte has been seen.
    complete: u64,
}

impl FrameBounds {
    /// Follows `bytes`, the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let skipped = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                self.payload_left -= skipped as u64;
                bytes = &bytes[skipped..];
                if self.payload_left == 0 {
                    self.complete += 1;
                }
                continue;
            }
            let wanted = header_len(&self.header[..self.header_len]) - self.header_len;
            let taken = wanted.min(bytes.len());
            self.header[self.header_len..self.header_len + taken].copy_from_slice(&bytes[..taken]);
            self.header_len += taken;
            bytes = &bytes[taken..];
            if self.header_len == header_len(&self.header[..self.header_len]) {
                self.start_payload();
            }
        }
    }

    /// The number of whole frames seen, when the bytes seen end exactly where a
    /// frame ends; `None` in the middle of a frame.
    pub fn frames_at_boundary(&self) -> Option<u64> {
        (self.header_len == 0 && self.payload_left == 0).then_some(self.complete)
    }

    /// The header is complete: its payload (if any) comes next.
    fn start_payload(&mut self) {
        self.payload_left = payload_len(&self.header[..self.header_len]);
        self.header_len = 0;
        if self.payload_left == 0 {
            self.complete += 1;
        }
    }
}

/// The full length of a header that starts with `head`: 2 until the second byte
/// is known, then 2 + the extended length + the mask.
fn header_len(head: &[u8]) -> usize {
    let Some(&second) = head.get(1) else {
        return 2;
    };
    let extended = match second & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if second & 0x80 != 0 { 4 } else { 0 };
    2 + extended + mask
}

/// The payload length a complete header declares.
fn payload_len(header: &[u8]) -> u64 {
    match header[1] & 0x7F {
        126 => u64::from(u16::from_be_bytes([header[2], header[3]])),
        127 => u64::from_be_bytes(header[2..10].try_into().expect("8 length bytes")),
        short => u64::from(short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frame as a client sends it: masked or not, with the length written in
    /// the shortest form or (`wide`) in a longer one than needed.
    fn frame(payload_len: usize, masked: bool, wide: u8) -> Vec<u8> {
        let mask_bit = if masked { 0x80 } else { 0 };
        let mut bytes = vec![0x81];
        match (payload_len, wide) {
            (n, 0) if n < 126 => bytes.push(mask_bit | n as u8),
            (n, 0 | 1) if n <= 0xFFFF => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            (n, _) => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            bytes.extend_from_slice(&[1, 2, 3, 4]);
        }
        bytes.extend(std::iter::repeat_n(b'x', payload_len));
        bytes
    }

    #[test]
    fn an_empty_stream_is_at_a_boundary_with_no_frames() {
        assert_eq!(FrameBounds::default().frames_at_boundary(), Some(0));
    }

    #[test]
    fn a_frame_fed_byte_by_byte_is_mid_frame_until_its_last_byte() {
        let bytes = frame(5, true, 0);
        let mut bounds = FrameBounds::default();
        for (i, byte) in bytes.iter().enumerate() {
            assert_eq!(
                bounds.frames_at_boundary(),
                (i == 0).then_some(0),
                "byte {i}"
            );
            bounds.feed(std::slice::from_ref(byte));
        }
        assert_eq!(bounds.frames_at_boundary(), Some(1));
    }

    #[test]
    fn empty_payloads_and_both_extended_lengths_end_where_they_say() {
        let mut stream = frame(0, true, 0);
        stream.extend(frame(300, true, 0));
        stream.extend(frame(70_000, false, 0));
        stream.extend(frame(3, true, 2));
        let mut bounds = FrameBounds::default();
        bounds.feed(&stream[..stream.len() - 1]);
        assert_eq!(bounds.frames_at_boundary(), None);
        bounds.feed(&stream[stream.len() - 1..]);
        assert_eq!(bounds.frames_at_boundary(), Some(4));
    }

    proptest! {
        /// Whatever the frames and however the stream is cut into chunks, the
        /// tracker is at a boundary after exactly the chunks that end a frame,
        /// and counts the frames before that point.
        #[test]
        fn boundaries_match_the_frames_whatever_the_chunking(
            frames in prop::collection::vec((0usize..400, any::<bool>(), 0u8..3), 0..12),
            cuts in prop::collection::vec(1usize..64, 1..200),
        ) {
            let mut stream = Vec::new();
            let mut ends = Vec::new();
            for (len, masked, wide) in frames {
                stream.extend(frame(len, masked, wide));
                ends.push(stream.len());
            }
            let mut bounds = FrameBounds::default();
            let mut at = 0;
            for cut in cuts.iter().cycle() {
                if at == stream.len() {
                    break;
                }
                let next = (at + cut).min(stream.len());
                bounds.feed(&stream[at..next]);
                at = next;
                let whole = ends.iter().filter(|end| **end <= at).count() as u64;
                let expected = (at == 0 || ends.contains(&at)).then_some(whole);
                prop_assert_eq!(bounds.frames_at_boundary(), expected);
            }
        }
    }
}
