//! A raw DERP client: the HTTP upgrade, the ServerKey/ClientInfo/ServerInfo handshake, and
//! frame-level send/receive. Tests and benchmarks use it, and so do the mesh links
//! ([`super::mesh`]), which add the reconnecting.

use std::net::SocketAddr;

use bytes::Bytes;
use tenscale_base::keys::NodePublic;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::conn::FrameReader;
use crate::crypto::{ClientInfo, DerpSecret, ServerInfo};
use crate::error::DerpError;
use crate::frame::{self, Frame};

/// Largest HTTP response head accepted from the upgrade.
const MAX_HEAD: usize = 8 << 10;

/// The receiving half of a client.
pub struct DerpReceiver<T> {
    reader: FrameReader<ReadHalf<T>>,
}

/// The sending half of a client. Writes are buffered until `flush` (or a `send_*` call).
pub struct DerpSender<T> {
    writer: BufWriter<WriteHalf<T>>,
}

/// A connected, handshaken DERP client.
pub struct DerpClient<T> {
    pub sender: DerpSender<T>,
    pub receiver: DerpReceiver<T>,
    server_key: NodePublic,
    public: NodePublic,
    server_info: ServerInfo,
}

impl DerpClient<TcpStream> {
    /// Dials `addr`, sends `GET /derp` with `Upgrade: DERP`, expects a 101, then handshakes.
    pub async fn connect_tcp(addr: SocketAddr, host: &str, secret: &DerpSecret) -> Result<Self, DerpError> {
        Self::connect_tcp_with(addr, host, secret, &ClientInfo::v2()).await
    }

    /// [`DerpClient::connect_tcp`] with the ClientInfo to send (a mesh key, say).
    pub async fn connect_tcp_with(
        addr: SocketAddr,
        host: &str,
        secret: &DerpSecret,
        info: &ClientInfo,
    ) -> Result<Self, DerpError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET /derp HTTP/1.1\r\nHost: {host}\r\nUpgrade: DERP\r\nConnection: Upgrade\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let leftover = read_upgrade_response(&mut stream).await?;
        Self::handshake_buffered(stream, &leftover, secret, info).await
    }
}

/// Reads the HTTP response head; returns any bytes that followed it (the first frames).
async fn read_upgrade_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Vec<u8>, DerpError> {
    let mut head = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(DerpError::Closed);
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let status_ok = head.starts_with(b"HTTP/1.1 101 ") || head.starts_with(b"HTTP/1.1 101\r");
            if !status_ok {
                return Err(DerpError::Protocol("upgrade answered without 101"));
            }
            return Ok(head.split_off(end + 4));
        }
        if head.len() > MAX_HEAD {
            return Err(DerpError::Protocol("upgrade response head too long"));
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> DerpClient<T> {
    /// Handshakes on a stream that is already upgraded (the next byte is a frame).
    pub async fn handshake(io: T, secret: &DerpSecret, info: &ClientInfo) -> Result<Self, DerpError> {
        Self::handshake_buffered(io, &[], secret, info).await
    }

    async fn handshake_buffered(
        io: T,
        buffered: &[u8],
        secret: &DerpSecret,
        info: &ClientInfo,
    ) -> Result<Self, DerpError> {
        let (read_half, write_half) = tokio::io::split(io);
        let mut receiver = DerpReceiver { reader: FrameReader::with_buffered(read_half, buffered) };
        let mut sender = DerpSender { writer: BufWriter::with_capacity(16 << 10, write_half) };

        let server_key = match receiver.recv().await? {
            Some(Frame::ServerKey { key }) => key,
            Some(_) => return Err(DerpError::Protocol("first frame is not ServerKey")),
            None => return Err(DerpError::Closed),
        };
        let json = serde_json::to_vec(info).map_err(|_| DerpError::Protocol("ClientInfo JSON"))?;
        let sealed = secret.seal(&server_key, &json)?;
        sender.send_frame(&Frame::ClientInfo { key: secret.public(), sealed: sealed.into() }).await?;

        let sealed = match receiver.recv().await {
            Ok(Some(Frame::ServerInfo { sealed })) => sealed,
            Ok(Some(_)) => return Err(DerpError::Protocol("expected ServerInfo")),
            // A server that refuses us just closes.
            Ok(None) | Err(DerpError::Io(_)) => return Err(DerpError::Refused),
            Err(e) => return Err(e),
        };
        let json = secret.open(&server_key, &sealed)?;
        let server_info = serde_json::from_slice(&json).map_err(|_| DerpError::Protocol("ServerInfo JSON"))?;
        Ok(Self { sender, receiver, server_key, public: secret.public(), server_info })
    }

    pub fn server_key(&self) -> NodePublic {
        self.server_key
    }

    pub fn public_key(&self) -> NodePublic {
        self.public
    }

    pub fn server_info(&self) -> &ServerInfo {
        &self.server_info
    }

    pub async fn send_packet(&mut self, dst: &NodePublic, packet: &[u8]) -> Result<(), DerpError> {
        self.sender.send_packet(dst, packet).await
    }

    pub async fn send_frame(&mut self, frame: &Frame) -> Result<(), DerpError> {
        self.sender.send_frame(frame).await
    }

    pub async fn ping(&mut self, data: [u8; 8]) -> Result<(), DerpError> {
        self.sender.send_frame(&Frame::Ping { data }).await
    }

    pub async fn note_preferred(&mut self, preferred: bool) -> Result<(), DerpError> {
        self.sender.send_frame(&Frame::NotePreferred { preferred }).await
    }

    /// The next frame; `Ok(None)` when the server closed the connection.
    pub async fn recv(&mut self) -> Result<Option<Frame>, DerpError> {
        self.receiver.recv().await
    }

    pub fn into_split(self) -> (DerpSender<T>, DerpReceiver<T>) {
        (self.sender, self.receiver)
    }
}

impl<T: AsyncRead + AsyncWrite> DerpSender<T> {
    /// Buffers a SendPacket without flushing (for batching senders).
    pub async fn write_packet(&mut self, dst: &NodePublic, packet: &[u8]) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        let mut prefix = [0u8; frame::HEADER_LEN + frame::KEY_LEN];
        prefix[..frame::HEADER_LEN]
            .copy_from_slice(&frame::header(frame::FrameType::SendPacket, frame::KEY_LEN + packet.len()));
        prefix[frame::HEADER_LEN..].copy_from_slice(dst.as_bytes());
        self.writer.write_all(&prefix).await?;
        self.writer.write_all(packet).await?;
        Ok(())
    }

    pub async fn send_packet(&mut self, dst: &NodePublic, packet: &[u8]) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        self.write_packet(dst, packet).await?;
        self.flush().await
    }

    pub async fn send_frame(&mut self, frame: &Frame) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        self.write_frame(frame).await?;
        self.flush().await
    }

    /// Buffers any frame without flushing.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        self.writer.write_all(&frame.to_bytes()).await?;
        Ok(())
    }

    /// Sends arbitrary bytes (for garbage-input tests).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        self.writer.write_all(bytes).await?;
        self.flush().await
    }

    pub async fn flush(&mut self) -> Result<(), DerpError>
    where
        T: Unpin,
    {
        self.writer.flush().await?;
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> DerpReceiver<T> {
    pub async fn recv(&mut self) -> Result<Option<Frame>, DerpError> {
        self.reader.read_frame().await
    }

    /// The next RecvPacket, skipping keep-alives and other frames.
    pub async fn recv_packet(&mut self) -> Result<(NodePublic, Bytes), DerpError> {
        loop {
            match self.recv().await? {
                Some(Frame::RecvPacket { src, packet }) => return Ok((src, packet)),
                Some(_) => continue,
                None => return Err(DerpError::Closed),
            }
        }
    }
}
