//! A hello-world axum server: the throughput ceiling `bench/serve.py` compares the model server
//! with. `cargo run --release -p sluice-serve --example hello -- 127.0.0.1:9000`

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let app = axum::Router::new().route("/", axum::routing::post(|| async { "{\"predictions\":[0.5]}" }));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
