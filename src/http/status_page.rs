//! `GET /`: a status page a person can read, served from the binary.

use axum::response::Html;

pub(crate) async fn page() -> Html<&'static str> {
    Html(include_str!("status_page.html"))
}
