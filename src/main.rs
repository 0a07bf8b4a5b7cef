fn main() {
    eprintln!("tenscale: CLI not wired yet");
}
