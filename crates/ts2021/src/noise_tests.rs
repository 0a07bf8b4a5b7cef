//! Handshake tests: the golden vector from a real client, round trips, hostile input.

use super::*;

fn vector() -> serde_json::Value {
    serde_json::from_str(include_str!("../../../tests/fixtures/handshake_vector.json")).unwrap()
}

fn secret_from_hex(text: &str) -> StaticSecret {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).unwrap();
    StaticSecret::from(bytes)
}

#[test]
fn golden_vector_from_a_real_client_yields_its_machine_key() {
    let v = vector();
    let server = secret_from_hex(v["server_static_private_hex"].as_str().unwrap());
    let server_pub = MachinePublic::from_bytes(public_bytes(&server));
    assert_eq!(server_pub.to_string(), v["server_static_public"].as_str().unwrap());

    let init = decode_handshake_header(v["x_tailscale_handshake_header"].as_str().unwrap()).unwrap();
    assert_eq!(hex::encode(&init), v["init_message_hex"].as_str().unwrap());
    let (response, client, version, _keys) = accept(&server, &init).unwrap();
    assert_eq!(client.to_string(), v["expected_client_machine_public"].as_str().unwrap());
    assert_eq!(version, 130);
    assert_eq!(response.len(), RESPONSE_LEN);
    assert_eq!(&response[..3], &[2, 0, 48]);
}

#[test]
fn golden_vector_fails_with_another_server_key() {
    let v = vector();
    let init = hex::decode(v["init_message_hex"].as_str().unwrap()).unwrap();
    let wrong = StaticSecret::from([7u8; 32]);
    assert!(matches!(accept(&wrong, &init), Err(NoiseError::Decrypt)));
}

#[test]
fn golden_vector_fails_if_the_version_is_changed() {
    // The version feeds the prologue, so tampering with it must break decryption.
    let v = vector();
    let server = secret_from_hex(v["server_static_private_hex"].as_str().unwrap());
    let mut init = hex::decode(v["init_message_hex"].as_str().unwrap()).unwrap();
    init[1] = 131;
    assert!(matches!(accept(&server, &init), Err(NoiseError::Decrypt)));
}

#[test]
fn round_trip_agrees_on_keys_and_identity() {
    let server = StaticSecret::random_from_rng(OsRng);
    let server_pub = MachinePublic::from_bytes(public_bytes(&server));
    let client = StaticSecret::random_from_rng(OsRng);
    let (initiator, init) = Initiator::start(&client, &server_pub, 130).unwrap();
    let (response, seen, version, mut server_keys) = accept(&server, &init).unwrap();
    assert_eq!(seen.as_bytes(), &public_bytes(&client));
    assert_eq!(version, 130);
    let mut client_keys = initiator.finish(&response).unwrap();
    assert_eq!(client_keys.handshake_hash, server_keys.handshake_hash);

    for i in 0..3u8 {
        let mut buf = vec![i; 10];
        client_keys.send.encrypt(&mut buf).unwrap();
        server_keys.recv.decrypt(&mut buf).unwrap();
        assert_eq!(buf, vec![i; 10]);
        let mut back = vec![i + 100; 5];
        server_keys.send.encrypt(&mut back).unwrap();
        client_keys.recv.decrypt(&mut back).unwrap();
        assert_eq!(back, vec![i + 100; 5]);
    }
}

#[test]
fn record_one_with_a_little_endian_nonce_does_not_decrypt() {
    let key = [9u8; 32];
    let mut sender = CipherState::new(key);
    let mut receiver = CipherState::new(key);
    let mut record0 = b"zero".to_vec();
    sender.encrypt(&mut record0).unwrap();
    receiver.decrypt(&mut record0).unwrap();

    // Encrypt record 1 the standard-Noise way: counter little-endian in bytes 4..12.
    let aead = ChaCha20Poly1305::new(Key::from_slice(&key));
    let mut le_nonce = [0u8; 12];
    le_nonce[4..].copy_from_slice(&1u64.to_le_bytes());
    let mut record1 = b"one".to_vec();
    let tag = aead.encrypt_in_place_detached(Nonce::from_slice(&le_nonce), &[], &mut record1).unwrap();
    record1.extend_from_slice(&tag);
    let mut attempt = record1.clone();
    assert!(matches!(receiver.decrypt(&mut attempt), Err(NoiseError::Decrypt)));

    // The same plaintext under the big-endian counter does decrypt.
    let mut fresh = CipherState::new(key);
    fresh.counter = 1;
    let mut be = b"one".to_vec();
    fresh.encrypt(&mut be).unwrap();
    let mut receiver = CipherState::new(key);
    receiver.counter = 1;
    receiver.decrypt(&mut be).unwrap();
    assert_eq!(be, b"one");
}

#[test]
fn malformed_initiations_are_errors() {
    let server = StaticSecret::from([1u8; 32]);
    assert!(matches!(accept(&server, &[]), Err(NoiseError::BadLength(0, 101))));
    assert!(matches!(accept(&server, &[0u8; 100]), Err(NoiseError::BadLength(100, 101))));
    let mut wrong_type = [0u8; 101];
    wrong_type[2] = 4;
    assert!(matches!(accept(&server, &wrong_type), Err(NoiseError::BadType(4))));
    let mut wrong_len = [0u8; 101];
    wrong_len[2] = 1;
    wrong_len[4] = 95;
    assert!(matches!(accept(&server, &wrong_len), Err(NoiseError::BadLengthField(95))));
    // All-zero ephemeral key is a low-order point.
    let mut zero_key = [0u8; 101];
    zero_key[2] = 1;
    zero_key[4] = 96;
    assert!(matches!(accept(&server, &zero_key), Err(NoiseError::WeakKey)));
    assert!(decode_handshake_header("not base64!").is_err());
    assert!(decode_handshake_header("AAAA").is_err());
}

#[test]
fn initiator_surfaces_server_error_message_and_bad_responses() {
    let server_pub = MachinePublic::from_bytes(public_bytes(&StaticSecret::from([3u8; 32])));
    let client = StaticSecret::from([4u8; 32]);
    let (init, _) = Initiator::start(&client, &server_pub, 130).unwrap();
    match init.finish(&error_message("nope")) {
        Err(NoiseError::PeerError(text)) => assert_eq!(text, "nope"),
        _ => panic!("want peer error"),
    }
    let (init, _) = Initiator::start(&client, &server_pub, 130).unwrap();
    let mut bogus = vec![2u8, 0, 48];
    bogus.extend_from_slice(&[5u8; 48]);
    assert!(init.finish(&bogus).is_err());
}

#[test]
fn nonce_exhaustion_is_refused() {
    let mut state = CipherState::new([1u8; 32]);
    state.counter = u64::MAX;
    assert!(matches!(state.encrypt(&mut vec![1]), Err(NoiseError::NonceExhausted)));
    assert_eq!(state.counter(), u64::MAX);
}
