//! The ts2021 channel's server side: takes a connection after the HTTP 101, finishes the Noise
//! handshake, and serves its HTTP/2 streams concurrently over our own HTTP/2 (`h2conn`),
//! asking a [`Ts2021Service`] for every answer. The service owns what the paths mean; the
//! connection owns framing, body limits, flow control, flushing and pings.
//!
//! Every request on a connection is tied to the machine key learned in the handshake.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::noise::{accept, decode_handshake_header, error_message, NoiseError};
use crate::noise_stream::NoiseStream;
pub use crate::serve::{ServeError, ServeOptions};
use crate::Ts2021Service;
use tenscale_base::keys::ChallengePublic;

/// Runs the ts2021 channel on `io`, the connection right after the HTTP 101 was written:
/// decodes the `X-Tailscale-Handshake` value, answers the Noise initiation (51-byte response +
/// early payload in one write), then serves HTTP/2 until the client goes away.
pub async fn accept_ts2021<T>(
    mut io: T,
    server_static: &StaticSecret,
    init_b64_header: &str,
    service: Arc<dyn Ts2021Service>,
    opts: ServeOptions,
) -> Result<(), ServeError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = decode_handshake_header(init_b64_header).and_then(|init| accept(server_static, &init));
    let (response, machine, version, keys) = match handshake {
        Ok(done) => done,
        Err(err) => {
            // Like the Go server: tell the peer about malformed messages, then close.
            if matches!(err, NoiseError::BadLength(..) | NoiseError::BadType(_) | NoiseError::BadLengthField(_)) {
                let _ = timeout(opts.handshake_timeout, io.write_all(&error_message(&err.to_string()))).await;
            }
            return Err(err.into());
        }
    };
    tracing::debug!(%machine, version, "ts2021 handshake done");
    let mut stream = NoiseStream::new(io, keys);
    stream.queue_raw(&response);
    if opts.early_payload {
        stream.queue_early_payload(&fresh_challenge())?;
    }
    timeout(opts.handshake_timeout, stream.flush_queued()).await.map_err(|_| ServeError::HandshakeTimeout)??;
    super::h2conn::serve(stream, machine, service, opts).await
}

/// A throw-away challenge key: clients at 1.90 parse it but never use it.
fn fresh_challenge() -> ChallengePublic {
    let secret = StaticSecret::random_from_rng(rand::rngs::OsRng);
    ChallengePublic::from_bytes(PublicKey::from(&secret).to_bytes())
}
