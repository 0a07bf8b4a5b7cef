// TEMPORARY on branch `api`: only the `openapi` subcommand; the real CLI comes from main.
fn main() {
    if std::env::args().nth(1).as_deref() == Some("openapi") {
        println!("{}", tenscale::api::openapi::document_json());
        return;
    }
    eprintln!("tenscale: CLI not wired yet");
}
