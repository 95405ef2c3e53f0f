//! What the request-wide middleware needs to know of a route, so that `http/` reads it
//! without naming any role: the route table (`routes.rs`) declares it with each endpoint —
//! its [`Interface`], its error format — and installs it here once, before the router serves
//! ([`install`]). `track` and `deadline` look a request's matched route template up ([`of`]).

use std::sync::{LazyLock, OnceLock};

use axum::response::Response;

use crate::http::error::ApiError;
use crate::scope::Interface;

/// How an error is answered on a route: the interface's own format (plain text for the CPIX
/// family, the NAGRA and Widevine API envelopes, problem+json elsewhere).
pub type ErrorFormat = fn(ApiError) -> Response;

/// The middleware's view of one route.
#[derive(Clone, Copy, Debug)]
pub struct RouteInfo {
    pub interface: Interface,
    /// Renders an error that no handler rendered (a request past its deadline).
    pub errors: ErrorFormat,
}

impl RouteInfo {
    /// A route the table does not declare (the players' files) or no route at all.
    pub const OTHER: Self = Self {
        interface: Interface::Other,
        errors: crate::http::error::problem_json,
    };
}

/// Every route the table declares: [`RouteInfo`] by template.
#[derive(Debug, Default)]
pub struct RouteTable {
    by_template: hashbrown::HashMap<String, RouteInfo>,
}

impl RouteTable {
    /// Declares `template` (`/{tenant}/cpix/{format}/{content_id}/{token}`) with what the
    /// middleware needs of it.
    pub fn add(&mut self, template: &str, info: RouteInfo) {
        self.by_template.insert(template.to_owned(), info);
    }
}

static TABLE: OnceLock<RouteTable> = OnceLock::new();

/// Installs the route table (the first call builds it; later calls do nothing: the table is
/// the same for every server of the process).
pub fn install(build: impl FnOnce() -> RouteTable) {
    TABLE.get_or_init(build);
}

/// The table, or an empty one before [`install`] (nothing is then known of any route).
fn table() -> &'static RouteTable {
    static EMPTY: LazyLock<RouteTable> = LazyLock::new(RouteTable::default);
    TABLE.get().unwrap_or(&EMPTY)
}

/// What the table declares for a matched route template (`/{tenant}/cpix`, …);
/// [`RouteInfo::OTHER`] for routes it does not know.
pub fn of(template: &str) -> RouteInfo {
    table()
        .by_template
        .get(template)
        .copied()
        .unwrap_or(RouteInfo::OTHER)
}
