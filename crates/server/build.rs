//! Compiles proto/ with protox (pure Rust, no system protoc) and generates the tonic code plus the
//! descriptor set that server reflection serves.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "../../proto/rapport/v1/interaction.proto",
        "../../proto/rapport/v1/ingest.proto",
        "../../proto/rapport/v1/scoring.proto",
        "../../proto/rapport/v1/sentiment.proto",
        "../../proto/rapport/v1/identity.proto",
        "../../proto/rapport/v1/admin.proto",
        "../../proto/rapport/v1/intent.proto",
        "../../proto/rapport/v1/routing.proto",
    ];
    println!("cargo:rerun-if-changed=../../proto");
    let descriptors = protox::compile(files, ["../../proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("rapport_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        // prost's codec with undecodable requests answered INVALID_ARGUMENT (src/api/codec.rs).
        .codec_path("crate::api::codec::ValidatingCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
