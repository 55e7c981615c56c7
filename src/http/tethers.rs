//! `GET /cutover/tethers`: every reference the cluster still holds to an upstream host, from
//! the watch-fed tether report (no API request per call).

use super::HttpContext;
use crate::tethers::TetherReport;
use axum::Json;
use axum::extract::State;
use std::sync::Arc;

/// `GET /cutover/tethers`: the tether report now.
pub async fn report(State(ctx): State<Arc<HttpContext>>) -> Json<TetherReport> {
    Json(TetherReport::clone(&ctx.tethers.report()))
}
