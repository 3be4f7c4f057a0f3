//! Writes the Rust code of etcd's v3 gRPC API (clients only) for `kv-etcd` into the directory
//! given as the only argument, one file per protobuf package. See `scripts/etcd-proto`.

use std::path::PathBuf;

/// The files etcd's v3 client API is defined in; their imports are found under `proto/`.
const PROTOS: &[&str] = &[
    "etcd/api/authpb/auth.proto",
    "etcd/api/mvccpb/kv.proto",
    "etcd/api/etcdserverpb/rpc.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::args().nth(1).ok_or("usage: kv-etcd-codegen OUT_DIR")?);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let mut descriptors = protox::compile(PROTOS, [&root])?;
    // Code for these files only, not for the annotations they import (HTTP gateway options).
    descriptors
        .file
        .retain(|file| PROTOS.contains(&file.name()));
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .out_dir(&out)
        .compile_fds(descriptors)?;
    Ok(())
}
