//! Tests of the record layer: framing limits, partial I/O, hostile frames, early payload.

use rand::rngs::OsRng;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use x25519_dalek::{PublicKey, StaticSecret};

use super::*;
use crate::noise::{accept, error_message, Initiator};
use tenscale_base::keys::MachinePublic;

/// Handshakes in memory and returns (client keys, server keys).
fn key_pair() -> (TransportKeys, TransportKeys) {
    let server = StaticSecret::random_from_rng(OsRng);
    let server_pub = MachinePublic::from_bytes(PublicKey::from(&server).to_bytes());
    let client = StaticSecret::random_from_rng(OsRng);
    let (initiator, init) = Initiator::start(&client, &server_pub, 130).unwrap();
    let (response, _, _, server_keys) = accept(&server, &init).unwrap();
    (initiator.finish(&response).unwrap(), server_keys)
}

fn stream_pair() -> (NoiseStream<DuplexStream>, NoiseStream<DuplexStream>) {
    let (a, b) = duplex(1 << 20);
    let (ck, sk) = key_pair();
    (NoiseStream::new(a, ck), NoiseStream::new(b, sk))
}

/// A server stream whose peer end is raw, for feeding hand-made frames.
fn raw_peer() -> (NoiseStream<DuplexStream>, DuplexStream, TransportKeys) {
    let (a, b) = duplex(1 << 20);
    let (ck, sk) = key_pair();
    (NoiseStream::new(a, sk), b, ck)
}

#[tokio::test]
async fn large_writes_split_into_legal_frames_and_read_back_byte_by_byte() {
    let (a, mut raw) = duplex(1 << 20);
    let (ck, mut sk) = key_pair();
    let mut client = NoiseStream::new(a, ck);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    client.write_all(&data).await.unwrap();
    client.flush().await.unwrap();
    drop(client);

    let mut wire = Vec::new();
    raw.read_to_end(&mut wire).await.unwrap();
    let mut at = 0;
    let mut got = Vec::new();
    while at < wire.len() {
        assert_eq!(wire[at], 4);
        let len = u16::from_be_bytes([wire[at + 1], wire[at + 2]]) as usize;
        assert!(len + 3 <= MAX_FRAME, "frame of {} bytes", len + 3);
        let mut rec = wire[at + 3..at + 3 + len].to_vec();
        sk.recv.decrypt(&mut rec).unwrap();
        assert!(rec.len() <= MAX_PLAINTEXT);
        got.extend_from_slice(&rec);
        at += 3 + len;
    }
    assert_eq!(got, data);
    assert!(sk.recv.counter() >= 5, "several records, so the BE nonce was exercised");
}

#[tokio::test]
async fn partial_reads_see_the_whole_stream() {
    let (mut client, mut server) = stream_pair();
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
    let expected = data.clone();
    let writer = tokio::spawn(async move {
        for chunk in data.chunks(333) {
            client.write_all(chunk).await.unwrap();
            client.flush().await.unwrap();
        }
        client.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    let mut one = [0u8; 1];
    loop {
        let n = server.read(&mut one).await.unwrap();
        if n == 0 {
            break;
        }
        got.push(one[0]);
    }
    writer.await.unwrap();
    assert_eq!(got, expected);
}

async fn read_err(mut stream: NoiseStream<DuplexStream>) -> io::Error {
    let mut buf = [0u8; 64];
    stream.read(&mut buf).await.expect_err("must fail")
}

#[tokio::test]
async fn unknown_frame_type_is_fatal() {
    let (server, mut raw, _) = raw_peer();
    raw.write_all(&[5, 0, 1, 0]).await.unwrap();
    let err = read_err(server).await;
    assert!(err.to_string().contains("unexpected message type 5"), "{err}");
}

#[tokio::test]
async fn oversized_frame_is_refused_before_buffering() {
    let (server, mut raw, _) = raw_peer();
    raw.write_all(&[4, 0x0f, 0xfe]).await.unwrap(); // 4094-byte ciphertext: one too many
    let err = read_err(server).await;
    assert!(err.to_string().contains("exceeds"), "{err}");
}

#[tokio::test]
async fn truncated_frame_then_eof_is_an_error() {
    let (server, mut raw, _) = raw_peer();
    raw.write_all(&[4, 0, 40, 1, 2, 3]).await.unwrap();
    drop(raw);
    let err = read_err(server).await;
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}

#[tokio::test]
async fn garbage_ciphertext_and_short_records_fail_to_decrypt() {
    for len in [0usize, 5, 16, 100] {
        let (server, mut raw, _) = raw_peer();
        let mut frame = vec![4, 0, len as u8];
        frame.extend(std::iter::repeat_n(0xAB, len));
        raw.write_all(&frame).await.unwrap();
        let err = read_err(server).await;
        assert!(err.to_string().contains("decryption failed"), "len {len}: {err}");
    }
}

#[tokio::test]
async fn peer_error_frame_is_reported_with_its_text() {
    let (server, mut raw, _) = raw_peer();
    raw.write_all(&error_message("go away")).await.unwrap();
    let err = read_err(server).await;
    assert!(err.to_string().contains("go away"), "{err}");
}

#[tokio::test]
async fn replayed_record_fails_because_the_counter_moved_on() {
    let (mut server, mut raw, mut ck) = raw_peer();
    let mut rec = b"hello".to_vec();
    ck.send.encrypt(&mut rec).unwrap();
    let mut frame = vec![4, 0, rec.len() as u8];
    frame.extend_from_slice(&rec);
    raw.write_all(&frame).await.unwrap();
    raw.write_all(&frame).await.unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    assert!(read_err(server).await.to_string().contains("decryption failed"));
}

#[tokio::test]
async fn early_payload_is_read_and_skipped_before_h2_bytes() {
    let (mut client, mut server) = stream_pair();
    let challenge = ChallengePublic::from_bytes([0x11; 32]);
    server.queue_early_payload(&challenge).unwrap();
    server.write_all(b"PRI * HTTP/2.0").await.unwrap();
    server.flush().await.unwrap();
    let early = client.read_early_payload().await.unwrap().expect("early payload");
    assert_eq!(early.node_key_challenge, challenge);
    let mut rest = [0u8; 14];
    client.read_exact(&mut rest).await.unwrap();
    assert_eq!(&rest, b"PRI * HTTP/2.0");
}

#[tokio::test]
async fn without_early_payload_the_first_bytes_stay_readable() {
    let (mut client, mut server) = stream_pair();
    server.write_all(b"0123456789abcdef").await.unwrap();
    server.flush().await.unwrap();
    assert!(client.read_early_payload().await.unwrap().is_none());
    let mut all = [0u8; 16];
    client.read_exact(&mut all).await.unwrap();
    assert_eq!(&all, b"0123456789abcdef");
}

#[tokio::test]
async fn oversized_early_payload_length_is_refused() {
    let (mut client, mut server) = stream_pair();
    let mut bogus = EARLY_PAYLOAD_MAGIC.to_vec();
    bogus.extend_from_slice(&u32::MAX.to_be_bytes());
    server.write_all(&bogus).await.unwrap();
    server.flush().await.unwrap();
    assert!(client.read_early_payload().await.is_err());
}

#[test]
fn early_payload_layout() {
    let bytes = early_payload_bytes(&ChallengePublic::from_bytes([0; 32]));
    assert_eq!(&bytes[..5], b"\xff\xff\xffTS");
    let len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    assert_eq!(len, bytes.len() - 9);
    let json: serde_json::Value = serde_json::from_slice(&bytes[9..]).unwrap();
    assert_eq!(json["nodeKeyChallenge"], format!("chalpub:{}", "0".repeat(64)));
}

#[test]
fn the_early_payload_json_uses_a_lower_camel_key() {
    let text = format!(r#"{{"nodeKeyChallenge":"chalpub:{}"}}"#, "1".repeat(64));
    let early: EarlyNoise = serde_json::from_str(&text).unwrap();
    assert_eq!(early.node_key_challenge.as_bytes(), &[0x11; 32]);
}

/// Checks that `wire` is a run of legal records and returns how many there are.
fn legal_records(wire: &[u8]) -> usize {
    let (mut at, mut records) = (0, 0);
    while at < wire.len() {
        assert_eq!(wire[at], 4, "a record starts with type 4");
        let len = u16::from_be_bytes([wire[at + 1], wire[at + 2]]) as usize;
        assert!(len + 3 <= MAX_FRAME, "record of {} bytes", len + 3);
        at += 3 + len;
        records += 1;
    }
    assert_eq!(at, wire.len(), "the last record is cut short");
    records
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Whatever the writes (sizes around the record limit included), the wire holds only legal
    /// records, and the peer reads back exactly the bytes written, in either direction.
    #[test]
    fn what_is_written_is_read_back_through_legal_records(
        writes in proptest::collection::vec(
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..(2 * MAX_PLAINTEXT + 2)), 0..5),
        client_to_server in proptest::prelude::any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let want: Vec<u8> = writes.concat();
        let (ck, sk) = key_pair();
        let (writer_keys, reader_keys) = if client_to_server { (ck, sk) } else { (sk, ck) };
        let got = runtime.block_on(async {
            let (writer_io, mut wire_end) = duplex(1 << 20);
            let mut writer = NoiseStream::new(writer_io, writer_keys);
            for write in &writes {
                writer.write_all(write).await.unwrap();
            }
            writer.shutdown().await.unwrap();
            drop(writer);
            let mut wire = Vec::new();
            wire_end.read_to_end(&mut wire).await.unwrap();
            let records = legal_records(&wire);
            assert!(records >= want.len().div_ceil(MAX_PLAINTEXT), "{records} records for {} bytes", want.len());

            let (reader_io, mut feed) = duplex(1 << 20);
            feed.write_all(&wire).await.unwrap();
            drop(feed);
            let mut reader = NoiseStream::new(reader_io, reader_keys);
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        });
        proptest::prop_assert_eq!(got, want);
    }
}
