//! The model server without the CLI (and so without DataFusion): a release build in minutes, for
//! profiling the request path. Same `Server` as `sluice serve`, default options.
//! `cargo run --release -p sluice-serve --example serve -- HOME NAME@ALIAS [127.0.0.1:9001]`

// The `sluice` binary's allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, home, model, rest @ ..] = args.as_slice() else {
        return Err("usage: serve HOME NAME@ALIAS [ADDR]".into());
    };
    let addr = rest.first().map_or("127.0.0.1:9001", String::as_str);
    let options = sluice_serve::ServeOptions::default();
    let server =
        sluice_serve::Server::load(std::path::Path::new(home), std::slice::from_ref(model), &[], options).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    server.run(listener, async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
    Ok(())
}
