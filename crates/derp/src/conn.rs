//! Turns a byte stream into DERP frames: one growing read buffer, one `read_frame`.
//!
//! Frames are parsed as `Bytes` slices of the read buffer, so a relayed packet is never copied
//! on the way in. Once every slice of a buffer generation has been written out, `reserve`
//! reclaims the same allocation; a steady stream therefore reads without allocating.
//!
//! Writing goes through [`FrameWriter`]: frames are appended to one batch buffer and written
//! out with one syscall when the caller flushes (its queue ran dry) or the batch is full. The
//! buffer is released when a burst has grown it, so idle connections hold almost nothing.
//!
//! Frames of unknown (or unwanted) types are discarded as they stream by, without buffering
//! their payload, so a peer cannot make us hold more than the largest known frame.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::error::DerpError;
use crate::frame::{self, Decoded, Frame, FrameError, FrameType, HEADER_LEN, MAX_FRAME_LEN};

/// A batch is written out once it reaches this size, even before a flush.
const MAX_BATCH_BYTES: usize = 64 << 10;
/// After a flush, a batch buffer larger than this is given back.
const IDLE_BATCH_CAPACITY: usize = 16 << 10;

/// Spare room a fresh connection reads into. Small, because most connections are idle.
const MIN_READ_CHUNK: usize = 1 << 10;
/// Spare room a busy connection reads into, so one read carries many packets.
const MAX_READ_CHUNK: usize = 64 << 10;

/// What `try_take` found at the front of the buffer.
enum Taken {
    Frame(Frame),
    /// An unwanted frame's header was consumed; its payload is being discarded.
    Skipping,
    /// The next frame is not complete yet: read more.
    Incomplete,
}

/// Reads frames from `io`.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    /// Payload bytes of a skipped frame still to discard.
    skip: usize,
    /// Current read size: doubles each time a read fills it, up to `MAX_READ_CHUNK`.
    chunk: usize,
    /// Which known frame types are parsed; the others are skipped like unknown types.
    wanted: fn(FrameType) -> bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        Self::with_buffered(io, &[])
    }

    /// A reader whose stream already delivered `buffered` (e.g. bytes read past an HTTP 101).
    pub fn with_buffered(io: R, buffered: &[u8]) -> Self {
        let mut buf = BytesMut::with_capacity(MIN_READ_CHUNK.max(buffered.len()));
        buf.extend_from_slice(buffered);
        Self { io, buf, skip: 0, chunk: MIN_READ_CHUNK, wanted: |_| true }
    }

    /// Only frames of types for which `wanted` is true are parsed; others are skipped unread.
    pub fn wanting(mut self, wanted: fn(FrameType) -> bool) -> Self {
        self.wanted = wanted;
        self
    }

    /// The next wanted frame; `Ok(None)` on a clean end of stream between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, DerpError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len());
                self.buf.advance(n);
                self.skip -= n;
            }
            if self.skip == 0 && self.buf.len() >= HEADER_LEN {
                match self.try_take()? {
                    Taken::Frame(frame) => return Ok(Some(frame)),
                    // The rest of the buffer may already hold what follows the skipped frame.
                    Taken::Skipping => continue,
                    Taken::Incomplete => {}
                }
            }
            if self.buf.capacity() - self.buf.len() < self.chunk / 2 {
                self.buf.reserve(self.chunk);
            }
            let spare = self.buf.capacity() - self.buf.len();
            let n = self.io.read_buf(&mut self.buf).await?;
            if n == spare {
                self.chunk = (self.chunk * 2).min(MAX_READ_CHUNK);
            }
            if n == 0 {
                return if self.buf.is_empty() && self.skip == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated.into())
                };
            }
        }
    }

    /// Takes a complete frame off the buffer, or starts skipping an unwanted one.
    fn try_take(&mut self) -> Result<Taken, DerpError> {
        let mut head = [0u8; HEADER_LEN];
        head.copy_from_slice(&self.buf[..HEADER_LEN]);
        let (type_byte, len) = frame::parse_header(&head);
        let wanted = FrameType::from_u8(type_byte).filter(|t| (self.wanted)(*t));
        if wanted.is_none() {
            if len > MAX_FRAME_LEN {
                return Err(FrameError::TooLong { frame_type: type_byte, len, max: MAX_FRAME_LEN }.into());
            }
            self.buf.advance(HEADER_LEN);
            self.skip = len;
            return Ok(Taken::Skipping);
        }
        match frame::decode_one(&mut self.buf)? {
            Some(Decoded::Frame(frame)) => Ok(Taken::Frame(frame)),
            // Unknown types were handled above.
            Some(Decoded::Unknown { .. }) => Err(DerpError::Protocol("unexpected unknown frame")),
            None => {
                // Make room for the rest of this frame in one go.
                self.buf.reserve(HEADER_LEN + len - self.buf.len());
                Ok(Taken::Incomplete)
            }
        }
    }

    /// The underlying stream (e.g. to reunite split halves).
    pub fn into_inner(self) -> R {
        self.io
    }
}

/// Writes frames in batches, each socket write bounded by a deadline.
pub struct FrameWriter<W> {
    io: W,
    batch: Vec<u8>,
    write_timeout: Duration,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// `write_timeout` bounds each socket write (one batch of at most 64 KiB) and each flush.
    pub fn new(io: W, write_timeout: Duration) -> Self {
        Self { io, batch: Vec::new(), write_timeout }
    }

    /// The same writer with another deadline per write.
    pub fn with_write_timeout(self, write_timeout: Duration) -> Self {
        Self { write_timeout, ..self }
    }

    /// Appends a RecvPacket frame: header, source key and packet copied straight in.
    pub async fn write_recv_packet(&mut self, src: &NodePublic, packet: &[u8]) -> Result<(), DerpError> {
        self.make_room(HEADER_LEN + frame::KEY_LEN + packet.len()).await?;
        self.batch.extend_from_slice(&frame::recv_packet_prefix(src, packet.len()));
        self.batch.extend_from_slice(packet);
        Ok(())
    }

    /// Appends any frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), DerpError> {
        self.make_room(HEADER_LEN + frame.payload_len()).await?;
        frame.encode(&mut self.batch);
        Ok(())
    }

    /// Writes the batch out and flushes the stream.
    pub async fn flush(&mut self) -> Result<(), DerpError> {
        self.write_batch().await?;
        timeout(self.write_timeout, self.io.flush()).await.map_err(|_| DerpError::Timeout("flushing"))??;
        if self.batch.capacity() > IDLE_BATCH_CAPACITY {
            self.batch = Vec::new();
        }
        Ok(())
    }

    /// Flushes, then shuts the write side down (best effort).
    pub async fn shutdown(&mut self) {
        if self.flush().await.is_ok() {
            let _ = timeout(self.write_timeout, self.io.shutdown()).await;
        }
    }

    async fn make_room(&mut self, len: usize) -> Result<(), DerpError> {
        if !self.batch.is_empty() && self.batch.len() + len > MAX_BATCH_BYTES {
            self.write_batch().await?;
        }
        Ok(())
    }

    async fn write_batch(&mut self) -> Result<(), DerpError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        timeout(self.write_timeout, self.io.write_all(&self.batch))
            .await
            .map_err(|_| DerpError::Timeout("writing"))??;
        self.batch.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tenscale_base::keys::NodePublic;

    #[tokio::test]
    async fn reads_frames_split_across_reads_and_skips_unknown_ones() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&Frame::KeepAlive.to_bytes());
        wire.extend_from_slice(&[0x0b, 0, 0, 0, 4, 9, 9, 9, 9]); // unassigned type
        wire.extend_from_slice(&Frame::Health { problem: "x".into() }.to_bytes()); // unwanted
        let packet = Frame::SendPacket { dst: NodePublic([1; 32]), packet: Bytes::from(vec![5; 3000]) };
        wire.extend_from_slice(&packet.to_bytes());
        let (mut tx, rx) = tokio::io::duplex(7); // tiny pipe: every frame arrives in pieces
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&wire).await.unwrap();
        });
        let mut reader = FrameReader::new(rx).wanting(|t| t != FrameType::Health);
        assert_eq!(reader.read_frame().await.unwrap(), Some(Frame::KeepAlive));
        assert_eq!(reader.read_frame().await.unwrap(), Some(packet));
        writer.await.unwrap();
        assert_eq!(reader.read_frame().await.unwrap(), None);
    }

    #[tokio::test]
    async fn frame_after_a_skipped_one_in_the_same_read_needs_no_further_read() {
        // The stream stays open: a reader that reads again before looking would hang.
        let (mut tx, rx) = tokio::io::duplex(1 << 16);
        let mut wire = vec![0x0b, 0, 0, 0, 2, 1, 2];
        wire.extend_from_slice(&Frame::Ping { data: [5; 8] }.to_bytes());
        use tokio::io::AsyncWriteExt;
        tx.write_all(&wire).await.unwrap();
        let mut reader = FrameReader::new(rx);
        let frame = tokio::time::timeout(std::time::Duration::from_secs(1), reader.read_frame()).await;
        assert_eq!(frame.expect("reader hung").unwrap(), Some(Frame::Ping { data: [5; 8] }));
        drop(tx);
    }

    #[tokio::test]
    async fn truncated_stream_is_an_error() {
        let bytes = Frame::Ping { data: [1; 8] }.to_bytes();
        let mut reader = FrameReader::new(&bytes[..10]);
        assert!(matches!(reader.read_frame().await, Err(DerpError::Frame(FrameError::Truncated))));
        // Truncated inside a skipped frame, too.
        let mut reader = FrameReader::new(&[0x0bu8, 0, 0, 0, 9, 1][..]);
        assert!(reader.read_frame().await.is_err());
    }
}
