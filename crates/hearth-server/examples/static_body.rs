//! The HTTP limit for `scripts/bench`: the smallest axum server that answers every GET with the
//! same static body (the bytes of a file), as `application/fhir+json`. It shares Hearth's axum,
//! hyper and tokio versions, so "Hearth read by id / this" is the share of the machine's HTTP
//! capacity that Hearth's own work (auth, storage, serialisation) leaves.
//!
//! Usage: `static_body <listen address> <body file>`; prints `listening on <addr>` when ready.

use std::process::ExitCode;

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: static_body <listen address> <body file>");
        return ExitCode::from(2);
    };
    let body = match std::fs::read(path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            eprintln!("static_body: cannot read {path}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handler = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/fhir+json")], body).into_response() }
    };
    let app = Router::new().fallback(get(handler));
    let listener = match tokio::net::TcpListener::bind(listen.as_str()).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("static_body: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => eprintln!("static_body: {e}"),
    }
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("static_body: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
