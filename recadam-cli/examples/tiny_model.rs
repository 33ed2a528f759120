//! Writes the tiny test model folder: `cargo run -p recadam-cli --example tiny_model -- DIR`.
fn main() {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/models/tiny".into());
    if let Err(e) = recadam_cli::tiny_model::write(std::path::Path::new(&dir), 7) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    eprintln!("wrote {dir}");
}
