//! SIGTERM drains the `tenscale` binary (issue 14, item 3): DERP clients get the restarting
//! frame, map streams end so clients reconnect elsewhere, new connections are refused, and
//! the process exits within a bounded time, with status 0.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use support::{eventually, random_key, register_request, stream_request, TempDir};
use tenscale::control::client::{fetch_server_key, Client};
use tenscale::derp::client::DerpClient;
use tenscale::derp::crypto::DerpSecret;
use tenscale::derp::frame::Frame;
use tenscale::domain::{NamespaceName, OrgName};
use tenscale::state::store::Store;
use tenscale::state::{Bus, Writer};
use tokio::time::Instant;
use x25519_dalek::StaticSecret;

/// How long the drain may take: the DERP write timeout plus the front's grace for in-flight
/// requests, with slack.
const EXIT_WITHIN: Duration = Duration::from_secs(40);

struct Served {
    child: Child,
    addr: String,
    _dir: TempDir,
    db_url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn serve() -> Served {
    let dir = TempDir::new();
    let db_url = format!("sqlite://{}/t.db?mode=rwc", dir.0.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_tenscale"))
        .arg("serve")
        .env("TENSCALE_DATABASE_URL", &db_url)
        .env("TENSCALE_LISTEN_ADDR", &addr)
        .env("TENSCALE_SERVER_URL", format!("http://{addr}"))
        .env("TENSCALE_WORKERS", "1")
        // Tests of this file run side by side: the default STUN port would be taken twice.
        .env("TENSCALE_STUN_ADDR", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the tenscale binary");
    let health = format!("http://{addr}/healthz");
    eventually(Duration::from_secs(60), "the server answers /healthz", || {
        let health = health.clone();
        async move { reqwest::get(&health).await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    Served { child, addr, _dir: dir, db_url }
}

#[actix_rt::test]
async fn sigterm_restarts_derp_clients_ends_map_streams_and_exits_in_time() {
    let mut served = serve().await;
    // Seeding through the store beside the server, as the CLI does.
    let store = Store::connect(&served.db_url).await.unwrap();
    let writer = Writer::new(store, Bus::local());
    let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
    let ns = writer.create_namespace(org.id, &NamespaceName::parse("alice").unwrap(), None).await.unwrap();
    let spec = support::reusable_key_spec();
    let (_, key) = writer.create_preauth_key(&ns, &spec, None).await.unwrap();

    let server_key = fetch_server_key(&format!("http://{}", served.addr)).await.unwrap().public_key;
    let client = Client::connect(&served.addr, &server_key, &StaticSecret::from(random_key())).await.unwrap();
    let node_secret = random_key();
    let node_key = DerpSecret::from_bytes(node_secret).public();
    let joined = client.register(&register_request(node_key, Some(&key))).await.unwrap();
    assert!(joined.error.is_empty(), "{joined:?}");
    let mut stream = Box::pin(client.map_stream(&stream_request(node_key)).await.unwrap());
    stream.next().await.expect("a first map").expect("a map");
    let addr = served.addr.parse().unwrap();
    let mut derp = DerpClient::connect_tcp(addr, "127.0.0.1", &DerpSecret::from_bytes(node_secret)).await.unwrap();

    let term = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let signalled = Instant::now();

    let restarting = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match derp.recv().await {
                Ok(Some(Frame::Restarting { reconnect_in_ms, try_for_ms })) => {
                    return Some((reconnect_in_ms, try_for_ms))
                }
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await
    .expect("the DERP connection hears something within 10 s");
    let (reconnect_in_ms, try_for_ms) = restarting.expect("a restarting frame before the connection closes");
    assert!(try_for_ms > 0 && reconnect_in_ms <= try_for_ms, "{reconnect_in_ms} / {try_for_ms}");

    let ended =
        tokio::time::timeout(Duration::from_secs(10), async { while let Some(Ok(_)) = stream.next().await {} }).await;
    assert!(ended.is_ok(), "the map stream did not end within 10 s of SIGTERM");

    let exited = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + EXIT_WITHIN;
        while std::time::Instant::now() < deadline {
            if let Some(status) = served.child.try_wait().expect("wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    })
    .await
    .unwrap();
    let status = exited.unwrap_or_else(|| panic!("still running {EXIT_WITHIN:?} after SIGTERM"));
    assert!(status.success(), "exit status {status:?}");
    eprintln!("drained and exited {:?} after SIGTERM", signalled.elapsed());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "the listener is closed");
}

/// A request in flight when SIGTERM arrives is answered: the listener closes at once (no new
/// connection gets in), the half-sent request is finished and gets its 201, and the change is
/// stored.
#[actix_rt::test]
async fn sigterm_answers_a_request_in_flight_after_the_listener_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let served = serve().await;
    let store = Store::connect(&served.db_url).await.unwrap();
    let writer = Writer::new(store.clone(), Bus::local());
    let org = writer.create_org(&OrgName::parse("acme").unwrap(), None).await.unwrap();
    let (_, api_key) = writer.create_api_key(org.id, "drain test", None).await.unwrap();

    let body = br#"{"name":"in-flight"}"#;
    let head = format!(
        "POST /v1/namespaces HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {api_key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        served.addr,
        body.len()
    );
    let mut conn = tokio::net::TcpStream::connect(&served.addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..5]).await.unwrap();

    let term = Command::new("kill").args(["-TERM", &served.child.id().to_string()]).status().unwrap();
    assert!(term.success());
    let addr = served.addr.clone();
    eventually(Duration::from_secs(10), "the listener refuses new connections", || {
        let addr = addr.clone();
        async move { tokio::net::TcpStream::connect(&addr).await.is_err() }
    })
    .await;

    conn.write_all(&body[5..]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .expect("the in-flight request is answered within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let stored = store.namespace_by_name(org.id, "in-flight").await;
    assert!(stored.is_ok(), "the namespace created during the drain is stored: {stored:?}");
}
